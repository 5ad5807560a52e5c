"""`rabbitscale plan`: the capacity model applied to a profile, settings and targets.

Every figure carries its inputs and a verdict (OK / WARN / FAIL) against the targets, and the
guide's own arithmetic is reproduced where it is right and contradicted where it does not
hold. Imports stay light (no aio-pika, pandas or matplotlib) so the command answers fast.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any

from rabbitscale.capacity import model
from rabbitscale.core import targets
from rabbitscale.core.units import format_bytes
from rabbitscale.core.verdicts import FAIL, INFO, OK, WARN
from rabbitscale.harness.config import RabbitSettings
from rabbitscale.harness.profiles import Endpoint, Profile
from rabbitscale.harness.tasks import MESSAGE_TYPES, queue_for, shares

# Where the guide gives no service time, these are the plan's stated assumptions: the guide's
# "each partition handles ~2-3 messages/second" gives 0.4 s for generation work.
DEFAULT_SERVICE_TIME_S = {
    "webhook-delivery": 0.2, "video-generation-events": 0.4, "image-generation-events": 0.4,
    "spend-update-events": 0.02, "media-retention-checks": 0.5, "media-cleanup-batches": 1.0,
    "r2-batch-operations": 1.0, "media-cleanup-schedule": 1.0,
}


@dataclass(frozen=True)
class PlanInputs:
    settings: RabbitSettings
    profile: Profile
    instances: int = 5
    task_rate_per_s: float = 1000 / 60
    mix: dict[str, float] = field(default_factory=lambda: {"video": 0.3, "image": 0.3,
                                                           "spend": 0.4})
    webhook_burst_per_s: float = 100.0
    webhook_baseline_per_s: float = 10.0
    burst_s: float = 300.0
    message_bytes: float = 10_000
    worst_message_bytes: float = 1_000_000  # PayloadJson may be up to 1 MB
    service_time_s: dict[str, float] = field(default_factory=dict)
    node_memory_bytes: float = 4 * 2**30  # the compose memory limit
    watermark_relative: float = 0.6
    queued_messages: float = 100_000  # the guide's "100,000 total queued messages"
    server_channel_max: int = 2000
    server_connection_max: int = 2000
    headroom: float = 0.3
    broker_bytes_per_message: float | None = None  # from --calibrate


@dataclass
class Figure:
    section: str
    name: str
    value: float | str
    unit: str
    inputs: str
    verdict: str
    note: str = ""

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def _fmt(v: float | str) -> str:
    if isinstance(v, str):
        return v
    if math.isinf(v):
        return "inf"
    if abs(v) < 0.001:
        return "0"
    return f"{v:,.3g}" if abs(v) < 1000 else f"{v:,.0f}"


def service_time_s(p: PlanInputs, ep: Endpoint) -> float:
    """The service time the plan uses: --service-time, the profile's, else the default."""
    if ep.queue in p.service_time_s:
        return p.service_time_s[ep.queue]
    if ep.service_time is not None:
        return ep.service_time.mean_s
    return DEFAULT_SERVICE_TIME_S.get(ep.queue, 0.5)


def _arrivals(p: PlanInputs) -> dict[str, float]:
    out = {queue_for(p.profile, kind): p.task_rate_per_s * share
           for kind, share in shares(p.mix).items()}
    out[queue_for(p.profile, "webhook")] = p.webhook_burst_per_s
    return out


def endpoint_capacity_per_s(ep: Endpoint, instances: int, service_s: float) -> float:
    """Messages per second one endpoint can finish across its active instances."""
    conc = model.effective_concurrency(ep.concurrency or 1, ep.prefetch or 1,
                                       ep.partitions if ep.partitioned else None)
    active = model.active_instances(instances, ep.single_active_consumer)
    cap = model.concurrency_bound_per_s(conc, service_s) * active
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
        ep = prof.for_type(MESSAGE_TYPES[kind])
        best = min(best, endpoint_capacity_per_s(ep, instances, service_time_s(inputs, ep)) / share)
    return best


def build(p: PlanInputs) -> list[Figure]:
    s = p.settings
    prof = p.profile.resolved(s)
    figs: list[Figure] = []
    add = figs.append

    # 1. the guide's arithmetic, reproduced
    mem = model.prefetch_memory_bytes(s.prefetch_count, p.message_bytes, p.instances)
    add(Figure("guide", "prefetch memory (default endpoints)", format_bytes(mem), "",
               f"{s.prefetch_count} x {format_bytes(p.message_bytes)} x {p.instances} instances",
               OK, "matches the guide's 1.25MB" if mem == 1_250_000 else ""))
    part_lo = model.partition_throughput_per_s(s.partition_count, 2)
    part_hi = model.partition_throughput_per_s(s.partition_count, 3)
    partitioned = [ep for ep in prof.endpoints if ep.partitioned]
    add(Figure("guide", "partition throughput", f"{part_lo:g}-{part_hi:g}", "msg/s",
               f"{s.partition_count} partitions x 2-3 msg/s",
               OK if partitioned else WARN,
               "" if partitioned else f"PartitionCount takes no effect in profile "
               f"{prof.name!r}: no endpoint uses a partitioner"))
    add(Figure("guide", "concurrent messages across instances",
               s.prefetch_count * p.instances, "msgs",
               f"prefetch {s.prefetch_count} x {p.instances}", INFO,
               f"ConcurrentMessageLimit {s.concurrent_message_limit} > prefetch "
               f"{s.prefetch_count}: each instance can run at most {s.prefetch_count} at once"
               if s.concurrent_message_limit > s.prefetch_count else ""))

    # 2. per endpoint: capacity, utilisation, waiting, memory
    arrivals = _arrivals(p)
    for ep in prof.endpoints:
        arrival = arrivals.get(ep.queue, 0.0)
        if arrival <= 0:
            continue
        svc = service_time_s(p, ep)
        cap = endpoint_capacity_per_s(ep, p.instances, svc)
        util = arrival / cap if cap else math.inf
        conc = model.effective_concurrency(ep.concurrency or 1, ep.prefetch or 1,
                                           ep.partitions if ep.partitioned else None)
        active = model.active_instances(p.instances, ep.single_active_consumer)
        sec = ep.queue
        add(Figure(sec, "capacity", cap, "msg/s",
                   f"{active} active x min(concurrency {ep.concurrency}, prefetch {ep.prefetch}"
                   + (f", partitions {ep.partitions}" if ep.partitioned else "")
                   + f")={conc} / {svc * 1000:g}ms"
                   + (f", rate limit {ep.rate_limit.per_second:g}/s per instance"
                      if ep.rate_limit else ""),
                   INFO, "single-active-consumer: one instance consumes"
                   if ep.single_active_consumer else ""))
        add(Figure(sec, "utilisation at target", util, "", f"{arrival:.3g} msg/s arriving",
                   FAIL if util >= 1 else WARN if util > 1 - p.headroom else OK))
        per_instance = cap / active
        needed = model.instances_needed(arrival, per_instance, p.headroom) \
            if not ep.single_active_consumer else (1 if util < 1 - p.headroom else math.inf)
        add(Figure(sec, "instances needed", needed if not math.isinf(needed) else "none suffice",
                   "", f"{p.headroom:.0%} headroom",
                   FAIL if math.isinf(needed) else OK if needed <= p.instances else FAIL,
                   "more instances do not help a single-active-consumer queue"
                   if ep.single_active_consumer and math.isinf(needed) else ""))
        servers = conc * active
        if ep.rate_limit is None:
            wait = model.mmc_mean_wait_s(arrival, svc, servers)
            p99 = model.mmc_wait_percentile_s(arrival, svc, servers, 99)
            pwait = model.erlang_c(servers, arrival * svc) if arrival * svc < servers else 1.0
            add(Figure(sec, "M/M/c wait mean / p99", f"{_fmt(wait * 1000)} / {_fmt(p99 * 1000)}",
                       "ms", f"c={servers}, P(wait)={pwait:.3g}",
                       OK if p99 < 300 else FAIL))
        worst = p.worst_message_bytes if ep.queue == "webhook-delivery" else p.message_bytes
        pm = model.prefetch_memory_bytes(ep.prefetch or 1, worst, p.instances)
        add(Figure(sec, "client prefetch memory (worst size)", format_bytes(pm), "",
                   f"{ep.prefetch} x {format_bytes(worst)} x {p.instances}",
                   WARN if pm / p.instances > 256 * 2**20 else OK,
                   "per instance " + format_bytes(pm / p.instances)
                   + " of the guide's 512MB-1GB" if pm / p.instances > 256 * 2**20 else ""))
        if ep.queue == "webhook-delivery":
            baseline = p.webhook_baseline_per_s
            backlog = model.burst_backlog(arrival, cap, p.burst_s, ep.max_length or math.inf)
            rejected = model.rejected_in_burst(arrival, cap, p.burst_s,
                                               ep.max_length or math.inf)
            add(Figure(sec, "backlog after burst", backlog, "msgs",
                       f"{arrival:g}/s for {p.burst_s:g}s against {_fmt(cap)}/s",
                       FAIL if backlog > targets.DEPTH_CRITICAL else
                       WARN if backlog > targets.DEPTH_WARNING else OK,
                       f"{rejected:,.0f} rejected at x-max-length" if rejected else ""))
            fill = model.time_to_fill_s(ep.max_length or math.inf, 0, arrival, cap)
            add(Figure(sec, "time to x-max-length", fill, "s",
                       f"x-max-length {ep.max_length}", OK if math.isinf(fill) else WARN))
            add(Figure(sec, "drain time after burst", model.drain_time_s(backlog, cap, baseline),
                       "s", f"back to {baseline:g}/s", OK))

    # 3. broker memory and limits
    wm = model.watermark_bytes(p.node_memory_bytes, p.watermark_relative)
    alert = model.alert_memory_bytes(wm)
    queued = model.broker_queue_memory_bytes(p.queued_messages, p.message_bytes, "quorum",
                                             p.broker_bytes_per_message)
    add(Figure("broker", "memory for queued messages", format_bytes(queued), "",
               f"{p.queued_messages:,.0f} msgs x "
               f"{p.broker_bytes_per_message or model.ASSUMED_BROKER_BYTES_PER_MESSAGE['quorum']:g}"
               f" B ({'calibrated' if p.broker_bytes_per_message else 'assumed'})",
               OK if queued < alert else FAIL, f"alert at 75% of watermark {format_bytes(wm)}"))
    head = model.headroom_fraction(p.node_memory_bytes, wm)
    add(Figure("broker", "headroom above watermark", f"{head:.0%}", "",
               f"watermark {p.watermark_relative:g} of {format_bytes(p.node_memory_bytes)}",
               OK if head >= 0.4 - 1e-9 else WARN, "the guide asks for 40%"))
    conns = model.connections_total(p.instances, s.max_connections)
    add(Figure("broker", "connections", conns, "", f"{p.instances} x ({s.max_connections} "
               f"publisher + 1 consumer)", OK if conns < p.server_connection_max else FAIL,
               f"connection_max {p.server_connection_max}"))
    chans = model.channels_per_connection(len(prof.endpoints))
    negotiated = min(s.channel_max, p.server_channel_max)
    add(Figure("broker", "channels per consumer connection", chans, "",
               f"{len(prof.endpoints)} endpoints + 1", OK if chans <= negotiated else FAIL,
               f"negotiated channel_max {negotiated}"))
    return figs


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


def verdict(figs: list[Figure]) -> str:
    verdicts = {f.verdict for f in figs}
    return FAIL if FAIL in verdicts else WARN if WARN in verdicts else OK


def render_table(figs: list[Figure], findings: list[str]) -> str:
    lines = []
    section = None
    w = max(len(f.name) for f in figs) + 2
    for f in figs:
        if f.section != section:
            section = f.section
            lines.append(f"\n[{section}]")
        value = f"{_fmt(f.value)} {f.unit}".strip()
        lines.append(f"  {f.name:<{w}} {value:>16}  {f.verdict:<4}  {f.inputs}"
                     + (f"  -- {f.note}" if f.note else ""))
    if findings:
        lines.append("\n[profile findings]")
        lines += [f"  - {x}" for x in findings]
    lines.append(f"\nverdict: {verdict(figs)}")
    return "\n".join(lines).lstrip("\n")
