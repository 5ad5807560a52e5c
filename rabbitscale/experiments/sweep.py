"""`rabbitscale sweep`: the latency curve of one endpoint across load, measured and predicted.

The task rate steps from ``from`` to ``to`` of the model's capacity for the task mix (a run in
a vhost of its own per step, as find-max's). Each point holds the measured e2e, queue-wait,
slot-wait and processing percentiles of the endpoint the mix reaches first, its peak depth and
utilisation, and the latency model's prediction at the same rate (capacity/queueing.py).

The knee is the highest rate whose p99 queue wait is still below the mean time a message holds
its slot: beyond it a message typically waits longer than it is worked on, so latency is
dominated by queueing and grows without bound as utilisation nears 1. Unlike a "maximum
curvature" knee it needs no smoothing of noisy points, means the same at any service time,
and is read off the model and the measurements alike.

The headroom at the SLO is the highest rate whose p99 (of the SLO's metric) stays under its
threshold: measured (the highest step that held it, and below it none that failed) and
predicted (the model on a fine grid), each beside the capacity.

The model is judged where it is meant to hold, at utilisation 0.5 to 0.9, on each step's own
trace: the arrivals the step really sent and the work each message really took (records.csv)
go through the model's dispatch (prefetch credit, slots, instances, rate limiter; the credit
held until the completion record is confirmed, as the reference consumer acks), and its p99
queue wait must be within 25% (or 10 ms) of the measured one. Why the trace: a step of tens of
seconds shows a p99 that scatters by tens of percent around the long-run figure near
saturation (``predicted.queue_wait_p99_band_ms`` is that scatter, the 10-90% band of the p99 of
runs of the step's length), so the long-run prediction can only be compared within its band;
the replay takes the random inputs as they fell and leaves the model's mechanics to be judged.
The inputs' distributions are the profile's (the consumer draws the work from it, the pacer
spaces Poisson arrivals), so a model whose mechanics hold predicts the long-run curve.
"""

from __future__ import annotations

import asyncio
import csv
import dataclasses
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rabbitscale.capacity import queueing
from rabbitscale.capacity.plan import PlanInputs, predicted_max_per_s, service_time_s
from rabbitscale.core import rundir
from rabbitscale.core.errors import EXIT_INVALID, BadInput
from rabbitscale.engine.base import EngineFactory, LoadOptions
from rabbitscale.results.summary import Summary
from rabbitscale.results.summary import read as read_summary
from rabbitscale.topology.policy import ServiceTime
from rabbitscale.topology.profiles import Profile
from rabbitscale.topology.settings import RabbitSettings

JUDGED = (0.5, 0.9)  # utilisation range the model is held to
TOLERANCE = 0.25  # |predicted - measured| / measured
SLACK_MS = 10.0  # or within this many milliseconds
MIN_UNQUEUED = 20  # unqueued messages needed to estimate the delivery delay
# A comparison made while the machine stalled (the step's own figures say so) is
# inconclusive and the step is run again, never judged: beyond these the machine, not the
# endpoint, decided the step's latency
STALL_SEND_DELAY_P99_MS = 10.0  # the generator's sends left this late (p99)
STALL_FRACTION = 0.5  # delivery jitter or the credit hold's p99 beyond this share of a slot
# a freeze (an ack held, or a delivery that found credit free delayed) beyond this many times
# the comparison's own absolute slack (SLACK_MS plus the step's delivery jitter): near
# saturation it queues the messages behind it (and with fixed work keeps the slots in step
# for a second or more), which per-message delays drawn at random (the model's noise) cannot
# reproduce. Seen here: calm steps froze at most 0.8-1.3x, CI steps the model missed 1.6x
# (pooled, measured 50 ms, predicted 22 ms) and 4x (single active, 82 against 14 ms)
STALL_FREEZE_SLACKS = 1.5
STALL_RETRIES = 2  # a stalled step is run again this many times
SWEEP = "sweep.json"
METRICS = ("queue_wait", "e2e", "slot_wait", "processing")
STATS = ("p50", "p95", "p99")


@dataclass(frozen=True)
class Slo:
    metric: str  # queue_wait | e2e
    stat: str  # p50 | p95 | p99
    max_ms: float

    @property
    def key(self) -> str:
        return f"{self.metric}_{self.stat}_ms"

    def text(self) -> str:
        return f"{self.metric}.{self.stat}<{self.max_ms:g}ms"


def parse_slo(text: str) -> Slo:
    """``queue_wait.p99<400ms`` or ``e2e.p99<2s``."""
    from rabbitscale.core.units import parse_duration_s

    head, sep, value = text.partition("<")
    metric, _, stat = head.strip().partition(".")
    if not sep or (metric, stat) not in [("queue_wait", s) for s in STATS] + [("e2e", "p99")]:
        raise BadInput(f"--slo {text!r}: expected queue_wait.STAT<DURATION (STAT p50, p95 or "
                       f"p99) or e2e.p99<DURATION, e.g. queue_wait.p99<400ms")
    return Slo(metric, stat, parse_duration_s(value.strip()) * 1000)


@dataclass(frozen=True)
class Share:
    """A step's rate: ``value`` per second when ``absolute``, else a fraction of the model's
    capacity."""

    value: float
    absolute: bool = False

    def rate(self, capacity: float) -> float:
        return self.value if self.absolute else self.value * capacity

    def text(self) -> str:
        return f"{self.value:g}/s" if self.absolute else f"{self.value:.0%}"


@dataclass
class SweepOptions:
    base: LoadOptions  # the run each step varies the task rate of
    factory: EngineFactory  # a run of the kind swept, at a step's rate
    instances: int  # the consumer instances the model plans
    mix: dict[str, float]
    start: Share = Share(0.1)  # a fraction of the model's capacity, or a rate
    stop: Share = Share(1.1)
    steps: int = 8
    slo: Slo | None = None
    out_dir: Path = Path(".")
    system: str = ""  # what the steps load, in words
    blackbox: bool = False  # a deployed system: its curve from MassTransit's meters
    endpoint: str | None = None  # the endpoint followed (default: the kind's first)


@dataclass
class Sweep:
    queue: str
    capacity_per_s: float
    service: str
    points: list[dict[str, Any]] = field(default_factory=list)

    def as_dict(self, slo: Slo | None, load: queueing.EndpointLoad) -> dict[str, Any]:
        candidates = [p for p in self.points if JUDGED[0] <= p["utilisation"] <= JUDGED[1]
                      and p["measured"].get("queue_wait_p99_ms") is not None
                      and not p["replayed"].get("published_on_completion")]
        judged = [p for p in candidates if not p.get("stalled")]
        for p in judged:
            p["within"] = within(p["replayed"].get("queue_wait_p99_ms"),
                                 p["measured"]["queue_wait_p99_ms"],
                                 p["replayed"].get("transit_jitter_ms", 0.0))
        return {
            "queue": self.queue, "capacity_per_s": round(self.capacity_per_s, 4),
            "service_time": self.service, "arrivals": load.arrivals,
            "endpoint": {"instances": load.instances, "slots": load.slots,
                         "prefetch": load.prefetch, "rate_limit": load.rate_limit,
                         "failure_probability": load.failure_probability,
                         "retry_delays_s": list(load.retry_delays_s)},
            "points": self.points,
            "knee_per_s": {"measured": knee(self.points, "measured", load.slot_time_s),
                           "predicted": predicted_knee(load),
                           "definition": "highest rate whose p99 queue wait is below the "
                                         f"mean slot time ({load.slot_time_s * 1000:g} ms)"},
            "slo": None if slo is None else {
                "threshold": slo.text(),
                "headroom_per_s": {"measured": measured_headroom(self.points, slo),
                                   "predicted": predicted_headroom(load, slo)}},
            "model": {"judged_utilisation": list(JUDGED), "tolerance": TOLERANCE,
                      "slack_ms": SLACK_MS, "points_judged": len(judged),
                      "points_stalled": len(candidates) - len(judged),
                      # None: every point the model is held to was made on a stalled machine
                      "within": None if candidates and not judged else
                      bool(judged) and all(p["within"] for p in judged)},
        }


def within(predicted_ms: float | None, measured_ms: float, jitter_ms: float = 0.0) -> bool:
    """Within the larger of 25% of the measured figure and 10 ms plus the step's own delivery
    jitter (the model has no broker transit: on a busy machine a delivery can take tens of ms
    with no queue at all)."""
    if predicted_ms is None:
        return False
    return abs(predicted_ms - measured_ms) <= max(SLACK_MS + jitter_ms, TOLERANCE * measured_ms)


def knee(points: list[dict[str, Any]], side: str, slot_s: float) -> float | None:
    """The highest rate of consecutive points from the lowest whose p99 queue wait is below
    the mean slot time."""
    best = None
    for p in sorted(points, key=lambda x: x["rate_per_s"]):
        v = p[side].get("queue_wait_p99_ms")
        if v is None or v >= slot_s * 1000:
            break
        best = p["rate_per_s"]
    return best


def _grid(load: queueing.EndpointLoad, n: int = 40) -> list[float]:
    cap = load.capacity_per_s
    return [cap * (i + 1) / (n + 1) for i in range(n)]


def predicted_knee(load: queueing.EndpointLoad) -> float | None:
    best = None
    for rate in _grid(load):
        waits, _ = queueing.predict(load.at(rate), (99.0,))
        if waits[99.0] >= load.slot_time_s:
            break
        best = round(rate, 4)
    return best


def measured_headroom(points: list[dict[str, Any]], slo: Slo) -> float | None:
    best = None
    for p in sorted(points, key=lambda x: x["rate_per_s"]):
        v = p["measured"].get(slo.key)
        if v is None or v >= slo.max_ms:
            break
        best = p["rate_per_s"]
    return best


def predicted_headroom(load: queueing.EndpointLoad, slo: Slo) -> float | None:
    best = None
    pct = float(slo.stat[1:])
    for rate in _grid(load):
        if slo.metric == "e2e":
            v = queueing.curve_point(load.at(rate))["e2e_p99_ms"]
        else:
            w, _ = queueing.predict(load.at(rate), (pct,))
            v = None if math.isinf(w[pct]) else w[pct] * 1000
        if v is None or v >= slo.max_ms:
            break
        best = round(rate, 4)
    return best


def endpoint_of(settings: RabbitSettings, profile: Profile, mix: dict[str, float],
                instances: int, arrivals: str, queue: str | None = None
                ) -> tuple[str, queueing.EndpointLoad]:
    """The endpoint a sweep follows: ``queue``, else the mix's single kind's first
    endpoint."""
    if len(mix) != 1:
        raise BadInput("sweep follows one endpoint: give --task-mix a single task kind "
                       f"(got {', '.join(mix)})")
    prof = profile.resolved(settings)
    kind = next(iter(mix))
    reached = prof.consumers_of(prof.task(kind).message)
    if queue is not None and queue not in [ep.queue for ep in reached]:
        raise BadInput(f"sweep --endpoint {queue}: task kind {kind!r} does not reach it "
                       f"(it reaches {', '.join(ep.queue for ep in reached)})")
    ep = next(ep for ep in reached if queue in (None, ep.queue))
    st = ep.service_time or ServiceTime("fixed", service_time_s(PlanInputs(settings, profile),
                                                                 ep))
    return ep.queue, queueing.endpoint_load(ep, instances, 0.0, st, arrivals)


@dataclass(frozen=True)
class Trace:
    """One queue's messages from a run's records.csv (arrays in seconds, one per message)."""

    sent: Any
    work: Any  # finished - started
    hold: Any  # recorded - finished: the credit each message held after its work
    transit: Any  # delivered - sent
    waited: Any  # started - sent: the measured queue wait
    spawned: int  # messages published while processing (callbacks)


def read_trace(run_dir: Path, queue: str) -> Trace:
    """A queue's trace from a run made with trace=True."""
    import numpy as np

    from rabbitscale.engine.stack import TRACE_FIELDS

    path = run_dir / rundir.RECORDS_CSV
    if not path.exists():
        raise BadInput(f"{path}: no trace (the run was made without trace=True)")
    with path.open() as f:
        reader = csv.DictReader(f)
        if tuple(reader.fieldnames or ()) != TRACE_FIELDS:
            raise BadInput(f"{path}: not a records trace (columns {reader.fieldnames})")
        rows = [r for r in reader if r["queue"] == queue]

    def column(name: str) -> Any:
        return np.array([float(r[name]) for r in rows])

    sent, started = column("sent"), column("started")
    hold = np.maximum(column("recorded") - column("finished"), 0.0)
    return Trace(sent, column("finished") - started, hold, column("delivered") - sent,
                 started - sent, sum(int(r["spawned"] or 0) for r in rows))


def unqueued_delays(load: queueing.EndpointLoad, t: Trace) -> Any:
    """The delivery delays of the messages that found prefetch credit free when they were sent
    (in reality, from the trace: fewer messages delivered and not yet acked than the
    instances' credit), so none of it is queueing: the machine's own transit, and where credit
    implies a free slot (prefetch <= slots) the consumer's dispatch too."""
    import numpy as np

    delivered = np.sort(t.sent + t.transit)
    released = np.sort(t.sent + t.transit + np.maximum(t.work, 0) + t.hold)
    in_flight = np.searchsorted(delivered, t.sent, "right") - np.searchsorted(
        released, t.sent, "right")
    free = in_flight < load.instances * load.prefetch
    delays = t.waited if load.prefetch <= load.slots else t.transit
    return np.maximum(delays[free], 0.0)


def transit_jitter_ms(delays: Any) -> float:
    """p99 - p50 of the unqueued delays: the machine's own noise, which widens the absolute
    slack of the comparison (0 with fewer than 20 such messages)."""
    import numpy as np

    if len(delays) < MIN_UNQUEUED:
        return 0.0
    return round(float(np.percentile(delays, 99) - np.percentile(delays, 50)) * 1000, 2)


def per_slot_queues(load: queueing.EndpointLoad) -> queueing.EndpointLoad:
    """A wrong model of a pooled endpoint: every slot a queue of its own (M/M/1 each),
    messages dealt round-robin."""
    return dataclasses.replace(load, instances=load.servers, slots=1, prefetch=10**6)


def one_server(load: queueing.EndpointLoad) -> queueing.EndpointLoad:
    """A wrong model of a pooled endpoint: M/M/1, the endpoint as one server."""
    return dataclasses.replace(load, instances=1, slots=1, prefetch=1)


def replayed(load: queueing.EndpointLoad, run_dir: Path, queue: str,
             real: queueing.EndpointLoad | None = None) -> dict[str, Any]:
    """The model's waits on a step's own trace, in ms: the arrivals as sent, the work as done,
    and each message delayed by a delivery delay drawn (seeded) from the step's unqueued ones,
    which the model does not produce itself (broker transit, a busy consumer's dispatch).
    ``real``: the endpoint as it ran (default ``load``), which decides which messages did not
    queue: a model under test must not choose its own noise."""
    import numpy as np

    t = read_trace(run_dir, queue)
    if not len(t.sent):
        return {"messages": 0}
    unqueued = unqueued_delays(real or load, t)
    delay = np.random.default_rng(0).choice(unqueued, size=len(t.sent)) \
        if len(unqueued) >= MIN_UNQUEUED else None
    waits = queueing.replay(load, t.sent, t.work, t.hold, delay_s=delay)
    return {**{f"queue_wait_p{p:g}_ms": round(v * 1000, 2) for p, v in waits.items()},
            "messages": len(t.sent),
            "hold_after_work_ms": round(float(np.median(t.hold)) * 1000, 2),
            "hold_after_work_p99_ms": round(float(np.percentile(t.hold, 99)) * 1000, 2),
            "hold_after_work_max_ms": round(float(t.hold.max()) * 1000, 2),
            "unqueued_delay_max_ms": round(float(unqueued.max()) * 1000, 2)
            if len(unqueued) else 0.0,
            "work_mean_ms": round(float(t.work.mean()) * 1000, 2),
            "unqueued_delay_p50_ms": round(float(np.median(unqueued)) * 1000, 2)
            if delay is not None else None,
            "transit_jitter_ms": transit_jitter_ms(unqueued),
            # the processing published messages (callbacks) and held its credit meanwhile:
            # the model has no such step, so the point is shown, not judged
            "published_on_completion": t.spawned}


def stalled(summary: Summary, replay: dict[str, Any], slot_ms: float) -> str:
    """Why a step cannot judge the latency model, '' when it can: the machine stalled under
    it (the generator sent late, deliveries or acks were delayed by far more than a slot)."""
    reasons = []
    sends = [h.p99_ms for h in (summary.validity.send_delay_ms.values()
                                if summary.validity else []) if h.p99_ms is not None]
    if sends and max(sends) > STALL_SEND_DELAY_P99_MS:
        reasons.append(f"sends left up to {max(sends):.0f} ms late (p99)")
    bound = max(SLACK_MS, STALL_FRACTION * slot_ms)
    for key, what in (("transit_jitter_ms", "delivery jitter"),
                      ("hold_after_work_p99_ms", "acks held (p99)")):
        value = replay.get(key) or 0.0
        if value > bound:
            reasons.append(f"{what} {value:.0f} ms against a {slot_ms:.0f} ms slot")
    freeze = max(replay.get("hold_after_work_max_ms") or 0.0,
                 replay.get("unqueued_delay_max_ms") or 0.0)
    slack = SLACK_MS + (replay.get("transit_jitter_ms") or 0.0)
    if freeze > STALL_FREEZE_SLACKS * slack:
        reasons.append(f"a freeze of {freeze:.0f} ms (an ack held or a delivery with credit "
                       f"free delayed) against the comparison's {slack:.0f} ms slack")
    return "; ".join(reasons)


def _measured(summary: Summary, queue: str) -> dict[str, Any]:
    lat = summary.measured.latency_ms.get(queue, {})
    out: dict[str, Any] = {}
    for metric in METRICS:
        for stat in STATS:
            h = lat.get(metric)
            out[f"{metric}_{stat}_ms"] = getattr(h, f"{stat}_ms") if h else None
    out["peak_depth"] = summary.measured.peak_queue_depth
    wait = lat.get("queue_wait")
    out["count"] = wait.count if wait else 0
    out["verdict"] = summary.verdict
    return out


async def sweep(settings: RabbitSettings, profile: Profile, o: SweepOptions,
                say: Any = print) -> dict[str, Any]:
    queue, load = endpoint_of(settings, profile, o.mix, o.instances, o.base.arrivals,
                              o.endpoint)
    cap = predicted_max_per_s(settings, profile, o.instances, o.mix)
    if math.isinf(cap) or cap <= 0:
        raise BadInput(f"sweep: the model gives endpoint {queue} no finite capacity (no "
                       f"service time): set one in the profile")
    st = load.service
    result = Sweep(queue, cap, st.spec())
    say(f"sweep {queue} on {o.system or 'the reference stack'}: capacity {cap:.2f}/s "
        f"({st.spec()}, {load.instances} x {load.slots} slots, prefetch {load.prefetch}); "
        f"{o.steps} steps from {o.start.text()} to {o.stop.text()}")
    for i, rate in enumerate(step_rates(o, cap), start=1):
        point = await _point(o, load, queue, rate, i)
        point["utilisation"] = round(rate / cap, 4)
        result.points.append(point)
        measured, predicted, replay = point["measured"], point["predicted"], point["replayed"]
        say(f"  step {i:2d}: {rate:7.2f}/s  rho {rate / cap:4.2f}  queue wait p99 measured "
            f"{_fmt(measured['queue_wait_p99_ms'])}, on its trace "
            f"{_fmt(replay.get('queue_wait_p99_ms'))}; long-run "
            f"{_fmt(predicted['queue_wait_p99_ms'])} ({predicted['method']}, a step this long: "
            f"{predicted.get('queue_wait_p99_band_ms', '-')})")
    return {"mode": "stack", "system": o.system or "the reference stack",
            **result.as_dict(o.slo, load)}


async def _point(o: SweepOptions, load: queueing.EndpointLoad, queue: str, rate: float,
                 i: int) -> dict[str, Any]:
    """One step at ``rate``, run again (up to STALL_RETRIES times) while the machine stalled
    under it: such a step is inconclusive, not a verdict on the model."""
    for attempt in range(STALL_RETRIES + 1):
        suffix = f"-again{attempt}" if attempt else ""
        step = o.base.at_rate(rate, o.out_dir / f"step{i:02d}-{rate:.2f}per_s{suffix}",
                              trace=True)
        await o.factory(step).execute()
        assert step.out is not None
        summary = read_summary(step.out / rundir.SUMMARY)
        measured = _measured(summary, queue)
        predicted = queueing.curve_point(load.at(rate))
        if measured["count"] and load.utilisation < 1:
            lo, hi = queueing.sampling_band(load.at(rate), int(measured["count"]))
            predicted["queue_wait_p99_band_ms"] = [round(lo * 1000, 2), round(hi * 1000, 2)]
        replay = replayed(load.at(rate), step.out, queue)
        why = stalled(summary, replay, load.slot_time_s * 1000)
        if not why:
            break
    return {"rate_per_s": round(rate, 4), "run": str(step.out), "measured": measured,
            "predicted": predicted, "replayed": replay, "stalled": why}


def blackbox_point(summary: Summary, queue: str) -> dict[str, Any]:
    """A step on a deployed system: what its own meters recorded for the endpoint (e2e from
    delivery.duration, work from consume.duration, each quantile with its bucket) and what
    the broker's counters say (keep-up, the derived queue wait)."""
    ep = next((e for e in summary.endpoints or [] if e.queue == queue), None)
    meters = (ep.meters or {}) if ep else {}
    e2e, work = meters.get("e2e") or {}, meters.get("work") or {}
    out: dict[str, Any] = {f"e2e_{s}_ms": e2e.get(f"{s}_ms") for s in STATS}
    out.update({"e2e_bounds_ms": e2e.get("bounds_ms"), "work_mean_ms": work.get("mean_ms"),
                "work_p99_ms": work.get("p99_ms"), "count": e2e.get("count", 0),
                "queue_wait_derived_ms": ep.queue_wait_derived_ms if ep else None,
                "kept_up": ep.kept_up if ep else None,
                "consumed_rate_per_s": ep.consumed_rate_per_s if ep else None,
                "peak_depth": summary.measured.peak_queue_depth, "verdict": summary.verdict})
    return out


async def sweep_blackbox(settings: RabbitSettings, profile: Profile, o: SweepOptions,
                         say: Any = print) -> dict[str, Any]:
    """The curve of a deployed system's endpoint from its own meters, beside the model's
    (with the work its meters measured at each step, exponential assumed: labelled)."""
    queue, load = endpoint_of(settings, profile, o.mix, o.instances, o.base.arrivals,
                              o.endpoint)
    ep = profile.resolved(settings).endpoint(queue)
    cap = predicted_max_per_s(settings, profile, o.instances, o.mix) \
        if ep.service_time or ep.assumed_service_time_s else math.inf
    if not (o.start.absolute and o.stop.absolute) and (math.isinf(cap) or cap <= 0):
        raise BadInput(f"sweep --target: the profile gives {queue} no work per message, so "
                       f"there is no capacity to take shares of: give --from and --to as rates "
                       f"(e.g. --from 10/s --to 80/s), or plan --from-run for the work")
    say(f"sweep {queue} on {o.system}: {o.steps} steps from {o.start.text()} to "
        f"{o.stop.text()}; latency from MassTransit's meters")
    points: list[dict[str, Any]] = []
    for i, rate in enumerate(step_rates(o, cap), start=1):
        step = o.base.at_rate(rate, o.out_dir / f"step{i:02d}-{rate:.2f}per_s")
        await o.factory(step).execute()
        assert step.out is not None
        measured = blackbox_point(read_summary(step.out / rundir.SUMMARY), queue)
        predicted: dict[str, Any] = {}
        if measured["work_mean_ms"]:
            work = ServiceTime("exponential", measured["work_mean_ms"] / 1000)
            model = queueing.endpoint_load(ep, o.instances, rate, work, o.base.arrivals)
            if model.utilisation < 1:
                predicted = queueing.curve_point(model)
                predicted["method"] += " (work: its meters' mean, exponential assumed)"
        points.append({"rate_per_s": round(rate, 4), "utilisation":
                       None if math.isinf(cap) else round(rate / cap, 4),
                       "run": str(step.out), "measured": measured, "predicted": predicted})
        say(f"  step {i:2d}: {rate:7.2f}/s  e2e p50 {_fmt(measured['e2e_p50_ms'])}, p99 "
            f"{_fmt(measured['e2e_p99_ms'])} (MassTransit's meters), work "
            f"{_fmt(measured['work_mean_ms'])}; "
            f"{'kept up' if measured['kept_up'] else 'FELL BEHIND'}")
    slot = ep.service_time.mean_s * 1000 if ep.service_time else None
    return {"mode": "black-box", "system": o.system, "queue": queue,
            "capacity_per_s": None if math.isinf(cap) else round(cap, 4),
            "arrivals": o.base.arrivals, "points": points,
            "knee_per_s": {"measured": _blackbox_knee(points),
                           "definition": "highest rate whose e2e p99 is below twice the mean "
                                         "work (a message waits no longer than it is worked "
                                         "on)"},
            "slo": None if o.slo is None else {
                "threshold": o.slo.text(),
                "headroom_per_s": {"measured": measured_headroom(
                    [{**p, "measured": {**p["measured"], o.slo.key: p["measured"].get(
                        f"e2e_{o.slo.stat}_ms")}} for p in points], o.slo)}},
            "model": {"work_ms": slot, "within": None},
            "kept_up": all(p["measured"]["kept_up"] for p in points)}


def _blackbox_knee(points: list[dict[str, Any]]) -> float | None:
    best = None
    for p in sorted(points, key=lambda x: x["rate_per_s"]):
        m = p["measured"]
        if m["e2e_p99_ms"] is None or not m["work_mean_ms"] or \
                m["e2e_p99_ms"] >= 2 * m["work_mean_ms"]:
            break
        best = p["rate_per_s"]
    return best


def step_rates(o: SweepOptions, capacity: float) -> list[float]:
    """The steps' rates, evenly from --from to --to."""
    lo, hi = o.start.rate(capacity), o.stop.rate(capacity)
    if not 0 < lo < hi:
        raise BadInput(f"sweep: --from {o.start.text()} must be below --to {o.stop.text()}")
    return [lo + (hi - lo) * i / max(1, o.steps - 1) for i in range(o.steps)]


def _fmt(v: float | None) -> str:
    return "-" if v is None else f"{v:,.1f} ms"


def run_sweep(settings: RabbitSettings, profile: Profile, o: SweepOptions) -> int:
    """Exit 0 when the model holds at utilisation 0.5-0.9 (and the SLO has headroom where one
    is given), 1 otherwise."""
    from rabbitscale.reports.sweep import write_report

    if o.blackbox:
        return _run_blackbox(settings, profile, o)
    doc = asyncio.run(sweep(settings, profile, o))
    o.out_dir.mkdir(parents=True, exist_ok=True)
    (o.out_dir / SWEEP).write_text(json.dumps(doc, indent=2))
    page = write_report(doc, o.out_dir)
    m, k = doc["model"], doc["knee_per_s"]
    print(f"knee: measured {_rate(k['measured'])}, predicted {_rate(k['predicted'])} "
          f"({k['definition']})")
    if doc["slo"]:
        h = doc["slo"]["headroom_per_s"]
        print(f"headroom at {doc['slo']['threshold']}: measured {_rate(h['measured'])}, "
              f"predicted {_rate(h['predicted'])} (capacity {doc['capacity_per_s']:.2f}/s)")
    ok = m["within"]
    if ok is None:
        print(f"latency model: INCONCLUSIVE: every step at utilisation {JUDGED[0]}-"
              f"{JUDGED[1]} ran on a stalled machine (each run {STALL_RETRIES + 1} times; see "
              f"each point's 'stalled')")
        print(f"sweep: {o.out_dir / SWEEP}  report: {page}")
        return EXIT_INVALID
    print(f"latency model: {m['points_judged']} point(s) at utilisation {JUDGED[0]}-{JUDGED[1]}"
          f", p99 queue wait {'within' if ok else 'NOT within'} {TOLERANCE:.0%} or "
          f"{SLACK_MS:g} ms: {'PASS' if ok else 'FAIL'}"
          + (f" ({m['points_stalled']} stalled point(s) not judged)"
             if m["points_stalled"] else ""))
    print(f"sweep: {o.out_dir / SWEEP}  report: {page}")
    return 0 if ok else 1


def _rate(v: float | None) -> str:
    return "-" if v is None else f"{v:.2f}/s ({v * 60:,.0f}/min)"


def _run_blackbox(settings: RabbitSettings, profile: Profile, o: SweepOptions) -> int:
    """A deployed system's curve: exit 0 when every step was measured by its meters, 1 when
    a step has no meter data (nothing to draw), 5 when a step was INVALID (the generator)."""
    from rabbitscale.reports.sweep import write_report

    doc = asyncio.run(sweep_blackbox(settings, profile, o))
    o.out_dir.mkdir(parents=True, exist_ok=True)
    (o.out_dir / SWEEP).write_text(json.dumps(doc, indent=2))
    page = write_report(doc, o.out_dir)
    print(f"knee: measured {_rate(doc['knee_per_s']['measured'])} "
          f"({doc['knee_per_s']['definition']})")
    if doc["slo"]:
        print(f"headroom at {doc['slo']['threshold']}: measured "
              f"{_rate(doc['slo']['headroom_per_s']['measured'])}")
    print(f"sweep: {o.out_dir / SWEEP}  report: {page}")
    verdicts = [p["measured"]["verdict"] for p in doc["points"]]
    if "INVALID" in verdicts:
        return EXIT_INVALID
    return 0 if all(p["measured"]["count"] for p in doc["points"]) else 1
