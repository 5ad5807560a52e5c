"""`rabbitscale plan`: the capacity model applied to a profile, settings and targets.

Every figure carries its inputs and a verdict (OK / WARN / FAIL) against the targets, and the
guide's own arithmetic is reproduced where it is right and contradicted where it does not
hold. Imports stay light (no aio-pika, pandas or matplotlib) so the command answers fast.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

from rabbitscale.capacity import broker, model
from rabbitscale.core import targets
from rabbitscale.core.units import format_bps, format_bytes, format_iec
from rabbitscale.core.verdicts import FAIL, INFO, OK, WARN
from rabbitscale.topology.profiles import Endpoint, Profile
from rabbitscale.topology.settings import RabbitSettings
from rabbitscale.topology.tasks import arrivals_per_queue, shares


@dataclass(frozen=True)
class PlanInputs:
    settings: RabbitSettings
    profile: Profile
    instances: int = 5
    task_rate_per_s: float = 1000 / 60
    mix: dict[str, float] | None = None  # None: the profile's default mix
    webhook_burst_per_s: float = 100.0
    webhook_baseline_per_s: float = 10.0
    burst_s: float = 300.0
    message_bytes: float = 10_000
    worst_message_bytes: float = 1_000_000  # PayloadJson may be up to 1 MB
    service_time_s: dict[str, float] = field(default_factory=dict)  # per attempt
    # measured time per message, retries included (a calibration file): used as it is
    slot_time_s: dict[str, float] = field(default_factory=dict)
    node_memory_bytes: float = 4 * 2**30  # the compose memory limit
    watermark_relative: float = 0.6
    queued_messages: float = 100_000  # the guide's "100,000 total queued messages"
    server_channel_max: int = 2000
    server_connection_max: int = 2000
    headroom: float = 0.3
    replicas: int = 1  # quorum queue members (the guide's compose runs one node)
    disk_bytes: float | None = None  # disk the broker's data directory lives on (--disk)
    disk_free_limit_bytes: float | None = None  # default: the guide's relative 2.0 x memory
    link_bps: float = targets.LINK_BPS
    coefficients: broker.BrokerCoefficients = field(default_factory=broker.BrokerCoefficients)
    broker_version: str | None = None  # the RabbitMQ the plan is for (--broker-version)


@dataclass
class Figure:
    """One figure of the plan. ``value`` is a number in ``unit`` (B, bps, msg/s, ms, s, msgs,
    % for a fraction, or "" for a plain number); infinity means unbounded, shown as such and
    written to JSON as null beside its ``display`` text."""

    section: str
    name: str
    value: float
    unit: str
    inputs: str
    verdict: str
    note: str = ""

    @property
    def id(self) -> str:
        """Stable snake_case id for --json readers: section.figure."""
        return f"{_slug(self.section)}.{_slug(self.name)}"

    @property
    def display(self) -> str:
        return display(self.value, self.unit)

    def as_dict(self) -> dict[str, Any]:
        out = {"id": self.id, **asdict(self)}
        out["value"] = None if math.isinf(self.value) or math.isnan(self.value) else self.value
        out["display"] = self.display
        return out


def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "_", text.lower()).strip("_")


def _fmt(v: float) -> str:
    if math.isinf(v):
        return "inf"
    if abs(v) < 0.001:
        return "0"
    return f"{v:,.3g}" if abs(v) < 1000 else f"{v:,.0f}"


def display(value: float, unit: str) -> str:
    if math.isnan(value):
        return "unknown"
    if math.isinf(value):
        return "unbounded" if value > 0 else "-inf"
    if unit == "B":  # IEC, as RabbitMQ and the kernel count; SI beside it, as the guide writes
        return format_iec(value) if abs(value) < 1000 else \
            f"{format_iec(value)} ({format_bytes(value)})"
    if unit == "bps":
        return format_bps(value)
    if unit == "%":
        return f"{value:.0%}"
    return f"{_fmt(value)} {unit}".strip()


INSTANCE_MEMORY_WARN_BYTES = 256 * 2**20  # half the guide's smallest instance (512MB)
INSTANCE_MEMORY_FAIL_BYTES = 2**30  # the guide's largest instance (1GB): nothing left over
PLAN_SIM_MESSAGES = 8_000  # a plan answers at once: a coarser simulation than sweep's


def _instance_memory_verdict(per_instance_bytes: float) -> str:
    """Client memory one instance holds, against the guide's 512MB-1GB per instance."""
    return FAIL if per_instance_bytes > INSTANCE_MEMORY_FAIL_BYTES else \
        WARN if per_instance_bytes > INSTANCE_MEMORY_WARN_BYTES else OK


def service_time_s(p: PlanInputs, ep: Endpoint) -> float:
    """Work per attempt the plan uses: --service-time, the profile's, else the assumption."""
    if ep.queue in p.service_time_s:
        return p.service_time_s[ep.queue]
    return ep.planned_service_time_s()


def work_known(p: PlanInputs, ep: Endpoint) -> bool:
    """Is there a work per message to plan with? The guide's systems fall back to the stated
    assumption; any other system's missing work is asked for, never assumed silently."""
    return ep.queue in p.service_time_s or ep.service_time is not None or \
        ep.assumed_service_time_s is not None or p.profile.guide


def work_source(p: PlanInputs, ep: Endpoint) -> str:
    if ep.queue in p.service_time_s:
        return "--service-time"
    if ep.service_time is not None:
        key = f"endpoints.{ep.queue}.service_time"
        return "estimated by discover" if key in p.profile.estimates else "the profile"
    return "assumed"


def slot_time_s(p: PlanInputs, ep: Endpoint) -> float:
    """Time a message holds a consumer slot: the work of each attempt and the retry delays
    (failure_probability and the retry policy), or a calibrated per-message time as it is."""
    if ep.queue in p.slot_time_s and ep.queue not in p.service_time_s:
        return p.slot_time_s[ep.queue]
    return model.effective_service_time_s(service_time_s(p, ep), ep.failure_probability,
                                          ep.retry.delays_s())


def _arrivals(p: PlanInputs) -> dict[str, float]:
    out = arrivals_per_queue(p.profile, task_mix(p), p.task_rate_per_s)
    for queue in webhook_queues(p.profile):
        out[queue] = out.get(queue, 0.0) + p.webhook_burst_per_s
    return out


def task_mix(p: PlanInputs) -> dict[str, float]:
    return p.mix if p.mix is not None else p.profile.default_mix


def webhook_queues(profile: Profile) -> tuple[str, ...]:
    """The endpoints the webhooks stream (the guide's bursts) reaches: none where the profile
    takes no webhooks."""
    kind = profile.webhook_kind
    return profile.queues_of(kind) if kind else ()


def endpoint_capacity_per_s(ep: Endpoint, instances: int, service_s: float,
                            hold_s: float = 0.0) -> float:
    """Messages per second one endpoint can finish across its active instances. ``hold_s``:
    how long a delivery's prefetch credit stays taken after its work (the ack's delay), so
    each credit turns over once per work + hold where prefetch is the binding limit."""
    conc = model.effective_concurrency(ep.concurrency or 1, ep.prefetch or 1,
                                       ep.partitions if ep.partitioned else None)
    active = model.active_instances(instances, ep.single_active_consumer)
    cap = model.concurrency_bound_per_s(conc, service_s) * active
    if hold_s > 0 and ep.prefetch:
        cap = min(cap, model.concurrency_bound_per_s(ep.prefetch, service_s + hold_s) * active)
    if ep.rate_limit:
        cap = min(cap, ep.rate_limit.per_second * active)
    return cap


def predicted_max_per_s(settings: RabbitSettings, profile: Profile, instances: int,
                        mix: dict[str, float],
                        service_times: dict[str, float] | None = None) -> float:
    """The model's ceiling for the task stream: the first endpoint to saturate decides."""
    prof = profile.resolved(settings)
    inputs = PlanInputs(settings, profile, service_time_s=dict(service_times or {}))
    best = math.inf
    for kind, share in shares(mix).items():
        for ep in prof.consumers_of(prof.task(kind).message):
            best = min(best, endpoint_capacity_per_s(ep, instances,
                                                     slot_time_s(inputs, ep)) / share)
    return best


def build(p: PlanInputs) -> list[Figure]:
    """Every figure of the plan: the guide's arithmetic, each endpoint that receives work, the
    broker."""
    prof = p.profile.resolved(p.settings)
    arrivals = _arrivals(p)
    figs = guide_figures(p, prof, arrivals) if p.profile.guide else []
    for ep in prof.endpoints:
        if arrivals.get(ep.queue, 0.0) <= 0:
            continue
        if not work_known(p, ep):
            figs.append(Figure(ep.queue, "work per message", math.nan, "ms", "unknown", WARN,
                               "not planned: give --service-time "
                               f"{ep.queue}=DURATION, or `plan --from-run RUN` of a run with "
                               "--app-metrics (MassTransit's consume.duration)"))
            continue
        figs += endpoint_figures(p, _EndpointLoad.of(p, ep, arrivals[ep.queue]))
    figs += broker_plan(p).figures
    figs.append(_channels_figure(p, prof))
    return figs


def guide_figures(p: PlanInputs, prof: Profile, arrivals: dict[str, float]) -> list[Figure]:
    """The guide's own arithmetic, reproduced where it holds and contradicted where not."""
    s = p.settings
    mem = model.prefetch_memory_bytes(s.prefetch_count, p.message_bytes, p.instances)
    figs = [Figure("guide", "prefetch memory (default endpoints)", mem, "B",
                   f"{s.prefetch_count} x {format_bytes(p.message_bytes)} x {p.instances} "
                   f"instances", _instance_memory_verdict(mem / p.instances),
                   "matches the guide's 1.25MB" if mem == 1_250_000 else "")]
    partitioned = [ep for ep in prof.endpoints if ep.partitioned]
    figs += [_partition_figure(p, ep, arrivals.get(ep.queue, 0.0)) for ep in partitioned]
    if not partitioned:
        lo = model.partition_throughput_per_s(s.partition_count, 2)
        figs.append(Figure("guide", "partition throughput", lo, "msg/s",
                           f"{s.partition_count} partitions x 2-3 msg/s = {lo:g}-"
                           f"{model.partition_throughput_per_s(s.partition_count, 3):g}", WARN,
                           f"PartitionCount takes no effect in profile {prof.name!r}: no "
                           f"endpoint uses a partitioner"))
    figs.append(Figure("guide", "concurrent messages across instances",
                       s.prefetch_count * p.instances, "msgs",
                       f"prefetch {s.prefetch_count} x {p.instances}", INFO,
                       f"ConcurrentMessageLimit {s.concurrent_message_limit} > prefetch "
                       f"{s.prefetch_count}: each instance can run at most {s.prefetch_count} "
                       f"at once" if s.concurrent_message_limit > s.prefetch_count else ""))
    return figs


def _partition_figure(p: PlanInputs, ep: Endpoint, arriving: float) -> Figure:
    """The guide's "each partition handles ~2-3 messages/second", for the partitions that
    prefetch and concurrency keep busy, against the arrivals and the webhook burst."""
    parts = ep.partitions or p.settings.partition_count
    busy = model.busy_partitions(parts, ep.prefetch or 1, ep.concurrency or 1)
    active = model.active_instances(p.instances, ep.single_active_consumer)
    lo = model.partition_throughput_per_s(busy * active, 2)
    hi = model.partition_throughput_per_s(busy * active, 3)
    note = (f"below the {arriving:.3g} msg/s arriving" if lo < arriving else
            f"the guide's 60-90 msg/s 'meets requirement' for the {p.task_rate_per_s:.3g} "
            f"tasks/s, not for its {p.webhook_burst_per_s:g}/s webhook burst (the webhook "
            f"endpoint has no partitioner)" if hi < p.webhook_burst_per_s else "")
    if busy < parts:
        note += f"; prefetch {ep.prefetch} keeps only {busy} of {parts} partitions busy"
    return Figure("guide", f"partition throughput ({ep.queue})", lo, "msg/s",
                  f"{active} active x min({parts} partitions, prefetch {ep.prefetch}, "
                  f"concurrency {ep.concurrency}) = {busy} busy x 2-3 msg/s = {lo:g}-{hi:g}",
                  FAIL if lo < arriving else WARN if hi < p.webhook_burst_per_s else OK, note)


@dataclass(frozen=True)
class _EndpointLoad:
    """One endpoint at the plan's arrivals: the figures every endpoint figure starts from."""

    ep: Endpoint
    arrival: float  # msg/s
    work: float  # s per attempt
    slot: float  # s a message holds its consumer slot (attempts and retry delays)
    capacity: float  # msg/s across the active instances
    concurrency: int  # effective, per instance
    active: int  # instances that consume
    attempts: float
    retries: int

    @classmethod
    def of(cls, p: PlanInputs, ep: Endpoint, arrival: float) -> _EndpointLoad:
        slot = slot_time_s(p, ep)
        retries = len(ep.retry.delays_s())
        return cls(ep, arrival, service_time_s(p, ep), slot,
                   endpoint_capacity_per_s(ep, p.instances, slot),
                   model.effective_concurrency(ep.concurrency or 1, ep.prefetch or 1,
                                               ep.partitions if ep.partitioned else None),
                   model.active_instances(p.instances, ep.single_active_consumer),
                   model.expected_attempts(ep.failure_probability, retries), retries)

    @property
    def utilisation(self) -> float:
        return self.arrival / self.capacity if self.capacity else math.inf


def endpoint_figures(p: PlanInputs, e: _EndpointLoad) -> list[Figure]:
    """Capacity, utilisation, waiting, failures and client memory of one endpoint; for the
    webhook endpoint, what the burst leaves queued."""
    webhooks = e.ep.queue in webhook_queues(p.profile)
    figs = _capacity_figures(p, e) + _wait_figures(p, e) + _failure_figures(e)
    figs.append(_client_memory_figure(p, e.ep, webhooks))
    if webhooks:
        figs += _burst_figures(p, e)
    return figs


def _capacity_figures(p: PlanInputs, e: _EndpointLoad) -> list[Figure]:
    ep, sec = e.ep, e.ep.queue
    util = e.utilisation
    inputs = (f"{e.active} active x min(concurrency {ep.concurrency}, prefetch {ep.prefetch}"
              + (f", partitions {ep.partitions}" if ep.partitioned else "")
              + f")={e.concurrency} / {e.slot * 1000:g}ms ({work_source(p, ep)})"
              + (f" ({e.work * 1000:g}ms x {e.attempts:.3g} attempts + retry delays)"
                 if e.slot != e.work else "")
              + (f", rate limit {ep.rate_limit.per_second:g}/s per instance"
                 if ep.rate_limit else ""))
    needed = float(model.instances_needed(e.arrival, e.capacity / e.active, p.headroom)) \
        if not ep.single_active_consumer else (1.0 if util < 1 - p.headroom else math.inf)
    return [
        Figure(sec, "capacity", e.capacity, "msg/s", inputs, INFO,
               "single-active-consumer: one instance consumes"
               if ep.single_active_consumer else ""),
        Figure(sec, "utilisation at target", util, "%", f"{e.arrival:.3g} msg/s arriving",
               FAIL if util >= 1 else WARN if util > 1 - p.headroom else OK),
        Figure(sec, "instances needed", needed, "", f"{p.headroom:.0%} headroom",
               FAIL if math.isinf(needed) else OK if needed <= p.instances else FAIL,
               "none suffice: more instances do not help a single-active-consumer queue"
               if ep.single_active_consumer and math.isinf(needed) else ""),
    ]


def _wait_figures(p: PlanInputs, e: _EndpointLoad) -> list[Figure]:
    """Predicted queue wait p50/p99 (capacity/queueing.py: M/M/c where exact, else a
    simulation of the endpoint), assuming Poisson arrivals at the plan's rate."""
    from rabbitscale.capacity import queueing
    from rabbitscale.topology.policy import ServiceTime

    sec = e.ep.queue
    st = e.ep.service_time
    work = ServiceTime(st.distribution if st else "fixed", e.work, st.sigma if st else 0.5)
    load = queueing.endpoint_load(e.ep, p.instances, e.arrival, work, "poisson")
    waits, method = queueing.predict(load, (50.0, 99.0), messages=PLAN_SIM_MESSAGES)
    late = waits[99.0] >= targets.MESSAGE_AGE_MAX_S
    inputs = f"{method}, Poisson arrivals (assumed), {load.servers} slot(s)"
    return [Figure(sec, "queue wait p50", waits[50.0] * 1000, "ms", inputs, INFO),
            Figure(sec, "queue wait p99", waits[99.0] * 1000, "ms", inputs,
                   FAIL if late else OK,
                   "messages wait longer than the guide's 5-minute age alert" if late else "")]


def _failure_figures(e: _EndpointLoad) -> list[Figure]:
    """Messages faulted to _error after their retries, and circuit-breaker trips per day."""
    ep, sec = e.ep, e.ep.queue
    if not ep.failure_probability:
        return []
    faulted = model.faulted_fraction(ep.failure_probability, e.retries)
    per_hour = faulted * e.arrival * 3600
    figs = [Figure(sec, "faulted to _error", faulted * e.arrival, "msg/s",
                   f"failure probability {ep.failure_probability:g} per attempt, "
                   f"{e.retries} retries: {faulted:.3g} of messages",
                   WARN if per_hour >= 1 else OK,
                   f"{per_hour:,.0f} per hour wait in _error to be replayed"
                   if per_hour >= 1 else "")]
    if ep.breaker:
        b = ep.breaker
        per_period = int(e.arrival * e.attempts * b.window_s / e.active)
        trip = model.breaker_trip_probability(ep.failure_probability, per_period,
                                              b.min_requests, b.trip_pct)
        per_day = trip * e.active * 86400 / b.window_s
        figs.append(Figure(sec, "circuit breaker trips per day", per_day, "",
                           f"{per_period} attempts per {b.window_s:g}s period per instance, "
                           f"P(trip) {trip:.3g} per period (active after {b.min_requests}, "
                           f"{b.trip_pct:g}%)", WARN if per_day >= 1 else OK,
                           f"each trip faults that instance's messages to _error for "
                           f"{b.reset_s:g}s" if per_day >= 1 else ""))
    return figs


def _client_memory_figure(p: PlanInputs, ep: Endpoint, webhooks: bool) -> Figure:
    """Prefetched messages held by the clients, at the worst message size (a webhook's
    payload may be far larger than a task's: ConduitLLM allows 1 MB)."""
    worst = p.worst_message_bytes if webhooks else p.message_bytes
    pm = model.prefetch_memory_bytes(ep.prefetch or 1, worst, p.instances)
    return Figure(ep.queue, "client prefetch memory (worst size)", pm, "B",
                  f"{ep.prefetch} x {format_bytes(worst)} x {p.instances}",
                  _instance_memory_verdict(pm / p.instances),
                  f"per instance {format_bytes(pm / p.instances)} of the guide's 512MB-1GB"
                  if pm / p.instances > INSTANCE_MEMORY_WARN_BYTES else "")


def _burst_figures(p: PlanInputs, e: _EndpointLoad) -> list[Figure]:
    """What the webhook burst leaves queued, when the queue's limit is reached, how long it
    takes to drain at the baseline."""
    sec, limit = e.ep.queue, e.ep.max_length or math.inf
    backlog = model.burst_backlog(e.arrival, e.capacity, p.burst_s, limit)
    rejected = model.rejected_in_burst(e.arrival, e.capacity, p.burst_s, limit)
    fill = model.time_to_fill_s(limit, 0, e.arrival, e.capacity)
    drain = model.drain_time_s(backlog, e.capacity, p.webhook_baseline_per_s)
    return [
        Figure(sec, "backlog after burst", backlog, "msgs",
               f"{e.arrival:g}/s for {p.burst_s:g}s against {_fmt(e.capacity)}/s",
               FAIL if backlog > targets.DEPTH_CRITICAL else
               WARN if backlog > targets.DEPTH_WARNING else OK,
               f"{rejected:,.0f} rejected at x-max-length" if rejected else ""),
        Figure(sec, "time to x-max-length", fill, "s", f"x-max-length {e.ep.max_length}",
               OK if math.isinf(fill) else WARN),
        Figure(sec, "drain time after burst", drain, "s",
               f"back to {p.webhook_baseline_per_s:g}/s",
               FAIL if math.isinf(drain) else
               WARN if drain > targets.MESSAGE_AGE_MAX_S else OK,
               "never drains: the baseline alone fills the queue" if math.isinf(drain) else
               "the last burst messages wait longer than the guide's 5-minute age alert"
               if drain > targets.MESSAGE_AGE_MAX_S else ""),
    ]


def _channels_figure(p: PlanInputs, prof: Profile) -> Figure:
    chans = model.channels_per_connection(len(prof.endpoints))
    negotiated = min(p.settings.channel_max, p.server_channel_max)
    return Figure("broker", "channels per consumer connection", chans, "",
                  f"{len(prof.endpoints)} endpoints + 1", OK if chans <= negotiated else FAIL,
                  f"negotiated channel_max {negotiated}")


@dataclass
class BrokerPlan:
    """The broker figures of a plan, as numbers (``plan --json`` -> ``broker``) and as rows."""

    memory_bytes: float
    disk_bytes: float  # at the backlog's peak (the WAL not yet rolled over)
    stored_bytes: float  # settled once written: what `run backlog` compares its node with
    network_in_bps: float
    network_out_bps: float
    replication_bps: float
    publish_ceiling_per_s: float
    inputs: dict[str, Any]
    figures: list[Figure]

    def as_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["verdicts"] = {f.name: f.verdict for f in self.figures}
        del out["figures"]
        return out


def queue_shares(p: PlanInputs) -> dict[str, float]:
    """Messages each task queue holds when ``queued_messages`` are queued in the mix."""
    return arrivals_per_queue(p.profile, task_mix(p), p.queued_messages)


@dataclass(frozen=True)
class _BrokerLoad:
    """What the broker holds and carries in the plan: the figures every broker figure uses."""

    watermark: float  # bytes
    connections: int
    channels: int
    rate: float  # msg/s published at the peak: tasks + the webhook burst
    label: str  # where the coefficients come from
    streams: str  # what the rate is made of

    @classmethod
    def of(cls, p: PlanInputs) -> _BrokerLoad:
        prof = p.profile.resolved(p.settings)
        _, pub_conns = prof.publisher_connections(p.settings)
        endpoints = len(prof.endpoints)
        return cls(model.watermark_bytes(p.node_memory_bytes, p.watermark_relative),
                   model.connections_total(p.instances, pub_conns),
                   p.instances * model.channels_per_connection(endpoints)
                   + p.instances * pub_conns,
                   p.task_rate_per_s + (p.webhook_burst_per_s if p.profile.webhook_kind
                                        else 0.0),
                   f"coefficients {p.coefficients.source}",
                   "tasks + webhook burst" if p.profile.webhook_kind else "tasks")


def broker_plan(p: PlanInputs) -> BrokerPlan:
    """The node, not the consumers: memory, disk, network and publish ceiling for the backlog
    and the rates, each queue's share of the backlog against its limit, connections."""
    b = _BrokerLoad.of(p)
    mem = broker.node_memory_bytes(p.queued_messages, p.message_bytes, c=p.coefficients,
                                   connections=b.connections, channels=b.channels)
    disk = broker.disk_bytes(p.queued_messages, p.message_bytes, 1, c=p.coefficients)
    net = broker.network_bps(b.rate, p.message_bytes, p.replicas)
    net_in = net["in"] + net["replication"] / max(1, p.replicas - 1) * (p.replicas > 1)
    net_out = net["out"] + net["replication"]
    ceiling = broker.publish_ceiling_per_s(p.message_bytes, p.replicas, p.coefficients)
    figs = (_node_memory_figures(p, b, mem) + [_disk_figure(p, disk)]
            + _network_figures(p, b, net_in, net_out) + [_ceiling_figure(p, b, ceiling)]
            + _backlog_share_figures(p) + [_connections_figure(p, b)])
    inputs = {"queued_messages": p.queued_messages, "message_bytes": p.message_bytes,
              "replicas": p.replicas, "node_memory_bytes": p.node_memory_bytes,
              "watermark_bytes": b.watermark, "disk_bytes": p.disk_bytes,
              "disk_free_limit_bytes": _disk_free_limit(p), "link_bps": p.link_bps,
              "rate_per_s": b.rate, "connections": b.connections, "channels": b.channels,
              "wal_max_bytes": broker.WAL_MAX_BYTES, "coefficients": p.coefficients.as_dict(),
              "coefficients_hold_for": p.coefficients.for_version(p.broker_version)}
    stored = broker.stored_bytes(p.queued_messages, p.message_bytes, 1, c=p.coefficients)
    return BrokerPlan(mem, disk, stored, net_in, net_out, net["replication"], ceiling, inputs,
                      figs)


def _node_memory_figures(p: PlanInputs, b: _BrokerLoad, mem: float) -> list[Figure]:
    """Peak node memory for the backlog (bounded by the quorum WAL) against the watermark and
    the container; the WAL's advised memory; the guide's headroom."""
    c, n, size = p.coefficients, p.queued_messages, p.message_bytes
    held = broker.bodies_in_memory_bytes(n, size, c=c)
    alert = model.alert_memory_bytes(b.watermark)
    wal_need = 3 * broker.WAL_MAX_BYTES
    head = model.headroom_fraction(p.node_memory_bytes, b.watermark)
    return [
        Figure("broker", "node memory, backlog at its peak", mem, "B",
               f"{n:,.0f} x {format_bytes(size)}: bodies held "
               f"{format_bytes(held)} (<= {1 + c.rollover_overlap:g} WAL of "
               f"{format_bytes(broker.WAL_MAX_BYTES)}) x {c.alloc_overhead:g} + "
               f"{c.index_bytes_per_message:g} B/msg + baseline "
               f"{format_bytes(c.baseline_bytes)} + {b.connections} connections, "
               f"{b.channels} channels",
               FAIL if mem >= b.watermark else WARN if mem >= alert else OK,
               f"alert at 75% of watermark {format_bytes(b.watermark)}; {b.label}"),
        Figure("broker", "node memory vs container", mem / p.node_memory_bytes, "%",
               f"of {format_bytes(p.node_memory_bytes)}",
               FAIL if mem >= p.node_memory_bytes else OK),
        Figure("broker", "memory for the quorum WAL", b.watermark, "B",
               f"watermark vs 3x raft.wal_max_size_bytes ({format_bytes(wal_need)})",
               OK if b.watermark >= wal_need else WARN,
               "" if b.watermark >= wal_need else "RabbitMQ advises 3-4x the WAL size for a "
               "node running quorum queues: lower raft.wal_max_size_bytes or give it more "
               "memory"),
        Figure("broker", "headroom above watermark", head, "%",
               f"watermark {p.watermark_relative:g} of {format_bytes(p.node_memory_bytes)}",
               OK if head >= targets.MEMORY_HEADROOM - 1e-9 else WARN,
               f"the guide asks for {targets.MEMORY_HEADROOM:.0%}"),
    ]


def _disk_free_limit(p: PlanInputs) -> float:
    """disk_free_limit: as given, else the guide's relative 2.0 x the node's memory."""
    return p.disk_free_limit_bytes if p.disk_free_limit_bytes is not None else \
        targets.DISK_FREE_LIMIT_RELATIVE * p.node_memory_bytes


def _disk_figure(p: PlanInputs, disk: float) -> Figure:
    c, n, size = p.coefficients, p.queued_messages, p.message_bytes
    free_limit = _disk_free_limit(p)
    need = disk + free_limit
    verdict = INFO if p.disk_bytes is None else FAIL if need > p.disk_bytes else \
        WARN if need > 0.8 * p.disk_bytes else OK
    return Figure("broker", "disk per node, backlog at its peak", disk, "B",
                  f"{n:,.0f} x ({format_bytes(size)} + {c.segment_overhead_bytes:g} B)"
                  + (f" + a WAL of {format_bytes(broker.WAL_MAX_BYTES)}"
                     if n * size > broker.WAL_MAX_BYTES else " (all still in the WAL)")
                  + (f", {p.replicas} replicas: one per node" if p.replicas > 1 else ""),
                  verdict,
                  f"+ disk_free_limit {format_bytes(free_limit)} = {format_bytes(need)}"
                  + (f" of --disk {format_bytes(p.disk_bytes)}" if p.disk_bytes is not None
                     else "; give --disk SIZE to judge it"))


def _network_figures(p: PlanInputs, b: _BrokerLoad, net_in: float, net_out: float
                     ) -> list[Figure]:
    """In and out of the busiest node (with replication to the followers) against the link."""
    figs = []
    for name, bps, what in (
            ("network in, busiest node", net_in, "clients publishing"
             + (" + the leader's replication stream" if p.replicas > 1 else "")),
            ("network out, busiest node", net_out, "deliveries to consumers"
             + (f" + replication to {p.replicas - 1} followers" if p.replicas > 1 else ""))):
        share = bps / p.link_bps if p.link_bps else math.inf
        figs.append(Figure("broker", name, bps, "bps",
                           f"{b.rate:.4g} msg/s ({b.streams}) x "
                           f"({format_bytes(p.message_bytes)} + {broker.AMQP_FRAMING_BYTES} B "
                           f"framing): {what}",
                           FAIL if share >= targets.LINK_FAIL_FRACTION else
                           WARN if share >= targets.LINK_WARNING_FRACTION else OK,
                           f"{share:.0%} of a {format_bps(p.link_bps)} link"))
    return figs


def _ceiling_figure(p: PlanInputs, b: _BrokerLoad, ceiling: float) -> Figure:
    c = p.coefficients
    return Figure("broker", "publish ceiling (confirmed)", ceiling, "msg/s",
                  f"{format_bytes(c.publish_ceiling_bytes_per_s)}/s of bodies"
                  + (f" x {c.replica_ceiling_factor:g} with replicas" if p.replicas > 1 else ""),
                  FAIL if b.rate >= ceiling else
                  WARN if b.rate > (1 - p.headroom) * ceiling else OK,
                  f"peak arrivals {b.rate:.4g} msg/s; {b.label}")


def _backlog_share_figures(p: PlanInputs) -> list[Figure]:
    """A queue whose share of the backlog exceeds its x-max-length: dropped or refused."""
    prof = p.profile.resolved(p.settings)
    figs = []
    for queue, held_n in queue_shares(p).items():
        ep = prof.endpoint(queue)
        if ep.max_length is not None and held_n > ep.max_length:
            overflow = ep.declared_arguments().get("x-overflow", "drop-head")
            figs.append(Figure("broker", f"{queue} share of the backlog", held_n, "msgs",
                               f"{held_n / p.queued_messages:.0%} of "
                               f"{p.queued_messages:,.0f} queued",
                               FAIL, f"x-max-length {ep.max_length:,} ({overflow}): "
                               + ("the oldest messages are dropped, confirmed and lost"
                                  if overflow == "drop-head" else "publishes are refused")))
    return figs


def _connections_figure(p: PlanInputs, b: _BrokerLoad) -> Figure:
    _, pub_conns = p.profile.resolved(p.settings).publisher_connections(p.settings)
    return Figure("broker", "connections", b.connections, "",
                  f"{p.instances} x ({pub_conns} publisher + 1 consumer)",
                  OK if b.connections < p.server_connection_max else FAIL,
                  f"connection_max {p.server_connection_max}")


def profile_findings(profile: Profile, settings: RabbitSettings) -> list[str]:
    """Where a setting has no effect or contradicts another one in this profile."""
    out: list[str] = []
    resolved = profile.resolved(settings)
    if not any(ep.partitioned for ep in resolved.endpoints):
        out.append(f"PartitionCount={settings.partition_count} has no effect: no endpoint "
                   f"of profile {profile.name!r} uses a partitioner")
    for ep in resolved.endpoints:
        if ep.single_active_consumer and (ep.concurrency or 1) > 1 and not ep.partitioned:
            out.append(f"{ep.queue}: single-active-consumer with concurrency "
                       f"{ep.concurrency} does not keep order: up to {ep.concurrency} "
                       f"messages run at once in the active consumer")
        if ep.single_active_consumer:
            out.append(f"{ep.queue}: single-active-consumer: only one instance consumes; "
                       f"adding instances adds standby, not throughput")
        if ep.partitioned and ep.partitions and ep.prefetch and ep.partitions > ep.prefetch:
            out.append(f"{ep.queue}: {ep.partitions} partitions but prefetch {ep.prefetch}: "
                       f"at most {ep.prefetch} partitions can be busy at once; raising "
                       f"PartitionCount beyond prefetch adds no parallelism")
        if ep.partitioned and ep.partitions and ep.concurrency and \
                ep.partitions < ep.concurrency:
            out.append(f"{ep.queue}: {ep.partitions} partitions cap concurrency "
                       f"{ep.concurrency} at {ep.partitions} messages at once")
        if ep.prefetch is not None and ep.concurrency is not None and \
                ep.prefetch < ep.concurrency:
            out.append(f"{ep.queue}: prefetch {ep.prefetch} < concurrency "
                       f"{ep.concurrency}: at most {ep.prefetch} messages can run at once")
    return out


PLAN_SCHEMA_VERSION = 3  # plan --json: bump when an id, a key or a unit changes meaning
SEVERITY = (FAIL, WARN, OK, INFO)
LEGEND = ("FAIL: the plan does not hold; WARN: it holds with less margin than the guide asks; "
          "OK: it holds; INFO: a figure shown for context, not judged")


def verdict(figs: list[Figure]) -> str:
    verdicts = {f.verdict for f in figs}
    return FAIL if FAIL in verdicts else WARN if WARN in verdicts else OK


def counts(figs: list[Figure]) -> dict[str, int]:
    return {v: sum(f.verdict == v for f in figs) for v in SEVERITY}


def counts_line(figs: list[Figure]) -> str:
    c = counts(figs)
    return ", ".join(f"{c[v]} {v}" for v in SEVERITY)


def as_json(figs: list[Figure], **extra: Any) -> dict[str, Any]:
    """``plan --json``: versioned, each figure with its stable id, value and unit."""
    return {"schema_version": PLAN_SCHEMA_VERSION, **extra, "verdict": verdict(figs),
            "counts": counts(figs), "figures": [f.as_dict() for f in figs]}


def render_table(figs: list[Figure], findings: list[str],
                 estimates: Mapping[str, str] | None = None, title: str = "") -> str:
    """The plan as text: the counts, the FAILs and WARNs first, then every figure by section
    under column headers; ``estimates`` are the profile's inputs that were estimated (by
    discover), each with where it came from, so no estimate reads as a fact."""
    w = max(len(f.name) for f in figs) + 2
    header = f"  {'figure':<{w}} {'value':>24}  {'verdict':<7}  inputs -- note"

    def row(f: Figure, section: bool = False) -> str:
        name = f"{f.section}: {f.name}" if section else f.name
        return (f"  {name:<{w}} {f.display:>24}  {f.verdict:<7}  {f.inputs}"
                + (f"  -- {f.note}" if f.note else ""))

    lines = [f"plan: {counts_line(figs)} -> verdict {verdict(figs)}"] + ([title] if title else [])
    attention = [f for f in figs if f.verdict in (FAIL, WARN)]
    attention.sort(key=lambda f: SEVERITY.index(f.verdict))
    if attention:
        w = max(w, max(len(f.section) + len(f.name) + 4 for f in attention))
        header = f"  {'figure':<{w}} {'value':>24}  {'verdict':<7}  inputs -- note"
        lines += ["", "[needs attention]", header] + [row(f, True) for f in attention]
    section = None
    lines += ["", "[all figures]", header]
    for f in figs:
        if f.section != section:
            section = f.section
            lines.append(f" [{section}]")
        lines.append(row(f))
    if findings:
        lines.append("\n[profile findings]")
        lines += [f"  - {x}" for x in findings]
    if estimates:
        lines.append("\n[estimated inputs of the profile]")
        lines += [f"  - {key}: {source}" for key, source in sorted(estimates.items())]
    lines += ["", LEGEND, f"verdict: {verdict(figs)}"]
    return "\n".join(lines)
