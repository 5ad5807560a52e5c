"""Queue-wait percentiles of one receive endpoint across load.

Queue wait is what a message spends between its publish and the start of its work in a
consumer slot (the completion record's ``started - sent``): in the queue, in a consumer's
prefetch buffer, behind the concurrency limit, the partitioner and the rate limiter. Two ways
to predict its percentiles:

- **closed forms** where one holds: M/M/c exactly (Poisson arrivals, exponential work, one
  pooled queue: P(W > t) = C(c, a) exp(-(c mu - lambda) t)); for G/G/c the Allen-Cunneen
  mean with an exponential tail (Whitt's approximation), kept for comparison;
- a **seeded discrete-event simulation** of the endpoint's own semantics otherwise: even or
  Poisson arrivals; fixed, exponential or lognormal work per attempt; failed attempts retried
  in the slot after the policy's delays; the broker dispatching round-robin to instances with
  prefetch credit and each instance running its own slots (a per-instance queue where prefetch
  exceeds the slots); single active consumer as one instance; the rate limiter's windows, as
  the consumer's middleware opens them (a window starts at the first start after the last one
  ended). Under a second a point (a Python loop over tens of thousands of messages).

Not modelled (stated where it matters): per-key serialisation inside a partitioner (the slots
are the effective concurrency, partitions included), the broker's own transit time (a few ms,
inside the 10 ms tolerance of `validate`), circuit breakers.
"""

from __future__ import annotations

import heapq
import math
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

from rabbitscale.capacity import model
from rabbitscale.topology.policy import ServiceTime

if TYPE_CHECKING:  # numpy is imported where a simulation runs: `plan` answers without it
    import numpy as np

PERCENTILES = (50.0, 95.0, 99.0)
SIM_MESSAGES = 40_000
MAX_SIM_MESSAGES = 150_000
WARMUP_FRACTION = 0.1


@dataclass(frozen=True)
class EndpointLoad:
    """One endpoint at one arrival rate: what its queue wait depends on."""

    arrival_per_s: float
    service: ServiceTime  # work per attempt
    instances: int = 1  # instances that consume (1 under single active consumer)
    slots: int = 1  # messages one instance works on at once (concurrency, partitions)
    prefetch: int = 1  # deliveries one instance holds, >= slots
    failure_probability: float = 0.0
    retry_delays_s: tuple[float, ...] = ()  # before each retry, in the slot
    rate_limit: tuple[int, float] | None = None  # (count, interval_s) per instance
    arrivals: str = "even"  # even | poisson

    @property
    def servers(self) -> int:
        return self.instances * self.slots

    @property
    def slot_time_s(self) -> float:
        """Mean time a message holds its slot: attempts and retry delays."""
        return model.effective_service_time_s(self.service.mean_s, self.failure_probability,
                                              list(self.retry_delays_s))

    @property
    def capacity_per_s(self) -> float:
        cap = model.concurrency_bound_per_s(self.servers, self.slot_time_s)
        if self.rate_limit:
            cap = min(cap, self.instances * self.rate_limit[0] / self.rate_limit[1])
        return cap

    @property
    def utilisation(self) -> float:
        cap = self.capacity_per_s
        return self.arrival_per_s / cap if cap and not math.isinf(cap) else 0.0

    def at(self, arrival_per_s: float) -> EndpointLoad:
        return replace(self, arrival_per_s=arrival_per_s)


def service_scv(s: ServiceTime) -> float:
    """Squared coefficient of variation of the work per attempt."""
    if s.mean_s <= 0 or s.distribution == "fixed":
        return 0.0
    if s.distribution == "exponential":
        return 1.0
    return math.exp(s.sigma ** 2) - 1.0  # lognormal


def closed_form(load: EndpointLoad, percentiles: tuple[float, ...] = PERCENTILES,
                method: str = "mmc") -> dict[float, float]:
    """Wait percentiles (s) from one pooled queue of ``servers`` slots. ``mmc``: Erlang C with
    an exponential tail (exact for M/M/c); ``whitt``: the same tail with its scale multiplied
    by Allen-Cunneen's (ca^2 + cs^2) / 2."""
    c, slot = load.servers, load.slot_time_s
    out = {}
    if slot <= 0:
        return {p: 0.0 for p in percentiles}
    mu, lam = 1.0 / slot, load.arrival_per_s
    if lam >= c * mu:
        return {p: math.inf for p in percentiles}
    pwait = model.erlang_c(c, lam / mu)
    scale = 1.0 / (c * mu - lam)
    if method == "whitt":
        ca2 = 1.0 if load.arrivals == "poisson" else 0.0
        scale *= (ca2 + service_scv(load.service)) / 2.0
    for p in percentiles:
        tail = 1.0 - p / 100.0
        out[p] = 0.0 if pwait <= tail or scale <= 0 else math.log(pwait / tail) * scale
    return out


def _arrival_times(load: EndpointLoad, n: int, rng: np.random.Generator) -> np.ndarray:
    import numpy as np

    if load.arrivals == "poisson":
        return np.cumsum(rng.exponential(1.0 / load.arrival_per_s, n))
    return np.arange(n) / load.arrival_per_s


def _work(load: EndpointLoad, n: int, rng: np.random.Generator) -> np.ndarray:
    """Seconds each message holds its slot: each attempt's work, and the retry delays."""
    import numpy as np

    s = load.service

    def draw(k: int) -> np.ndarray:
        if s.mean_s <= 0:
            return np.zeros(k)
        if s.distribution == "exponential":
            return rng.exponential(s.mean_s, k)
        if s.distribution == "lognormal":
            return rng.lognormal(math.log(s.mean_s) - s.sigma ** 2 / 2, s.sigma, k)
        return np.full(k, s.mean_s)

    total = draw(n)
    failing = rng.random(n) < load.failure_probability
    for delay in load.retry_delays_s:  # a failed attempt is retried after its delay
        idx = np.flatnonzero(failing)
        if not len(idx):
            break
        total[idx] += delay + draw(len(idx))
        failing[idx] = rng.random(len(idx)) < load.failure_probability
    return total


def simulate(load: EndpointLoad, percentiles: tuple[float, ...] = PERCENTILES,
             messages: int | None = None, seed: int = 1) -> dict[float, float]:
    """Wait percentiles (s) of a seeded simulation of the endpoint (module docstring). Near
    saturation waits are long-correlated: more messages keep the p99's noise down."""
    import numpy as np

    if load.arrival_per_s <= 0:
        return {p: 0.0 for p in percentiles}
    if messages is None:
        rho = min(load.utilisation, 0.98)
        messages = int(min(MAX_SIM_MESSAGES, max(SIM_MESSAGES, 4000 / (1 - rho) ** 2)))
    rng = np.random.default_rng(seed)
    w = waits(load, _arrival_times(load, messages, rng), _work(load, messages, rng))
    kept = w[int(messages * WARMUP_FRACTION):]
    return {p: float(np.percentile(kept, p)) for p in percentiles}


def sampling_band(load: EndpointLoad, messages: int, runs: int = 30,
                  band: tuple[float, float] = (10.0, 90.0)) -> tuple[float, float]:
    """The p99 wait (s) a run of only ``messages`` messages shows, as a band over ``runs``
    seeded runs: a short run's p99 scatters widely around the long-run figure (near
    saturation by tens of percent), which is what a measured step is compared with."""
    import numpy as np

    rng = np.random.default_rng(7)
    p99s = []
    for _ in range(runs):
        w = waits(load, _arrival_times(load, messages, rng), _work(load, messages, rng))
        p99s.append(float(np.percentile(w, 99)))
    return float(np.percentile(p99s, band[0])), float(np.percentile(p99s, band[1]))


def replay(load: EndpointLoad, arrive_s: np.ndarray, work_s: np.ndarray,
           hold_s: float | np.ndarray = 0.0, percentiles: tuple[float, ...] = PERCENTILES,
           delay_s: np.ndarray | None = None) -> dict[float, float]:
    """The endpoint's waits for given arrivals and work (a trace: what a run really sent and
    what each message's work really took): the dispatch, slots, prefetch and rate limits of
    the model without the sampling noise of its random inputs. ``hold_s``: how long the
    prefetch credit stays taken after the work (the ack's delay), one for all or each
    message's own (a trace's holds are skewed: a median drops the few long ones that, near
    saturation, decide the p99). ``delay_s``: each message's delivery delay where nothing
    queues (the machine's transit and dispatch): it reaches the endpoint that much later, and
    its wait includes it."""
    import numpy as np

    arrive = arrive_s if delay_s is None else arrive_s + delay_s
    order = np.argsort(arrive)
    hold = hold_s[order] if isinstance(hold_s, np.ndarray) else hold_s
    w = waits(load, arrive[order], work_s[order], hold)
    if delay_s is not None:
        w = w + delay_s[order]
    return {p: float(np.percentile(w, p)) for p in percentiles}


def waits(load: EndpointLoad, arrive: np.ndarray, work: np.ndarray,
          hold_s: float | np.ndarray = 0.0) -> np.ndarray:
    """Each message's wait (s) from its arrival to the start of its work, in arrival order:
    the broker hands a message to the next instance with prefetch credit (round-robin; the
    first to free a slot where prefetch does not exceed the slots: one pooled queue), the
    instance runs it in its first free slot, after the rate limiter's window allows; the
    credit comes back ``hold_s`` (one for all, or each message's) after the work ends."""
    import numpy as np

    messages = len(arrive)
    holds = np.broadcast_to(np.asarray(hold_s, dtype=float), (messages,))
    out = np.empty(messages)
    k = load.instances
    slots = [[0.0] * load.slots for _ in range(k)]  # per instance: heap of slot free times
    held: list[list[float]] = [[] for _ in range(k)]  # per instance: heap of credit returns
    pooled = load.prefetch <= load.slots
    windows = [[-math.inf, 0] for _ in range(k)]  # per instance: [window start, used]
    limit = load.rate_limit
    turn = 0
    for i in range(messages):
        a = float(arrive[i])
        if pooled:  # credit binds: round-robin over instances with a free slot (credit),
            # else the first slot to come back takes it
            inst = min(range(k), key=lambda j: slots[j][0])
            for step in range(k):
                j = (turn + step) % k
                if slots[j][0] <= a:
                    inst = j
                    break
            turn = (inst + 1) % k
            ready = max(a, slots[inst][0])
        else:  # round-robin to an instance with prefetch credit, else the first to have it
            ready, inst = math.inf, 0
            for step in range(k):
                j = (turn + step) % k
                h = held[j]
                while h and h[0] <= a:
                    heapq.heappop(h)
                free_at = a if len(h) < load.prefetch else h[0]
                if free_at < ready:
                    ready, inst = free_at, j
                if free_at <= a:
                    break
            turn = (inst + 1) % k
            ready = max(ready, slots[inst][0])
        start = ready
        if limit:
            w = windows[inst]
            if start - w[0] >= limit[1]:  # the window is over: the next opens now
                w[0], w[1] = start, 0
            if w[1] >= limit[0]:  # full: wait for its end, where the next one opens
                start = w[0] + limit[1]
                w[0], w[1] = start, 0
            w[1] += 1
        finish = start + float(work[i])
        back = finish + float(holds[i])
        if pooled:
            heapq.heapreplace(slots[inst], back)
        else:
            heapq.heapreplace(slots[inst], finish)
            heapq.heappush(held[inst], back)
        out[i] = start - a
    return out


def predict(load: EndpointLoad, percentiles: tuple[float, ...] = PERCENTILES,
            messages: int | None = None) -> tuple[dict[float, float], str]:
    """The model's wait percentiles (s) and the method that gave them: M/M/c's closed form
    where it is exact, the simulation elsewhere."""
    exact = (load.arrivals == "poisson" and load.service.distribution == "exponential"
             and not load.retry_delays_s and load.failure_probability == 0
             and load.rate_limit is None and (load.prefetch <= load.slots or load.instances == 1))
    if exact:
        return closed_form(load, percentiles), "M/M/c (exact)"
    if load.utilisation >= 1:
        return {p: math.inf for p in percentiles}, "overloaded"
    if load.arrival_per_s <= 0 or load.slot_time_s <= 0 and load.rate_limit is None:
        return {p: 0.0 for p in percentiles}, "no work"
    if load.rate_limit is None and _rarely_waits(load):
        return {p: 0.0 for p in percentiles}, "P(wait) < 0.1%"
    return simulate(load, percentiles, messages), "simulation"


def _rarely_waits(load: EndpointLoad) -> bool:
    """Erlang C below 0.1% for the queue a message joins (the pooled slots, or one instance's
    where prefetch exceeds the slots), with a margin for variability: no percentile up to
    p99.9 waits, and `plan` answers without simulating."""
    if load.prefetch <= load.slots:
        servers, offered = load.servers, load.arrival_per_s * load.slot_time_s
    else:
        servers, offered = load.slots, load.arrival_per_s / load.instances * load.slot_time_s
    return offered < servers and model.erlang_c(servers, offered * 1.5) < 0.001


def endpoint_load(ep: Any, instances: int, arrival_per_s: float, service: ServiceTime,
                  arrivals: str = "even") -> EndpointLoad:
    """The EndpointLoad of a resolved profile endpoint (topology.profiles.Endpoint)."""
    slots = model.effective_concurrency(ep.concurrency or 1, ep.prefetch or 1,
                                        ep.partitions if ep.partitioned else None)
    return EndpointLoad(
        arrival_per_s=arrival_per_s, service=service,
        instances=model.active_instances(instances, ep.single_active_consumer), slots=slots,
        prefetch=max(slots, ep.prefetch or 1), failure_probability=ep.failure_probability,
        retry_delays_s=tuple(ep.retry.delays_s()),
        rate_limit=(ep.rate_limit.count, ep.rate_limit.interval_s) if ep.rate_limit else None,
        arrivals=arrivals)


def curve_point(load: EndpointLoad) -> dict[str, Any]:
    """One point of the predicted curve, in ms, as sweep.json writes it."""
    waits, method = predict(load)
    whitt = closed_form(load, (99.0,), "whitt")[99.0]
    return {"rate_per_s": load.arrival_per_s, "utilisation": round(load.utilisation, 4),
            "method": method,
            **{f"queue_wait_p{p:g}_ms": _ms(v) for p, v in waits.items()},
            "e2e_p99_ms": _ms(waits[99.0] + _work_p99_s(load)),
            "whitt_queue_wait_p99_ms": _ms(whitt)}


def _work_p99_s(load: EndpointLoad) -> float:
    """p99 of the time a message holds its slot (part of e2e)."""
    import numpy as np

    rng = np.random.default_rng(2)
    return float(np.percentile(_work(load, 20_000, rng), 99))


def _ms(v: float) -> float | None:
    return None if math.isinf(v) else round(v * 1000, 2)
