"""What breaks, or changes, on the way from a broker's RabbitMQ version to a 3.13 or 4.x one:
``doctor --upgrade-to``, ``audit --upgrade-to`` and ``profile check --upgrade-to``.

``CHANGES`` is the table of data: each change with the version it bites in, whether it breaks
(FAIL: the node refuses to boot, a declaration or a client is refused, messages are dropped) or
changes behaviour (WARN), what happens then, what to do, and the release notes it comes from.
``DETECTORS`` says where each change is seen: on the live vhost and node (a doctor
``Snapshot``), in a rabbitmq.conf (the audit's entries) or in a profile; each detector
returns the subjects it affects with what it observed. A change counts when the current
version is below the one it bites in and the target is at or above it.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from rabbitscale.core.errors import BadInput
from rabbitscale.core.units import format_bytes
from rabbitscale.core.verdicts import FAIL, INFO, OK, WARN
from rabbitscale.topology.profiles import QUORUM, Profile
from rabbitscale.topology.settings import RabbitSettings

TARGETS = ("3.13", "4.0", "4.1", "4.2", "4.3")
MAX_MESSAGE_4X = 16 * 2**20  # 4.0's default max_message_size (128 MiB before)
NOTES = "RabbitMQ {v} release notes"


@dataclass(frozen=True)
class Change:
    id: str
    version: str  # the first version it bites in
    verdict: str  # FAIL: it breaks; WARN: it changes behaviour; INFO
    title: str
    then: str  # what happens on that version
    fix: str
    source: str


CHANGES: dict[str, Change] = {c.id: c for c in (
    Change("classic-mirroring", "4.0", FAIL, "classic queue mirroring (ha-* policies)",
           "mirroring is removed: the ha-* keys of a policy do nothing and a classic queue "
           "keeps one replica, so a node loss loses its messages",
           "move the queues that need replicas to quorum queues (RabbitMQ's 'Migrate mirrored "
           "classic queues to quorum queues') and drop the ha-* keys",
           "RabbitMQ 4.0.1 release notes: Classic Queues is Now a Non-Replicated Queue Type"),
    Change("quorum-delivery-limit", "4.0", FAIL,
           "quorum queue without a dead-letter target",
           "quorum queues get a default delivery limit of 20: a message redelivered 20 times "
           "is dropped, as the queue has no dead-letter target",
           "set a dead-letter target by policy (dead-letter-exchange), or x-delivery-limit "
           "deliberately",
           "RabbitMQ 4.0.1 release notes: Quorum Queues Now Have a Default Redelivery Limit"),
    Change("max-message-size", "4.0", FAIL, "messages above 16 MiB",
           "the default max_message_size drops from 128 MiB to 16 MiB: a larger publish is "
           "refused",
           "keep messages under 16 MiB (a blob store for large payloads) or set "
           "max_message_size in rabbitmq.conf",
           "RabbitMQ 4.0.1 release notes: Default Maximum Message Size Reduced to 16 MiB"),
    Change("cqv1-default", "4.0", FAIL, "classic_queue.default_version = 1",
           "CQv1 is removed: a node with this line fails to start",
           "remove the line (the node migrates its queues to CQv2)",
           "RabbitMQ 4.0.1 release notes: CQv1 Storage Implementation was Removed"),
    Change("startup-delay-range", "4.0", FAIL,
           "cluster_formation.randomized_startup_delay_range.*",
           "the settings were removed: the node fails to boot", "remove them",
           "RabbitMQ 4.0.1 release notes: Settings cluster_formation."
           "randomized_startup_delay_range.* were Removed"),
    Change("amqp1-mqtt-defaults", "4.0", FAIL,
           "mqtt.default_user, mqtt.default_password, amqp1_0.default_user, "
           "rabbitmq_amqp1_0.default_vhost",
           "unsupported in 4.0: an unknown key stops the node from booting",
           "use anonymous_login_user / anonymous_login_pass and default_vhost",
           "RabbitMQ 4.0.1 release notes: AMQP 1.0, MQTT"),
    Change("metrics-collector", "4.0", WARN, "observed without rabbitmq_prometheus",
           "management metrics collection is a deprecated feature and the official images "
           "disable it: the management API then shows no message rates or queue statistics, "
           "which runs, discover and doctor read",
           "enable rabbitmq_prometheus before upgrading and give runs and doctor "
           "--prometheus http://NODE:15692 (one per node)",
           "RabbitMQ 4.0 deprecated features (management_metrics_collection)"),
    Change("feature-flags", "3.11", WARN, "stable feature flags not enabled",
           "every upgrade needs all stable feature flags of the version it starts from "
           "enabled; 4.0 needs all of 3.13's",
           "rabbitmqctl enable_feature_flag all, on each version before the next",
           "RabbitMQ upgrade guide; 4.0.1 release notes: Required Feature Flags"),
    Change("tcp-buffer", "4.1", WARN, "tcp_listen_options.buffer",
           "ignored from 4.1: TCP buffers are auto-tuned", "remove the line",
           "RabbitMQ 4.1.0 release notes"),
    Change("cacerts", "4.2", FAIL, "*.cacerts settings",
           "removed in 4.2 (they never had the expected effect): an unknown key stops the "
           "node from booting", "remove them (cacertfile stays)",
           "RabbitMQ 4.2.0 release notes: Very Rarely Used *.cacerts Settings are Removed"),
    Change("raft-metric-names", "4.2", WARN, "quorum queue (raft) Prometheus metrics",
           "rabbitmq_raft_log_* and rabbitmq_raft_term_total are renamed and "
           "rabbitmq_raft_entry_commit_latency_seconds removed: dashboards and alerts on the "
           "old names go blank",
           "query both names (rabbitscale's dashboard and --prometheus read both)",
           "RabbitMQ 4.2.0 release notes: Prometheus metrics"),
    Change("queue-mode", "4.3", FAIL, "x-queue-mode (MassTransit's Lazy)",
           "declaring a queue with x-queue-mode fails: the endpoint cannot start",
           "drop x-queue-mode (Lazy = false in MassTransit; classic queues behave lazily "
           "since 3.12)", "RabbitMQ 4.3.0 release notes: CQv1 is Removed"),
    Change("queue-version-1", "4.3", FAIL, "x-queue-version = 1",
           "declaring a queue with x-queue-version 1 fails",
           "drop the argument (CQv2 is the only version)",
           "RabbitMQ 4.3.0 release notes: CQv1 is Removed"),
    Change("transient-nonexclusive", "4.3", FAIL, "transient non-exclusive queue",
           "the deprecated feature transient_nonexcl_queues is denied by default: declaring "
           "a queue that is neither durable nor exclusive closes the connection (541)",
           "declare it durable (MassTransit: Durable = true) or exclusive; "
           "deprecated_features.permit.transient_nonexcl_queues = true buys time",
           "RabbitMQ 4.x deprecated features (transient_nonexcl_queues)"),
    Change("global-qos", "4.3", FAIL, "channels with global QoS",
           "the deprecated feature global_qos is denied by default: basic.qos with "
           "global=true is refused",
           "use per-consumer prefetch (MassTransit's PrefetchCount is per consumer); "
           "deprecated_features.permit.global_qos = true buys time",
           "RabbitMQ 4.x deprecated features (global_qos)"),
    Change("khepri", "4.3", WARN, "Mnesia removed: the metadata store is Khepri",
           "metadata (queues, bindings, users, policies) lives in a Raft store: a majority of "
           "nodes must be up to change it, so a two-node cluster cannot lose one",
           "enable the khepri_db feature flag on 4.2 first; run an odd number of nodes",
           "RabbitMQ 4.3.0 release notes: New Required Feature Flags (khepri_db)"),
)}

# the versions one upgrade may go from, to the next (RabbitMQ's upgrade guide and notes:
# 4.0 only from 3.13, 4.2 also from 3.13, 4.3 only from 4.2)
PATH = {(3, 10): (3, 11), (3, 11): (3, 12), (3, 12): (3, 13), (3, 13): (4, 2), (4, 0): (4, 1),
        (4, 1): (4, 2), (4, 2): (4, 3)}


def version(text: str) -> tuple[int, int]:
    m = re.match(r"\s*(\d+)\.(\d+)", str(text))
    if not m:
        raise BadInput(f"not a RabbitMQ version: {text!r} (e.g. 3.13 or 4.0.5)")
    return int(m.group(1)), int(m.group(2))


def target_version(text: str) -> str:
    v = version(text)
    if f"{v[0]}.{v[1]}" not in TARGETS:
        raise BadInput(f"--upgrade-to: one of {', '.join(TARGETS)}, got {text!r}")
    return f"{v[0]}.{v[1]}"


def applies(change: Change, current: str, target: str) -> bool:
    return version(current) < version(change.version) <= version(target)


def path(current: str, target: str) -> list[str]:
    """The versions an upgrade goes through, each hop one the next version accepts (from 3.13
    straight to 4.0, 4.1 or 4.2)."""
    here, goal, hops = version(current), version(target), []
    while here < goal:
        step = PATH.get(here)
        here = goal if step is None or step > goal else step
        hops.append(f"{here[0]}.{here[1]}")
    return hops


@dataclass(frozen=True)
class Hit:
    """A change seen: on what, and what was observed."""

    change: str
    subject: str
    observed: str


# --- where each change is seen ---------------------------------------------------------------

Live = Any  # inspect.doctor.Snapshot (its module imports this one)


def _mirroring(s: Live) -> list[Hit]:
    return [Hit("classic-mirroring", f"policy {p.get('name')}",
                ", ".join(f"{k}={v}" for k, v in (p.get("definition") or {}).items()
                          if str(k).startswith("ha-")))
            for p in [*s.policies, *s.operator_policies]
            if any(str(k).startswith("ha-") for k in (p.get("definition") or {}))]


def _queue_args(s: Live) -> list[tuple[str, dict[str, Any], dict[str, Any]]]:
    from rabbitscale.inspect.doctor import effective_arguments

    return [(name, q, effective_arguments(q)[0]) for name, q in sorted(s.queues.items())]


def _side_queue(name: str, queues: dict[str, Any]) -> bool:
    """MassTransit's QUEUE_error and QUEUE_skipped: stores nothing consumes, so nothing in them
    is redelivered (the delivery limit never counts there)."""
    base, _, side = name.rpartition("_")
    return side in ("error", "skipped") and base in queues


def _declared(s: Live) -> list[Hit]:
    out = []
    for name, q, args in _queue_args(s):
        if "x-queue-mode" in (q.get("arguments") or {}):
            out.append(Hit("queue-mode", name, f"x-queue-mode={q['arguments']['x-queue-mode']}"))
        if (q.get("arguments") or {}).get("x-queue-version") == 1:
            out.append(Hit("queue-version-1", name, "x-queue-version=1"))
        if not q.get("durable", True) and not q.get("exclusive", False):
            out.append(Hit("transient-nonexclusive", name, "durable=false, exclusive=false"))
        if q.get("type") == QUORUM and "x-dead-letter-exchange" not in args and \
                "x-delivery-limit" not in args and not _side_queue(name, s.queues):
            out.append(Hit("quorum-delivery-limit", name, "no dead-letter target, no "
                                                          "delivery limit"))
        n, size = q.get("messages") or 0, q.get("message_bytes") or 0
        if n and size / n > MAX_MESSAGE_4X:
            out.append(Hit("max-message-size", name, f"mean message {format_bytes(size / n)}"))
    return out


def _channels(s: Live) -> list[Hit]:
    return [Hit("global-qos", f"channel {c.get('name')}",
                f"global prefetch {c.get('global_prefetch_count')}")
            for c in s.channels if (c.get("global_prefetch_count") or 0) > 0]


def _node(s: Live) -> list[Hit]:
    out = []
    listeners = {str(x.get("protocol")) for x in s.overview.get("listeners") or []}
    if not any("prometheus" in p for p in listeners):
        out.append(Hit("metrics-collector", "broker", "no rabbitmq_prometheus listener"))
    off = [f.get("name") for f in s.feature_flags
           if f.get("stability") == "stable" and f.get("state") != "enabled"]
    if off:
        out.append(Hit("feature-flags", "broker", ", ".join(str(n) for n in off)))
    if len(s.nodes) % 2 == 0:
        out.append(Hit("khepri", "broker", f"{len(s.nodes)} nodes"))
    return out


LIVE: tuple[Callable[[Live], list[Hit]], ...] = (_mirroring, _declared, _channels, _node)

# rabbitmq.conf: a key (or a pattern of keys), and the value that matters (None: any)
CONF: tuple[tuple[str, str, str | None], ...] = (
    ("cqv1-default", r"classic_queue\.default_version", "1"),
    ("startup-delay-range", r"cluster_formation\.randomized_startup_delay_range\..*", None),
    ("amqp1-mqtt-defaults", r"mqtt\.default_(user|pass|password)|amqp1_0\.default_user|"
                            r"rabbitmq_amqp1_0\.default_vhost", None),
    ("tcp-buffer", r"tcp_listen_options\.buffer", None),
    ("cacerts", r".*\.cacerts(\..*)?", None),
)


def conf_hits(entries: Sequence[tuple[int, str, str]]) -> list[tuple[int, Hit]]:
    """(line, hit) for each line of a rabbitmq.conf a change applies to."""
    out = []
    for n, key, value in entries:
        for change, pattern, wanted in CONF:
            if re.fullmatch(pattern, key) and (wanted is None or value.strip() == wanted):
                out.append((n, Hit(change, key, f"{key} = {value}")))
    return out


def profile_hits(profile: Profile, settings: RabbitSettings) -> list[Hit]:
    """What a profile declares (or sends) that a version refuses or treats otherwise."""
    out = []
    for ep in profile.endpoints:
        args = dict(ep.queue_arguments or {})
        if "x-queue-mode" in args:
            out.append(Hit("queue-mode", ep.queue, f"x-queue-mode={args['x-queue-mode']}"))
        if ep.queue_type == QUORUM and "x-dead-letter-exchange" not in args and \
                "x-delivery-limit" not in args:
            out.append(Hit("quorum-delivery-limit", ep.queue, "no dead-letter target, no "
                                                              "delivery limit"))
        if not settings.durable:
            out.append(Hit("transient-nonexclusive", ep.queue, "Durable = false"))
    for name, mt in profile.messages.items():
        size = mt.size_bytes
        if size and size > MAX_MESSAGE_4X:
            out.append(Hit("max-message-size", name, f"size {format_bytes(size)}"))
    return out


def verdict_of(change: Change, current: str, target: str) -> str:
    return change.verdict if applies(change, current, target) else INFO


def describe(change: Change) -> str:
    return f"from {change.version}: {change.then}; fix: {change.fix}"


def relevant(hits: Sequence[Hit], current: str, target: str) -> list[Hit]:
    return [h for h in hits if applies(CHANGES[h.change], current, target)]


__all__ = ["CHANGES", "CONF", "FAIL", "LIVE", "OK", "TARGETS", "WARN", "Change", "Hit",
           "applies", "conf_hits", "describe", "path", "profile_hits", "relevant",
           "target_version", "verdict_of", "version"]
