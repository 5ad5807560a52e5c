"""The capacity model: pure functions, units in their names, no I/O.

Rates are per second, times in seconds, sizes in bytes. Each function says what it assumes;
the plan (capacity/plan.py) puts the numbers side by side with their inputs and verdicts.
"""

from __future__ import annotations

import math

# --- memory ---------------------------------------------------------------------------------


def prefetch_memory_bytes(prefetch: int, message_bytes: float, instances: int) -> float:
    """Client-side buffer: unacked deliveries held by all instances (the guide's formula)."""
    return float(prefetch) * message_bytes * instances


def watermark_bytes(total_memory_bytes: float, relative: float) -> float:
    """vm_memory_high_watermark.relative of the memory the node sees."""
    return total_memory_bytes * relative


def alert_memory_bytes(watermark: float, fraction: float = 0.75) -> float:
    """The guide's warning level: 75% of the high watermark."""
    return watermark * fraction


def headroom_fraction(total_memory_bytes: float, watermark: float) -> float:
    """Share of memory left above the watermark; the guide asks for 40%."""
    return 1.0 - watermark / total_memory_bytes if total_memory_bytes else 0.0


# --- throughput -----------------------------------------------------------------------------


def partition_throughput_per_s(partitions: int, per_partition_per_s: float) -> float:
    """The guide's "30 partitions x 2-3 msg/s": partitions process one message at a time each."""
    return partitions * per_partition_per_s


def busy_partitions(partitions: int, prefetch: int, concurrency: int) -> int:
    """Partitions one instance can keep busy: a partition works on one message at a time,
    and an instance holds at most ``prefetch`` messages and runs ``concurrency`` at once."""
    return max(1, min(partitions, prefetch, concurrency))


def concurrency_bound_per_s(concurrent: float, service_time_s: float) -> float:
    """Little's law: at most ``concurrent`` in service, each for ``service_time_s``."""
    if service_time_s <= 0:
        return math.inf
    return concurrent / service_time_s


def effective_concurrency(concurrency: int, prefetch: int, partitions: int | None) -> int:
    """Messages one instance can really work on at once: the smallest of its limits."""
    limits = [concurrency, prefetch] + ([partitions] if partitions else [])
    return max(1, min(limits))


def active_instances(instances: int, single_active_consumer: bool) -> int:
    """With single-active-consumer only one instance receives messages."""
    return 1 if single_active_consumer else instances


def instances_needed(target_per_s: float, per_instance_per_s: float,
                     headroom: float = 0.3) -> int:
    """Instances so that the target uses at most (1 - headroom) of the capacity."""
    if per_instance_per_s <= 0:
        return 0 if target_per_s <= 0 else 10**9
    return max(1, math.ceil(target_per_s / (per_instance_per_s * (1.0 - headroom))))


# --- failures and retries --------------------------------------------------------------------


def expected_attempts(failure_probability: float, retries: int) -> float:
    """Attempts per message when each fails with ``failure_probability`` and up to ``retries``
    follow: 1 + p + p^2 + ... + p^retries."""
    p = min(max(failure_probability, 0.0), 1.0)
    return float(sum(p**k for k in range(retries + 1)))


def effective_service_time_s(service_time_s: float, failure_probability: float,
                             retry_delays_s: list[float]) -> float:
    """Time a message holds its consumer slot: every attempt's work, and the delays before the
    retries (MassTransit's in-memory UseMessageRetry waits while holding the slot)."""
    p = min(max(failure_probability, 0.0), 1.0)
    attempts = expected_attempts(p, len(retry_delays_s))
    waiting = sum(p**k * d for k, d in enumerate(retry_delays_s, start=1))
    return service_time_s * attempts + waiting


def faulted_fraction(failure_probability: float, retries: int) -> float:
    """Share of messages that fail every attempt and land in ``_error``."""
    p = min(max(failure_probability, 0.0), 1.0)
    return float(p ** (retries + 1))


def breaker_trip_probability(failure_probability: float, attempts: int, active_threshold: int,
                             trip_pct: float) -> float:
    """Probability that a closed MassTransit circuit breaker trips within one tracking period
    of ``attempts`` attempts, each failing independently: it trips on a fault once more than
    ``active_threshold`` attempts were seen and faults x 100 // attempts >= ``trip_pct``.
    Exact, by dynamic programming over (attempts so far, faults so far)."""
    p = min(max(failure_probability, 0.0), 1.0)
    if p == 0.0 or attempts <= active_threshold:
        return 0.0
    alive = {0: 1.0}  # faults so far -> probability of not having tripped yet
    tripped = 0.0
    for n in range(1, attempts + 1):
        nxt: dict[int, float] = {}
        for f, prob in alive.items():
            nxt[f] = nxt.get(f, 0.0) + prob * (1 - p)
            if n > active_threshold and (f + 1) * 100 // n >= trip_pct:
                tripped += prob * p
            else:
                nxt[f + 1] = nxt.get(f + 1, 0.0) + prob * p
        alive = {f: q for f, q in nxt.items() if q > 1e-15}
    return min(1.0, tripped)


# --- queues in bursts -------------------------------------------------------------------------


def queue_growth_per_s(arrival_per_s: float, capacity_per_s: float) -> float:
    return max(0.0, arrival_per_s - capacity_per_s)


def time_to_fill_s(max_length: float, depth: float, arrival_per_s: float,
                   capacity_per_s: float) -> float:
    """Seconds until x-max-length is reached (inf if the queue does not grow)."""
    growth = queue_growth_per_s(arrival_per_s, capacity_per_s)
    return math.inf if growth == 0 else max(0.0, (max_length - depth) / growth)


def burst_backlog(arrival_per_s: float, capacity_per_s: float, burst_s: float,
                  max_length: float = math.inf) -> float:
    """Depth at the end of a burst (capped by x-max-length, beyond which publishes are
    rejected with reject-publish)."""
    return min(max_length, queue_growth_per_s(arrival_per_s, capacity_per_s) * burst_s)


def rejected_in_burst(arrival_per_s: float, capacity_per_s: float, burst_s: float,
                      max_length: float = math.inf) -> float:
    grown = queue_growth_per_s(arrival_per_s, capacity_per_s) * burst_s
    return max(0.0, grown - max_length)


def drain_time_s(backlog: float, capacity_per_s: float, arrival_per_s: float) -> float:
    """Seconds to empty a backlog once arrivals fall back to ``arrival_per_s``."""
    spare = capacity_per_s - arrival_per_s
    if backlog <= 0:
        return 0.0
    return math.inf if spare <= 0 else backlog / spare


# --- waiting (M/M/c) ----------------------------------------------------------------------------


def erlang_c(servers: int, offered_load: float) -> float:
    """Probability that an arrival waits (Erlang C), offered load a = lambda / mu in Erlangs.
    Computed through the Erlang B recursion, stable for hundreds of servers."""
    if servers < 1:
        raise ValueError("servers must be >= 1")
    if offered_load <= 0:
        return 0.0
    if offered_load >= servers:
        return 1.0
    b = 1.0
    for k in range(1, servers + 1):
        b = offered_load * b / (k + offered_load * b)
    rho = offered_load / servers
    return b / (1.0 - rho * (1.0 - b))


def mmc_mean_wait_s(arrival_per_s: float, service_time_s: float, servers: int) -> float:
    if service_time_s <= 0:  # no work: a message never waits for a slot
        return 0.0
    mu = 1.0 / service_time_s
    if arrival_per_s >= servers * mu:
        return math.inf
    return erlang_c(servers, arrival_per_s / mu) / (servers * mu - arrival_per_s)


def ggc_mean_wait_s(arrival_per_s: float, service_time_s: float, servers: int,
                    arrival_scv: float, service_scv: float) -> float:
    """Allen-Cunneen: the M/M/c wait scaled by (ca^2 + cs^2) / 2, the squared coefficients of
    variation of inter-arrival and service times (0 for an even schedule or a fixed service
    time, 1 for Poisson arrivals or exponential service)."""
    return mmc_mean_wait_s(arrival_per_s, service_time_s, servers) * \
        (arrival_scv + service_scv) / 2.0


def mmc_wait_percentile_s(arrival_per_s: float, service_time_s: float, servers: int,
                          percentile: float = 99.0) -> float:
    """Waiting time not exceeded by ``percentile`` % of arrivals:
    P(W > t) = C * exp(-(c*mu - lambda) t)."""
    if service_time_s <= 0:
        return 0.0
    mu = 1.0 / service_time_s
    if arrival_per_s >= servers * mu:
        return math.inf
    c = erlang_c(servers, arrival_per_s / mu)
    tail = 1.0 - percentile / 100.0
    if c <= tail:
        return 0.0
    return math.log(c / tail) / (servers * mu - arrival_per_s)


# --- connections ------------------------------------------------------------------------------


def connections_total(instances: int, publisher_connections: int,
                      consumer_connections: int = 1) -> int:
    return instances * (publisher_connections + consumer_connections)


def channels_per_connection(endpoints: int) -> int:
    """A consumer connection: one channel per endpoint plus one to report completions."""
    return endpoints + 1
