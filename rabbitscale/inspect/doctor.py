"""`rabbitscale doctor`: a live broker against the plan, read-only.

``snapshot`` reads everything once through a read-only management client (and, where given,
rabbitmq_prometheus): no declare, purge, publish or consume. The checks are pure functions of
that snapshot, the profile and the guide's thresholds; each finding carries the observed value,
the expected one, where the expectation comes from, and OK / WARN / FAIL.

Effective queue arguments follow RabbitMQ's rules for quorum queues (rabbit_quorum_queue): for
``max-length``, ``max-length-bytes`` and ``delivery-limit`` the lower of the queue argument and
the policies wins, for ``overflow`` the policy wins, dead-lettering comes from the argument.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

from rabbitscale.broker.management import Management
from rabbitscale.capacity import broker, model
from rabbitscale.core import targets
from rabbitscale.core.units import format_bytes
from rabbitscale.core.verdicts import FAIL, INFO, OK, WARN, worst
from rabbitscale.inspect import upgrade
from rabbitscale.results.doctor import DoctorResult, FindingResult
from rabbitscale.topology import naming
from rabbitscale.topology.profiles import QUORUM, Endpoint, Profile
from rabbitscale.topology.settings import RabbitSettings

GROUPS = ("topology", "consumers", "depth", "forecast", "node", "plan", "upgrade")
FORECAST_FAIL_S = 3600.0  # a limit reached within the hour at today's growth: act now
FORECAST_WARN_S = 86400.0  # within a day
NOT_MEASURED = "not measured"
NOT_SET = "not set"
MIN_POLICY = ("max-length", "max-length-bytes", "delivery-limit")  # lower of arg and policy
POLICY_WINS = ("overflow",)
ARG_WINS = ("dead-letter-exchange", "dead-letter-routing-key", "single-active-consumer")
PREFETCH_FAIL_FACTOR = 4  # a consumer prefetching 4x the plan's buffers 4x the memory
CHURN_WARN_PER_S = 5.0  # connections opened per second: a client reconnecting in a loop
FD_WARN, FD_FAIL = 0.8, 0.95
ASSUMED_MESSAGE_BYTES = 10_000  # the guide's "10KB average" when the broker shows no bytes


@dataclass(frozen=True)
class Finding:
    group: str
    subject: str  # a queue, exchange, node or "broker"
    check: str
    observed: Any
    expected: Any
    source: str  # where the expectation comes from
    verdict: str
    detail: str = ""

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class Snapshot:
    """Everything doctor reads, once (GET requests only)."""

    vhost: str
    overview: dict[str, Any]
    nodes: list[dict[str, Any]]
    queues: dict[str, dict[str, Any]]
    exchanges: dict[str, dict[str, Any]]
    bindings: list[dict[str, Any]]
    consumers: list[dict[str, Any]]
    policies: list[dict[str, Any]]
    operator_policies: list[dict[str, Any]] = field(default_factory=list)
    prometheus_nodes: list[Any] = field(default_factory=list)  # NodeSample, when given
    amqp: tuple[str, str] | None = None  # (host:port, "" if it answered else why not)
    # read for --upgrade-to: the vhost's channels, the feature flags (None: not readable by
    # this user) and the deprecated features in use (None: the node does not say, before 3.13)
    channels: list[dict[str, Any]] = field(default_factory=list)
    feature_flags: list[dict[str, Any]] = field(default_factory=list)
    feature_flags_read: bool = True
    deprecated_used: list[dict[str, Any]] | None = None


async def read_broker(settings: RabbitSettings, prometheus_urls: list[str] | None = None,
                      *, upgrade: bool = False) -> Snapshot:
    """One read of the broker in ``settings.vhost``: the management API through a read-only
    client, and rabbitmq_prometheus where URLs are given; with ``upgrade`` what an upgrade
    readiness check needs besides."""
    async with Management(settings, read_only=True) as mgmt:
        prometheus = None
        if prometheus_urls:
            from rabbitscale.broker.prometheus import PrometheusSource

            prometheus = PrometheusSource(prometheus_urls)
        try:
            s = await snapshot(mgmt, settings.vhost, prometheus)
            s.amqp = (f"{settings.host}:{settings.port}",
                      await _answers(settings.host, settings.port))
            if upgrade:
                await _read_upgrade(mgmt, s)
            return s
        finally:
            if prometheus is not None:
                await prometheus.close()


async def _answers(host: str, port: int, timeout_s: float = 5.0) -> str:
    """"" when something accepts a TCP connection at host:port (opened and closed: nothing
    is said on it), else why not."""
    import asyncio

    try:
        _, writer = await asyncio.wait_for(asyncio.open_connection(host, port), timeout_s)
    except (OSError, TimeoutError) as exc:
        return f"{type(exc).__name__}: {exc.strerror or exc}" if isinstance(exc, OSError) \
            else f"no answer within {timeout_s:g}s"
    writer.close()
    return ""


async def _read_upgrade(mgmt: Management, s: Snapshot) -> None:
    from rabbitscale.broker.management import ManagementError

    channels = await mgmt.request(
        "GET", "/channels?columns=name,vhost,global_prefetch_count,prefetch_count") or []
    s.channels = [c for c in channels if c.get("vhost") == s.vhost]
    try:  # the administrator's to read
        s.feature_flags = await mgmt.request("GET", "/feature-flags") or []
    except ManagementError:
        s.feature_flags_read = False
    try:  # 3.13 and later
        s.deprecated_used = await mgmt.request("GET", "/deprecated-features/used") or []
    except ManagementError:
        s.deprecated_used = None


async def snapshot(mgmt: Management, vhost: str, prometheus: Any = None) -> Snapshot:
    """Read the broker once. ``mgmt`` should be read-only; this function only GETs."""
    from rabbitscale.broker.management import ManagementError

    q = mgmt.q(vhost)
    await mgmt.require_vhost(vhost)
    operator: list[dict[str, Any]] = []
    try:  # needs the policymaker or administrator tag; absent is not an error
        operator = await mgmt.request("GET", f"/operator-policies/{q}") or []
    except ManagementError:
        operator = []
    return Snapshot(
        vhost=vhost, overview=await mgmt.overview(), nodes=await mgmt.nodes(),
        queues={x["name"]: x for x in await mgmt.queues(vhost)},
        exchanges={x["name"]: x for x in await mgmt.exchanges(vhost)},
        bindings=await mgmt.bindings(vhost),
        consumers=await mgmt.request("GET", f"/consumers/{q}") or [],
        policies=await mgmt.request("GET", f"/policies/{q}") or [],
        operator_policies=operator,
        prometheus_nodes=await prometheus.nodes() if prometheus is not None else [])


# --- effective arguments ---------------------------------------------------------------------


def effective_arguments(queue: dict[str, Any]) -> tuple[dict[str, Any], dict[str, str]]:
    """(effective x-arguments, which policy set each one) of a management API queue."""
    args = dict(queue.get("arguments") or {})
    effective = dict(args)
    origin: dict[str, str] = {}
    for kind, definition in (("policy", queue.get("effective_policy_definition")),
                             ("operator policy", queue.get("operator_policy_definition"))):
        name = queue.get("policy" if kind == "policy" else "operator_policy") or "?"
        for key, value in (definition or {}).items():
            arg = f"x-{key}"
            if key in MIN_POLICY and isinstance(value, int | float):
                current = effective.get(arg)
                if current is None or value < current:
                    effective[arg] = value
                    origin[arg] = f"{kind} {name!r}"
            elif key in POLICY_WINS or key not in ARG_WINS or arg not in args:
                effective[arg] = value
                origin[arg] = f"{kind} {name!r}"
    return effective, origin


# --- topology ----------------------------------------------------------------------------------


def topology(s: Snapshot, profile: Profile) -> list[Finding]:
    out: list[Finding] = []
    src = f"profile {profile.name}"
    bound = {(b["source"], b["destination"], b["destination_type"]) for b in s.bindings}
    for ep in profile.endpoints:
        q = s.queues.get(ep.queue)
        if q is None:
            out.append(Finding("topology", ep.queue, "queue exists", "missing", "declared", src,
                               FAIL, f"nothing consumes {ep.message_type}; publishes are "
                                     f"unroutable"))
            continue
        qtype = q.get("type", "classic")
        out.append(Finding("topology", ep.queue, "queue type", qtype, ep.queue_type, src,
                      OK if qtype == ep.queue_type else FAIL,
                      "" if qtype == ep.queue_type else
                      "a classic queue keeps one copy and has no delivery limit; declared by "
                      "an old release?" if ep.queue_type == QUORUM else
                      "its guarantees differ from the profile's"))
        out += _arguments(ep, q, src)
        out += _routing(ep, profile, bound, s.exchanges)
    known = {ep.queue for ep in profile.endpoints} | {
        n for ep in profile.endpoints for n in (ep.error_queue, ep.skipped_queue)}
    for name, q in sorted(s.queues.items()):
        if name in known or name.startswith("amq.") or q.get("exclusive"):
            continue
        has_binding = any(b["destination"] == name and b["source"] for b in s.bindings)
        if not has_binding and not q.get("consumers"):
            out.append(Finding("topology", name, "unused queue", "no binding, no consumer",
                          "bound or consumed", "MassTransit topology", WARN,
                          f"{q.get('messages') or 0} messages nothing will deliver or read"))
    sources = {b["source"] for b in s.bindings}
    for name in sorted(s.exchanges):
        if not name or name.startswith("amq.") or name in sources or \
                name == naming.COMPLETIONS_EXCHANGE:  # the reference stack's own
            continue
        out.append(Finding("topology", name, "unused exchange", "binds nothing", "bound",
                      "MassTransit topology", WARN, "what is published to it is dropped"))
    return out


def _arguments(ep: Endpoint, q: dict[str, Any], src: str) -> list[Finding]:
    out: list[Finding] = []
    effective, origin = effective_arguments(q)
    expected = dict(ep.queue_arguments)
    for arg in ("x-max-length", "x-overflow", "x-single-active-consumer", "x-delivery-limit"):
        want, got = expected.get(arg), effective.get(arg)
        by = origin.get(arg, "queue argument")
        if want == got or (want is None and got is None):
            if want is not None:
                out.append(Finding("topology", ep.queue, arg, got, want, src, OK, f"from {by}"))
            continue
        if arg == "x-single-active-consumer":
            verdict = FAIL if want and not got else WARN
            detail = ("per-key order is lost: every instance consumes" if want and not got
                      else "one instance consumes: instances add standby, not throughput")
        elif arg == "x-max-length":
            verdict = FAIL if got is None or (want is not None and got < want / 10) else WARN
            detail = (f"set by {by}" if arg in origin else "") + (
                "; unbounded: a stalled consumer lets it grow until the memory alarm"
                if got is None else "")
        else:
            verdict = WARN
            detail = f"set by {by}" if arg in origin else ""
        out.append(Finding("topology", ep.queue, arg, NOT_SET if got is None else got,
                      NOT_SET if want is None else want, src, verdict, detail.strip("; ")))
    limit = effective.get("x-delivery-limit")
    if limit is not None and not effective.get("x-dead-letter-exchange"):
        out.append(Finding("topology", ep.queue, "delivery limit without dead-letter target",
                      f"x-delivery-limit {limit}, no x-dead-letter-exchange",
                      "a dead-letter exchange", "RabbitMQ quorum queues", WARN,
                      f"a message redelivered more than {limit} times is dropped"))
    return out


def _routing(ep: Endpoint, profile: Profile, bound: set[tuple[str, str, str]],
             exchanges: dict[str, Any]) -> list[Finding]:
    """Each consumed message type's exchange -> the endpoint exchange -> the queue."""
    out = []
    checks = [(ep.queue, ep.queue in exchanges, "endpoint exchange exists", ep.message_type),
              (ep.queue, (ep.queue, ep.queue, "queue") in bound, "endpoint exchange -> queue",
               ep.message_type)]
    for type_name in ep.consumes:
        type_ex = profile.message(type_name).exchange
        checks += [(type_ex, type_ex in exchanges, "message-type exchange exists", type_name),
                   (type_ex, (type_ex, ep.queue, "exchange") in bound,
                    "message type -> endpoint exchange", type_name)]
    for name, ok, what, type_name in checks:
        if not ok:
            out.append(Finding("topology", name, what, "missing", "present",
                          "MassTransit publish topology", FAIL,
                          f"{type_name} published by a .NET publisher cannot reach "
                          f"{ep.queue}"))
    return out


# --- consumers ---------------------------------------------------------------------------------


def consumers(s: Snapshot, profile: Profile, settings: RabbitSettings) -> list[Finding]:
    out: list[Finding] = []
    by_queue: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for c in s.consumers:
        by_queue[c.get("queue", {}).get("name", "")].append(c)
    for ep in profile.resolved(settings).endpoints:
        q = s.queues.get(ep.queue)
        if q is None:
            continue
        found = by_queue.get(ep.queue, [])
        depth = q.get("messages") or 0
        if not found:
            out.append(Finding("consumers", ep.queue, "consumers", 0, ">= 1", "a running service",
                          FAIL if depth else WARN,
                          f"{depth} messages wait for a consumer" if depth else "idle"))
            continue
        out.append(Finding("consumers", ep.queue, "consumers", len(found), ">= 1",
                      "a running service", OK))
        for c in found:
            prefetch = int(c.get("prefetch_count") or 0)
            who = c.get("channel_details", {}).get("connection_name", "?")
            if prefetch == ep.prefetch:
                continue
            verdict = FAIL if prefetch == 0 or prefetch > PREFETCH_FAIL_FACTOR * (ep.prefetch
                                                                                  or 1) else WARN
            out.append(Finding("consumers", ep.queue, "prefetch", prefetch or "unlimited",
                          ep.prefetch, f"profile {profile.name} (PrefetchCount)", verdict,
                          f"consumer on {who}: buffers up to "
                          f"{'every message' if not prefetch else f'{prefetch} messages'}"))
        if ep.single_active_consumer:
            active = [c for c in found if c.get("active") or
                      c.get("activity_status") == "single_active"]
            out.append(Finding("consumers", ep.queue, "single active consumer", len(active), 1,
                          "x-single-active-consumer", OK if len(active) <= 1 else FAIL,
                          ", ".join(c.get("channel_details", {}).get("connection_name", "?")
                                    for c in active) or "none active yet"))
    return out


# --- depth and age -------------------------------------------------------------------------------


def depth(s: Snapshot, profile: Profile, warning: int = targets.DEPTH_WARNING,
          critical: int = targets.DEPTH_CRITICAL,
          age_max_s: float = targets.MESSAGE_AGE_MAX_S) -> list[Finding]:
    out: list[Finding] = []
    for ep in profile.endpoints:
        q = s.queues.get(ep.queue)
        if q is None:
            continue
        messages = q.get("messages")
        if messages is None:
            out.append(Finding("depth", ep.queue, "depth", NOT_MEASURED, f"<= {warning}",
                          "guide: queue depth alerts", INFO,
                          "the broker has no statistics for it yet (or its metrics collector "
                          "is off: try --prometheus)"))
            continue
        out.append(Finding("depth", ep.queue, "depth", messages, f"<= {warning} (critical "
                      f"{critical})", "guide: queue depth alerts",
                      FAIL if messages > critical else WARN if messages > warning else OK))
        limit = effective_arguments(q)[0].get("x-max-length")
        if limit:
            fill = messages / limit
            out.append(Finding("depth", ep.queue, "fill of x-max-length", f"{fill:.0%}", "< 80%",
                          f"x-max-length {limit}", FAIL if fill >= 1 else WARN if fill >= 0.8
                          else OK, "publishes are rejected (reject-publish) at 100%"
                          if fill >= 1 else ""))
        ack = (q.get("message_stats") or {}).get("ack_details", {}).get("rate")
        if messages:
            if ack:
                drain = model.drain_time_s(messages, float(ack), 0.0)
                out.append(Finding("depth", ep.queue, "drain time at the measured ack rate",
                              round(drain, 1), f"<= {age_max_s:g}s", "guide: message age alert",
                              WARN if drain > age_max_s else OK,
                              f"{messages} messages at {ack:g}/s (new arrivals not counted)"))
            else:
                out.append(Finding("depth", ep.queue, "drain time at the measured ack rate",
                              "never (no acks)", f"<= {age_max_s:g}s",
                              "guide: message age alert", FAIL,
                              f"{messages} messages and nothing acked lately"))
        for side in (ep.error_queue, ep.skipped_queue):
            sq = s.queues.get(side)
            n = (sq or {}).get("messages")
            if sq is not None and n:
                out.append(Finding("depth", side, "messages", n, 0, "MassTransit fault handling",
                              FAIL if n > critical else WARN,
                              "faulted messages wait to be replayed or dropped" if
                              side.endswith("_error") else "messages no consumer handles"))
    return out


# --- node ----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class NodeFigures:
    """One node's figures, from the management API and (where it lacks them)
    rabbitmq_prometheus."""

    name: str
    raw: dict[str, Any]
    used: float | None
    limit: float | None
    container: float | None

    @classmethod
    def of(cls, n: dict[str, Any], prom: Any, container: float | None) -> NodeFigures:
        used = n.get("mem_used") if n.get("mem_used") is not None else \
            (prom.mem_used if prom else None)
        limit = n.get("mem_limit") if n.get("mem_limit") is not None else \
            (prom.mem_limit if prom else None)
        return cls(n.get("name", "?"), n, used, limit, container)


NodeRule = Callable[[NodeFigures], Finding | None]


def _memory(f: NodeFigures) -> Finding | None:
    if f.used is None or not f.limit:
        return None
    frac = f.used / f.limit
    return Finding("node", f.name, "memory of the high watermark", f"{frac:.0%}",
                   f"< {targets.MEMORY_WARNING_FRACTION:.0%}", "guide: memory alert",
                   WARN if frac >= targets.MEMORY_WARNING_FRACTION else OK,
                   f"{format_bytes(f.used)} of {format_bytes(f.limit)}")


def _alarm(f: NodeFigures) -> Finding:
    alarm = f.raw.get("mem_alarm")
    return Finding("node", f.name, "memory alarm",
                   alarm if alarm is not None else NOT_MEASURED, False, "guide: critical alert",
                   FAIL if alarm else OK if alarm is not None else INFO)


def _watermark(f: NodeFigures) -> Finding | None:
    if not f.limit or not f.container:
        return None
    share = f.limit / f.container
    verdict = FAIL if share >= 1 else WARN if share > 1 - targets.MEMORY_HEADROOM else OK
    detail = {FAIL: "the container is OOM-killed before the broker blocks publishers",
              WARN: f"watermark {format_bytes(f.limit)}: a relative watermark is taken of the "
                    f"host's RAM unless total_memory_available_override_value is set",
              OK: ""}[verdict]
    return Finding("node", f.name, "watermark of the container memory", f"{share:.0%}",
                   f"<= {1 - targets.MEMORY_HEADROOM:.0%}",
                   "guide: 40% headroom; --container-memory", verdict, detail)


def _disk(f: NodeFigures) -> Finding | None:
    free, free_limit = f.raw.get("disk_free"), f.raw.get("disk_free_limit")
    if free is None or not free_limit:
        return None
    full = f.raw.get("disk_free_alarm") or free <= free_limit
    return Finding("node", f.name, "disk free", format_bytes(free),
                   f">= 2 x disk_free_limit ({format_bytes(free_limit)})", "disk_free_limit",
                   FAIL if full else WARN if free < 2 * free_limit else OK,
                   "a disk alarm blocks every publisher" if full else "")


def _disk_limit(f: NodeFigures) -> Finding | None:
    free_limit = f.raw.get("disk_free_limit")
    if f.raw.get("disk_free") is None or not free_limit or free_limit > 50_000_000:
        return None
    return Finding("node", f.name, "disk_free_limit", format_bytes(free_limit),
                   "> the node's memory limit", "RabbitMQ production checklist", WARN,
                   "the 50MB default cannot hold a backlog being paged out")


def _limit(used_key: str, total_key: str, what: str) -> NodeRule:
    def rule(f: NodeFigures) -> Finding | None:
        used_n, total_n = f.raw.get(used_key), f.raw.get(total_key)
        if used_n is None or not total_n:
            return None
        frac = used_n / total_n
        return Finding("node", f.name, what, f"{used_n} of {total_n}", f"< {FD_WARN:.0%}",
                       "node limits", FAIL if frac >= FD_FAIL else WARN if frac >= FD_WARN
                       else OK)

    return rule


def _partitions(f: NodeFigures) -> Finding:
    parts = f.raw.get("partitions") or []
    return Finding("node", f.name, "network partitions", len(parts), 0, "cluster health",
                   FAIL if parts else OK, ", ".join(map(str, parts)))


NODE_RULES: tuple[NodeRule, ...] = (
    _memory, _alarm, _watermark, _disk, _disk_limit,
    _limit("fd_used", "fd_total", "file descriptors"),
    _limit("sockets_used", "sockets_total", "sockets"),
    _limit("proc_used", "proc_total", "Erlang processes"),
    _partitions,
)


def node(s: Snapshot, container_memory_bytes: float | None = None) -> list[Finding]:
    """Each node held to every rule of NODE_RULES, then the broker as a whole."""
    prom = {n.node: n for n in s.prometheus_nodes}
    out = [found for n in s.nodes
           for rule in NODE_RULES
           if (found := rule(NodeFigures.of(n, prom.get(n.get("name", "?")),
                                            container_memory_bytes))) is not None]
    return out + _broker(s)


def _broker(s: Snapshot) -> list[Finding]:
    out: list[Finding] = []
    ov = s.overview
    version = str(ov.get("rabbitmq_version", ""))
    if version:
        major = version.split(".")[0]
        out.append(Finding("node", "broker", "RabbitMQ version", version, ">= 4.0",
                      "RabbitMQ support policy", WARN if major == "3" else OK,
                      "the 3.x series is out of community support since 4.0 (2024); the "
                      "guide's compose file runs 3.13; `doctor --upgrade-to 4.3` says what "
                      "breaks on the way" if major == "3" else ""))
    if s.amqp is not None:
        where, why = s.amqp
        listens = sorted({str(x.get("port")) for x in ov.get("listeners") or []
                          if str(x.get("protocol", "")).startswith("amqp")})
        out.append(Finding("node", "broker", "AMQP port", where if not why else
                           f"{where}: {why}", "answers", "the clients' and runs' connections",
                           FAIL if why else OK,
                           f"nothing answers where clients connect (the node listens for AMQP "
                           f"on port {', '.join(listens) or '?'}): check "
                           f"CONDUITLLM__RABBITMQ__HOST and __PORT (or AMQP_URL)" if why else ""))
    if ov.get("erlang_version"):
        out.append(Finding("node", "broker", "Erlang version", ov["erlang_version"], "-", "", INFO))
    totals = ov.get("object_totals", {})
    out.append(Finding("node", "broker", "connections / channels",
                  f"{totals.get('connections', '?')} / {totals.get('channels', '?')}", "-",
                  "guide: connection pool", INFO))
    churn = (ov.get("churn_rates") or {}).get("connection_created_details", {}).get("rate")
    if churn is not None:
        out.append(Finding("node", "broker", "connections opened per second", churn,
                      f"<= {CHURN_WARN_PER_S:g}", "guide: monitor connection churn",
                      WARN if churn > CHURN_WARN_PER_S else OK,
                      "clients reconnecting in a loop" if churn > CHURN_WARN_PER_S else ""))
    mirrored = [p["name"] for p in s.policies if "ha-mode" in (p.get("definition") or {})]
    if mirrored:
        out.append(Finding("node", s.vhost, "deprecated features in use",
                      f"classic mirroring (policies {', '.join(mirrored)})", "none",
                      "RabbitMQ deprecated features", WARN, "removed in 4.0"))
    return out


# --- the plan on the live figures -----------------------------------------------------------------


def live_plan(s: Snapshot, profile: Profile, settings: RabbitSettings,
              coefficients: broker.BrokerCoefficients = broker.DEFAULT) -> list[Finding]:
    """plan's memory figures with the consumers' real prefetch, the observed message sizes
    and the instances that really consume."""
    out: list[Finding] = []
    per_connection: dict[str, float] = defaultdict(float)
    queued_total = 0
    queued_bytes = 0.0
    for ep in profile.resolved(settings).endpoints:
        q = s.queues.get(ep.queue) or {}
        messages, size_bytes = q.get("messages"), q.get("message_bytes")
        if messages and size_bytes:
            size, how = size_bytes / messages, "observed mean"
        else:
            size, how = ASSUMED_MESSAGE_BYTES, "assumed (guide: 10KB)"
        queued_total += messages or 0
        queued_bytes += (messages or 0) * size
        for c in s.consumers:
            if c.get("queue", {}).get("name") == ep.queue:
                conn = c.get("channel_details", {}).get("connection_name", "?")
                prefetch = int(c.get("prefetch_count") or 0) or (messages or 0)
                per_connection[conn] += model.prefetch_memory_bytes(prefetch, size, 1)
        if q:
            out.append(Finding("plan", ep.queue, "message size", format_bytes(size), "-", how,
                               INFO))
    if per_connection:
        peak = max(per_connection.values())
        budget = 256 * 2**20  # half the guide's smallest instance (512MB-1GB)
        out.append(Finding("plan", "consumers", "client prefetch memory per instance (peak)",
                      format_bytes(peak), f"<= {format_bytes(budget)}",
                      "guide: 512MB-1GB per instance", WARN if peak > budget else OK,
                      f"{len(per_connection)} consuming connections, prefetch x observed size"))
    limits = [float(n["mem_limit"]) for n in s.nodes if n.get("mem_limit")]
    mean = queued_bytes / queued_total if queued_total else ASSUMED_MESSAGE_BYTES
    growth = broker.memory_growth_bytes(queued_total, mean, c=coefficients)
    alert = model.alert_memory_bytes(min(limits)) if limits else math.inf
    out.append(Finding("plan", "broker", "memory the queued messages can reach",
                  format_bytes(growth), f"< {format_bytes(alert)}" if limits else "-",
                  f"broker model: {queued_total} messages x {format_bytes(mean)}, above the "
                  f"node's baseline ({coefficients.source})",
                  OK if growth < alert else FAIL))
    held = coefficients.for_version(str(s.overview.get("rabbitmq_version") or "") or None)
    out.append(Finding("plan", "broker", "broker model's RabbitMQ version",
                       held["broker_version"] or NOT_MEASURED, held["measured_on"],
                       "the coefficients' measurements",
                       INFO if not held["carried_over_untested"] else WARN, held["note"]))
    return out


# --- all of it ------------------------------------------------------------------------------


def _minutes(seconds: float) -> str:
    return f"{seconds / 60:,.0f} min" if seconds < 86400 * 2 else f"{seconds / 86400:,.0f} d"


def _forecast_verdict(seconds: float) -> str:
    return FAIL if seconds < FORECAST_FAIL_S else WARN if seconds < FORECAST_WARN_S else OK


def forecast(s: Snapshot, profile: Profile) -> list[Finding]:
    """At each queue's observed growth (the management API's rate of its depth): the time
    until its length limit, and, through the broker model, until the node's memory and disk
    alarms. Nothing growing: nothing to forecast."""
    out: list[Finding] = []
    growth, held, size_sum = 0.0, 0.0, 0.0
    for ep in profile.endpoints:
        q = s.queues.get(ep.queue)
        rate = ((q or {}).get("messages_details") or {}).get("rate")
        if q is None or rate is None:
            continue
        messages = int(q.get("messages") or 0)
        size = (q.get("message_bytes") or 0) / messages if messages and q.get("message_bytes") \
            else ASSUMED_MESSAGE_BYTES
        held += messages
        if rate <= 0:
            continue
        growth += rate
        size_sum += rate * size
        effective, _ = effective_arguments(q)
        limit = effective.get("x-max-length")
        if limit is None:
            continue
        overflow = effective.get("x-overflow", "drop-head")
        left_s = max(0.0, (int(limit) - messages) / rate)
        then = "the oldest are dropped" if overflow == "drop-head" else "publishes are refused"
        out.append(Finding("forecast", ep.queue, "time to x-max-length", _minutes(left_s),
                      f">= {_minutes(FORECAST_WARN_S)}", "observed growth (management API)",
                      _forecast_verdict(left_s),
                      f"{ep.queue}: +{rate:.3g} msg/s, reaches {int(limit):,} in "
                      f"{_minutes(left_s)}, then {overflow}: {then}"))
    if growth <= 0:
        return out
    size = size_sum / growth
    mem_per_s = (broker.memory_growth_bytes(held + growth, size)
                 - broker.memory_growth_bytes(held, size))
    disk_per_s = broker.stored_bytes(growth, size)
    for n in s.nodes:
        name = n.get("name", "node")
        used, limit = n.get("mem_used"), n.get("mem_limit")
        if used is not None and limit and mem_per_s > 0:
            left_s = max(0.0, (limit - used) / mem_per_s)
            out.append(Finding("forecast", name, "time to the memory alarm", _minutes(left_s),
                          f">= {_minutes(FORECAST_WARN_S)}", "observed growth x broker model",
                          _forecast_verdict(left_s),
                          f"+{growth:.3g} msg/s of ~{format_bytes(size)} adds "
                          f"{format_bytes(mem_per_s)}/s: {format_bytes(used)} of the "
                          f"{format_bytes(limit)} watermark in {_minutes(left_s)}"))
        free, free_limit = n.get("disk_free"), n.get("disk_free_limit")
        if free is not None and free_limit is not None and disk_per_s > 0:
            left_s = max(0.0, (free - free_limit) / disk_per_s)
            out.append(Finding("forecast", name, "time to the disk alarm", _minutes(left_s),
                          f">= {_minutes(FORECAST_WARN_S)}", "observed growth x broker model",
                          _forecast_verdict(left_s),
                          f"+{growth:.3g} msg/s writes {format_bytes(disk_per_s)}/s: "
                          f"{format_bytes(free)} free reaches disk_free_limit "
                          f"{format_bytes(free_limit)} in {_minutes(left_s)}"))
    return out


def upgrade_findings(s: Snapshot, target: str, profile: Profile | None = None,
                     settings: RabbitSettings | None = None) -> list[Finding]:
    """What breaks or changes on the way from the broker's version to ``target``: each change
    seen on the vhost or node (and in the profile, when given), with the version it bites in,
    what happens then and the fix; the way there; what the node could not say."""
    current = str(s.overview.get("rabbitmq_version", "0.0"))
    hits = [h for detect in upgrade.LIVE for h in detect(s)]
    if profile is not None and settings is not None:
        hits += upgrade.profile_hits(profile, settings)
    out = [Finding("upgrade", h.subject, upgrade.CHANGES[h.change].title, h.observed,
                   f"fixed before {upgrade.CHANGES[h.change].version}",
                   upgrade.CHANGES[h.change].source,
                   upgrade.verdict_of(upgrade.CHANGES[h.change], current, target),
                   upgrade.describe(upgrade.CHANGES[h.change]))
           for h in hits]
    hops = upgrade.path(current, target)
    out.append(Finding("upgrade", "broker", "the way there", " -> ".join([current, *hops]),
                       target, "RabbitMQ upgrade guide and release notes", INFO,
                       "each hop a rolling upgrade with all stable feature flags enabled "
                       "first" if hops else f"already at {target} or later"))
    if not s.feature_flags_read:
        out.append(Finding("upgrade", "broker", "feature flags", NOT_MEASURED, "all enabled",
                           "GET /api/feature-flags (administrator)", INFO,
                           "this user cannot read them: check `rabbitmqctl list_feature_flags`"))
    if s.deprecated_used is None:
        out.append(Finding("upgrade", "broker", "deprecated features in use", NOT_MEASURED,
                           "none", "GET /api/deprecated-features/used (3.13 and later)", INFO,
                           "the node does not report them before 3.13: the checks above "
                           "read the topology and channels instead"))
    else:
        for f in s.deprecated_used:
            out.append(Finding("upgrade", "broker", "deprecated feature in use",
                               f.get("name"), "none", "the node's own report", WARN,
                               str(f.get("desc") or "")))
    return out


def diagnose(s: Snapshot, profile: Profile, settings: RabbitSettings, *,
             container_memory_bytes: float | None = None) -> list[Finding]:
    findings = (topology(s, profile) + consumers(s, profile, settings) + depth(s, profile)
                + forecast(s, profile) + node(s, container_memory_bytes)
                + live_plan(s, profile, settings))
    rank = {FAIL: 0, WARN: 1, OK: 2, INFO: 3}
    return sorted(findings, key=lambda f: (rank.get(f.verdict, 4), GROUPS.index(f.group)))


def verdict(findings: list[Finding]) -> str:
    return worst(f.verdict for f in findings)


def result(findings: list[Finding], vhost: str, profile: str,
           upgrade_to: str | None = None) -> DoctorResult:
    """doctor --json: the typed result (results/doctor.py)."""
    return DoctorResult(vhost=vhost, profile=profile, verdict=verdict(findings),
                        counts={v: sum(f.verdict == v for f in findings)
                                for v in (FAIL, WARN, OK, INFO)},
                        upgrade_to=upgrade_to,
                        findings=[FindingResult.model_validate(f.as_dict()) for f in findings])


def wrap_row(cells: tuple[str, ...], widths: tuple[int, ...], tail: str) -> list[str]:
    """A table row whose cells wrap within their columns (never cut): as many lines as the
    longest cell needs; ``tail`` (the free-text last column) on the first line."""
    import textwrap

    wrapped = [textwrap.wrap(c, w, break_long_words=True, break_on_hyphens=False) or [""]
               for c, w in zip(cells, widths, strict=True)]
    height = max(len(w) for w in wrapped)
    out = []
    for i in range(height):
        line = "  ".join((col[i] if i < len(col) else "").ljust(w)
                         for col, w in zip(wrapped, widths, strict=True))
        out.append((line + (f"  {tail}" if i == 0 and tail else "")).rstrip())
    return out


def render(findings: list[Finding], vhost: str, profile: str, *, verbose: bool = False) -> str:
    """One table, FAILs first, grouped; OK and INFO rows only with ``verbose``."""
    shown = [f for f in findings if verbose or f.verdict in (FAIL, WARN)]
    lines = [f"doctor: vhost {vhost!r}, profile {profile}: "
             f"{sum(f.verdict == FAIL for f in findings)} FAIL, "
             f"{sum(f.verdict == WARN for f in findings)} WARN, "
             f"{sum(f.verdict == OK for f in findings)} OK"]
    widths = (7, 9, 28, 34, 22, 20)
    header = ("verdict", "group", "subject", "check", "observed", "expected")
    lines.append("  ".join(h.ljust(w) for h, w in zip(header, widths, strict=True))
                 + "  source / detail")
    for f in shown:
        cells = (f.verdict, f.group, f.subject, f.check, str(f.observed), str(f.expected))
        lines += wrap_row(cells, widths, f"{f.source}" + (f": {f.detail}" if f.detail else ""))
    if not shown:
        lines.append("(nothing to report: add --verbose to see every check)")
    lines.append(f"verdict: {verdict(findings)}")
    return "\n".join(lines)
