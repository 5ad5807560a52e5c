"""A run's ledger and verdict, as pure functions of what it measured.

``Run`` gathers the facts once at the end (``Facts``: plain numbers, no live objects); ``judge``
turns them into one ``Outcome`` (ledger, checks, verdict) that the run directory writer saves
and the terminal prints. Nothing here does I/O, so every rule is unit-tested directly.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

from rabbitscale.judge import slo, soak
from rabbitscale.scenarios import registry
from rabbitscale.scenarios.schedule import Rates, burst_windows, expected_arrivals


@dataclass(frozen=True)
class Facts:
    """What a run measured (all counts are messages unless named otherwise)."""

    scenario: str
    duration_s: float
    rates: Rates
    published: int  # confirmed by the broker (API, AMQP transport, fault injections), counted
    # once in each queue a message reached
    accepted: int  # tasks the broker confirmed (a publish each): the load's arrivals
    rejected: int  # basic.nack at publish (reject-publish), answered 503
    unconfirmed: int  # timeout / blocked / failed / unroutable at publish
    still_queued: int  # left in the endpoint queues after the drain
    completed: int
    faulted: int
    skipped: int
    duplicates: int
    done_in_time: int  # finished by the end of the schedule (+ grace): the keep-up signal
    burst_absorbed: tuple[int, ...] = ()  # per burst window: delivered within the max lag
    peak_depth: int = 0
    max_age_s: float = 0.0
    peak_memory_fraction: float = 0.0
    memory_alarm: bool = False
    order_violations: int = 0
    redelivered: int = 0
    completed_after_retry: int = 0
    faults_by_reason: dict[str, int] = field(default_factory=dict)
    webhooks_arrived: int = 0
    webhook_duplicates: int = 0
    spawned: int = 0  # messages the consumers published themselves (callbacks of tasks)
    error: str = ""  # the run itself failed (Locust crashed, a fault could not be injected)
    drain_timeout_s: float = 0.0
    # process -> first/last/peak rss and growth per hour (judge/soak.py)
    process_growth: dict[str, dict[str, float | None]] = field(default_factory=dict)


@dataclass(frozen=True)
class Outcome:
    ledger: dict[str, Any]
    checks: list[slo.Check]
    verdict: str
    scheduled_arrivals: float
    arrivals: int
    keep_up_ratio: float


def extended(o: Outcome, checks: list[slo.Check]) -> Outcome:
    """The outcome with more checks (latency thresholds, the run's validity), judged again."""
    if not checks:
        return o
    merged = [*o.checks, *checks]
    return dataclasses.replace(o, checks=merged, verdict=slo.verdict(merged))


def scheduled(scenario: str, rates: Rates, duration_s: float) -> float:
    """Arrivals the open-model schedule asks for over the whole run, all streams."""
    return sum(expected_arrivals(fn, 0, duration_s)
               for fn in registry.get(scenario).streams(rates, duration_s).values())


def burst_targets(scenario: str, rates: Rates, duration_s: float
                  ) -> list[tuple[float, float, float, float]]:
    """(start_s, end_s, rate, scheduled webhooks) of each burst window of the scenario."""
    webhooks = registry.get(scenario).streams(rates, duration_s).get(registry.WEBHOOKS)
    if webhooks is None:
        return []
    return [(w0, w1, rate, expected_arrivals(webhooks, w0, w1))
            for w0, w1, rate in burst_windows(duration_s, rates.burst_rates)]


def load_checks(scenario: str, rates: Rates, duration_s: float, attempted: int,
                burst_absorbed: tuple[int, ...], t: slo.Thresholds, how: str) -> list[slo.Check]:
    """The load's own checks, the same for every kind of run: arrivals against the schedule,
    and each burst's webhooks ``how`` (delivered, called back) within the maximum lag."""
    expected = scheduled(scenario, rates, duration_s)
    checks = [slo.at_least("achieved_rate_ratio", attempted / max(1.0, expected),
                           t.rate_ratio_min,
                           f"{attempted} arrivals of {expected:.0f} scheduled "
                           f"({attempted / duration_s * 60:.0f}/min)")]
    for i, ((_, _, rate, want), got) in enumerate(zip(
            burst_targets(scenario, rates, duration_s), burst_absorbed, strict=False)):
        checks.append(slo.at_least(
            f"burst_{i + 1}_absorbed", got / max(1.0, want), t.burst_ratio_min,
            f"{got} of {want:.0f} webhooks at {rate:g}/s {how} within "
            f"{t.burst_max_lag_s:g}s"))
    return checks


def ledger(f: Facts) -> dict[str, Any]:
    """published (+ spawned by consumers) = completed + faulted + skipped + still queued + lost.
    A publish reported failed that the broker had in fact taken shows up as
    ``delivered_unconfirmed``, never as a negative loss."""
    finished = f.completed + f.faulted + f.skipped
    owed = f.published + f.spawned
    return {"published": f.published, "rejected_at_publish": f.rejected,
            "failed_at_publish": f.unconfirmed, "spawned": f.spawned,
            "completed": f.completed, "faulted": f.faulted, "skipped": f.skipped,
            "duplicates": f.duplicates, "still_queued": f.still_queued,
            "lost": max(0, owed - finished - f.still_queued),
            "delivered_unconfirmed": max(0, finished + f.still_queued - owed),
            "order_violations": f.order_violations, "redelivered": f.redelivered,
            "completed_after_retry": f.completed_after_retry,
            "faults_by_reason": dict(f.faults_by_reason),
            "webhooks_arrived": f.webhooks_arrived, "webhook_duplicates": f.webhook_duplicates}


def judge(f: Facts, t: slo.Thresholds) -> Outcome:
    led = ledger(f)
    expected = scheduled(f.scenario, f.rates, f.duration_s)
    attempted = f.accepted + f.rejected + f.unconfirmed
    finished = f.completed + f.faulted + f.skipped
    checks = load_checks(f.scenario, f.rates, f.duration_s, attempted, f.burst_absorbed, t,
                         "delivered")
    checks += [
        slo.depth_check("peak_queue_depth", f.peak_depth, t),
        slo.at_most("max_message_age_s", f.max_age_s, t.message_age_max_s),
        slo.at_most("peak_memory_fraction_of_watermark", f.peak_memory_fraction,
                    t.memory_fraction_max),
        slo.at_most("memory_alarm", int(f.memory_alarm), 0),
        slo.at_most("error_rate", f.faulted / max(1, finished), t.error_rate_max,
                    f"{f.faulted} in _error"),
        slo.at_most("unfinished_after_drain", f.still_queued, 0,
                    f"still queued after draining (up to {f.drain_timeout_s:g}s)"),
        slo.at_most("lost", led["lost"], t.lost_max,
                    "published = completed + faulted + still queued + lost"),
        slo.at_most("order_violations", f.order_violations, 0),
        soak.check(f.process_growth, f.duration_s, t),
    ]
    if f.error:
        checks.append(slo.Check("run_error", "none", f.error, slo.FAIL))
    return Outcome(led, checks, slo.verdict(checks), expected, attempted,
                   f.done_in_time / max(1, f.published))


# --- black-box runs: what can be known from outside -------------------------------------------

NOT_MEASURED = "not measured"


@dataclass(frozen=True)
class TargetFacts:
    """What a black-box run measured. None means the run could not know it."""

    scenario: str
    duration_s: float
    rates: Rates
    requests: dict[str, int]  # task kind -> POST requests sent
    accepted: dict[str, int]  # task kind -> 2xx answers
    unauthorised: int  # 401 answers: the key was refused
    tracked: tuple[str, ...]  # kinds whose tasks carry a callback (or are polled)
    callbacks: dict[str, int]  # kind -> unique final callbacks
    duplicates: int = 0
    progress: int = 0
    unknown: int = 0  # requests to the receiver that are not this run's tasks
    pending: int | None = None  # still queued at the end of the drain (broker depth)
    faulted: int | None = None  # growth of the _error queues over the run
    burst_absorbed: tuple[int, ...] = ()
    peak_depth: int = 0
    max_age_s: float = 0.0  # estimated: depth / ack rate
    peak_memory_fraction: float = 0.0
    memory_alarm: bool = False
    missing_workers: tuple[str, ...] = ()
    error: str = ""
    drain_timeout_s: float = 0.0


def target_ledger(f: TargetFacts) -> dict[str, Any]:
    """accepted (tracked) = callbacks received + still pending + lost; what black-box mode
    cannot know is "not measured", never 0."""
    owed = sum(f.accepted.get(k, 0) for k in f.tracked)
    received = sum(f.callbacks.get(k, 0) for k in f.tracked)
    pending = f.pending if f.pending is not None else 0
    untracked = sum(n for k, n in f.accepted.items() if k not in f.tracked)
    return {
        "mode": "black-box",
        "requests": sum(f.requests.values()), "accepted": sum(f.accepted.values()),
        "accepted_by_kind": dict(f.accepted), "unauthorised": f.unauthorised,
        "tracked": owed, "callbacks_received": received,
        "callbacks_by_kind": dict(f.callbacks),
        "still_pending": f.pending if f.pending is not None else NOT_MEASURED,
        "lost": max(0, owed - received - pending),
        "callbacks_without_accepted_request": max(0, received - owed),
        "duplicate_callbacks": f.duplicates, "progress_callbacks": f.progress,
        "unknown_callbacks": f.unknown,
        "untracked_accepted": untracked,  # accepted tasks that carry no callback (spend)
        "faulted": f.faulted if f.faulted is not None else NOT_MEASURED,
        "order_violations": NOT_MEASURED,
    }


def judge_target(f: TargetFacts, t: slo.Thresholds) -> Outcome:
    led = target_ledger(f)
    expected = scheduled(f.scenario, f.rates, f.duration_s)
    attempted = sum(f.requests.values())
    checks = load_checks(f.scenario, f.rates, f.duration_s, attempted, f.burst_absorbed, t,
                         "called back")
    checks += [
        slo.depth_check("peak_queue_depth", f.peak_depth, t),
        slo.at_most("max_message_age_s", f.max_age_s, t.message_age_max_s,
                    "estimated: depth / ack rate (quorum queues report no head timestamp)"),
        slo.at_most("peak_memory_fraction_of_watermark", f.peak_memory_fraction,
                    t.memory_fraction_max),
        slo.at_most("memory_alarm", int(f.memory_alarm), 0),
        slo.at_most("unauthorised", f.unauthorised, 0,
                    "HTTP 401 from the target: check --api-key / RABBITSCALE_TARGET_API_KEYS"),
    ]
    tracked = max(1, led["tracked"])
    if f.faulted is None:
        checks.append(slo.not_measured("error_rate", "the broker source has no _error depth"))
    else:
        checks.append(slo.at_most("error_rate", f.faulted / tracked, t.error_rate_max,
                                  f"{f.faulted} added to _error queues"))
    checks += [
        slo.at_most("unfinished_after_drain", f.pending or 0, 0,
                    f"still queued after draining (up to {f.drain_timeout_s:g}s)")
        if f.pending is not None else slo.not_measured("unfinished_after_drain", ""),
        slo.at_most("lost", led["lost"], t.lost_max,
                    "accepted = callbacks + still queued + lost"),
        slo.not_measured("order_violations", "needs per-key sequence numbers from consumers"),
    ]
    if f.missing_workers:
        checks.append(slo.Check("workers", "all stay connected",
                                f"{len(f.missing_workers)} lost", slo.FAIL,
                                "missing: " + ", ".join(f.missing_workers)))
    if f.error:
        checks.append(slo.Check("run_error", "none", f.error, slo.FAIL))
    done = sum(f.callbacks.get(k, 0) for k in f.tracked)
    return Outcome(led, checks, slo.verdict(checks), expected, attempted,
                   done / max(1, led["tracked"]))


@dataclass(frozen=True)
class AmqpFacts:
    """What a black-box AMQP run measured: Locust's confirms, and the broker's counters on
    the system's queues (differences over the run, read-only)."""

    scenario: str
    duration_s: float
    rates: Rates
    published: dict[str, int]  # task kind -> publishes attempted
    confirmed: dict[str, int]  # task kind -> confirmed by the broker
    owed: int  # confirmed x the queues each message type reaches
    consumed: int  # acks on those queues (a message moved to _error or _skipped is acked too)
    arrived: int  # messages the queues received (others' publishes included)
    faulted: int  # into the _error queues
    skipped: int  # into the _skipped queues
    still_queued: int  # more in the queues than before the run, after the drain
    peak_depth: int = 0
    queue_wait_s: float = 0.0  # derived: depth / ack rate, per sample
    peak_memory_fraction: float = 0.0
    memory_alarm: bool = False
    app: dict[str, float] | None = None  # MassTransit's counters over the run (meters)
    error: str = ""
    drain_timeout_s: float = 0.0


def amqp_ledger(f: AmqpFacts) -> dict[str, Any]:
    """owed (confirmed x fanout) = consumed + still queued + lost; what the broker shows of
    other publishers is "foreign", never counted as ours."""
    app = f.app or {}
    return {
        "mode": "black-box amqp",
        "published": sum(f.published.values()), "confirmed": sum(f.confirmed.values()),
        "confirmed_by_kind": dict(f.confirmed),
        "unconfirmed": sum(f.published.values()) - sum(f.confirmed.values()),
        "owed_deliveries": f.owed, "consumed": f.consumed, "faulted": f.faulted,
        "skipped": f.skipped, "still_queued": f.still_queued,
        "lost": max(0, f.owed - f.consumed - f.still_queued),
        "foreign_deliveries": max(0, f.arrived - f.owed),
        "app_consumed": int(app["consumed"]) if "consumed" in app else NOT_MEASURED,
        "app_consume_errors": int(app["consume faults"]) if "consume faults" in app
        else NOT_MEASURED,
        "order_violations": NOT_MEASURED,
    }


def judge_amqp(f: AmqpFacts, t: slo.Thresholds) -> Outcome:
    led = amqp_ledger(f)
    expected = scheduled(f.scenario, f.rates, f.duration_s)
    attempted = led["published"]
    checks = load_checks(f.scenario, f.rates, f.duration_s, attempted, (), t, "delivered")
    checks += [
        slo.at_most("unconfirmed_publishes", led["unconfirmed"], 0,
                    "nacked, returned or timed out at publish"),
        slo.depth_check("peak_queue_depth", f.peak_depth, t),
        slo.at_most("queue_wait_derived_s", f.queue_wait_s, t.message_age_max_s,
                    "derived from the broker's counters: the longest endpoint's mean wait "
                    "(Little's law over the load)"),
        slo.at_most("peak_memory_fraction_of_watermark", f.peak_memory_fraction,
                    t.memory_fraction_max),
        slo.at_most("memory_alarm", int(f.memory_alarm), 0),
        slo.at_most("error_rate", f.faulted / max(1, f.consumed), t.error_rate_max,
                    f"{f.faulted} moved to _error queues of {f.consumed} consumed"),
        slo.at_most("unfinished_after_drain", f.still_queued, 0,
                    f"still queued after draining (up to {f.drain_timeout_s:g}s)"),
        slo.at_most("lost", led["lost"], t.lost_max,
                    "confirmed x queues reached = consumed + still queued + lost"),
        slo.not_measured("order_violations", "needs per-key sequence numbers from consumers"),
    ]
    if led["foreign_deliveries"]:
        checks.append(slo.Check("foreign_deliveries", "0", led["foreign_deliveries"], slo.WARN,
                                "other publishers sent to the same queues during the run: "
                                "consumed and queued include theirs, so lost may be hidden"))
    if f.error:
        checks.append(slo.Check("run_error", "none", f.error, slo.FAIL))
    return Outcome(led, checks, slo.verdict(checks), expected, attempted,
                   f.consumed / max(1, f.owed))
