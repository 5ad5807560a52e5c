"""`rabbitscale discover`: the profile file of a live system, read from its vhost.

Read-only (the management API, GET only, as doctor reads it). MassTransit's topology is
recognised from the broker's objects: a receive endpoint is a queue bound from an exchange of
its own name (the endpoint exchange), the exchanges bound to an endpoint exchange are the
message types it consumes (``Namespace:TypeName``), ``QUEUE_error`` and ``QUEUE_skipped`` are
its side queues. What the broker shows goes in as it is: queue types, arguments after
policies, the consumers' prefetch. What it only hints at is written as an estimate, with
where it came from, in the file's ``[estimates]`` table: the task mix (each message type's
publish rate), the work per message (Little's law: messages held unacknowledged / ack rate),
the failure rate (what reaches ``_error`` / what is acked), the concurrency limit (MassTransit's
default: the prefetch count). What no broker shows (message bodies, retry policies, circuit
breakers, rate limits) is left for the user: the file says so.
"""

from __future__ import annotations

import time
from collections import Counter
from typing import Any

from rabbitscale.inspect.doctor import Snapshot, effective_arguments
from rabbitscale.topology import naming
from rabbitscale.topology.profile_file import QUEUE_ARGUMENTS

OWN_PREFIX = "rabbitscale."  # the reference stack's own objects: not part of a system
SIDE_SUFFIXES = ("_error", "_skipped")
MIN_ACK_RATE = 0.05  # acks/s below this tell nothing about the work per message

HEADER = """\
# A profile discovered by `rabbitscale discover` from vhost {vhost!r} ({when}).
# What the broker shows is written as it is; what it only hints at is in [estimates], with
# where it came from; what no broker shows is yours to add (docs/profile-format.md):
# - the message bodies (each type below has only padding, to reach a size),
# - retry policies, circuit breakers, rate limits and the concurrency limit of each endpoint,
# - routes, for tasks that enter over HTTP.
"""


def _rate(stats: dict[str, Any] | None, name: str) -> float:
    details = (stats or {}).get(f"{name}_details")
    return float(details.get("rate") or 0.0) if isinstance(details, dict) else 0.0


def _split(exchange: str) -> tuple[str, str]:
    """(namespace, type name) of a MassTransit message-type exchange ``Namespace:Type``."""
    ns, sep, name = exchange.rpartition(":")
    return (ns, name) if sep else ("", exchange)


def _kind_name(type_name: str, taken: set[str]) -> str:
    """A task kind's name from its message type: OrderSubmitted -> order_submitted."""
    out = "".join(f"_{c.lower()}" if c.isupper() and i else c.lower()
                  for i, c in enumerate(type_name)).strip("_")
    name, n = out or "task", 2
    while name in taken:
        name, n = f"{out}_{n}", n + 1
    return name


def endpoints_of(s: Snapshot) -> dict[str, list[str]]:
    """queue -> the message-type exchanges bound to its endpoint exchange."""
    bindings = [b for b in s.bindings if b.get("source")]
    to_queue = {(b["source"], b["destination"]) for b in bindings
                if b.get("destination_type") == "queue"}
    out: dict[str, list[str]] = {}
    for name in sorted(s.queues):
        if name.startswith(OWN_PREFIX) or (name, name) not in to_queue:
            continue
        if name.endswith(SIDE_SUFFIXES) and name.rsplit("_", 1)[0] in s.queues:
            continue  # an endpoint's _error or _skipped queue
        out[name] = sorted(b["source"] for b in bindings
                           if b["destination"] == name and b.get("destination_type") ==
                           "exchange" and b["source"] != name)
    return out


def discover(s: Snapshot, name: str | None = None, when: str | None = None) -> dict[str, Any]:
    """The profile data of the system in the snapshot's vhost (``profile_file`` format)."""
    when = when or time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    src = f"management API, {when}"
    endpoints = endpoints_of(s)
    type_exchanges = sorted({x for xs in endpoints.values() for x in xs})
    namespaces = Counter(_split(x)[0] for x in type_exchanges)
    namespace = namespaces.most_common(1)[0][0] if namespaces else ""
    estimates: dict[str, str] = {}
    messages: dict[str, Any] = {}
    type_of: dict[str, str] = {}  # exchange -> type name
    for exchange in type_exchanges:
        ns, type_name = _split(exchange)
        if type_name in messages:  # one name in two namespaces: keep them apart
            type_name = exchange
        type_of[exchange] = type_name
        spec: dict[str, Any] = {"body": {"padding": "${pad}"}}
        if ns != namespace:
            spec["namespace"] = ns
        if naming.type_exchange(type_name, ns) != exchange:
            spec["exchange"] = exchange
        sizes = [(q.get("message_bytes") or 0, q.get("messages") or 0)
                 for q in (s.queues.get(e) for e, xs in endpoints.items() if exchange in xs)
                 if q]
        total_bytes, total_n = sum(b for b, _ in sizes), sum(n for _, n in sizes)
        if total_n:
            spec["size"] = int(total_bytes / total_n)
            estimates[f"messages.{type_name}.size"] = (
                f"mean size of the {total_n} messages queued ({src})")
        messages[type_name] = spec
    eps: dict[str, Any] = {}
    for queue, exchanges in endpoints.items():
        eps[queue] = _endpoint(s, queue, [type_of[x] for x in exchanges], estimates, src)
    tasks = _tasks(s, type_of, estimates, src)
    data: dict[str, Any] = {"name": name or f"discovered-{s.vhost.strip('/') or 'root'}",
                            "description": f"discovered from vhost {s.vhost!r} ({when})",
                            "namespace": namespace, "rabbitmq": {"VHost": s.vhost},
                            "messages": messages, "endpoints": eps, "tasks": tasks}
    if estimates:
        data["estimates"] = estimates
    return data


def _endpoint(s: Snapshot, queue: str, consumes: list[str], estimates: dict[str, str],
              src: str) -> dict[str, Any]:
    q = s.queues[queue]
    effective, _ = effective_arguments(q)
    ep: dict[str, Any] = {"consumes": consumes, "queue_type": q.get("type") or "classic"}
    args = {k: v for k, v in effective.items() if k in QUEUE_ARGUMENTS}
    if args:
        ep["arguments"] = args
    consumers = [c for c in s.consumers if (c.get("queue") or {}).get("name") == queue]
    prefetches = Counter(int(c.get("prefetch_count") or 0) for c in consumers)
    if prefetches:
        prefetch = prefetches.most_common(1)[0][0]
        if prefetch:
            ep["prefetch"] = prefetch
            ep["concurrency"] = prefetch
            estimates[f"endpoints.{queue}.concurrency"] = (
                "MassTransit's default ConcurrentMessageLimit: the prefetch count (the broker "
                "does not show the limit)")
        connections = {(c.get("channel_details") or {}).get("connection_name")
                       for c in consumers}
        estimates[f"endpoints.{queue}.instances"] = (
            f"{len(connections)} consuming connection(s) seen ({src}): the instances to give "
            f"`plan --instances`")
    stats = q.get("message_stats") or {}
    ack_rate = _rate(stats, "ack")
    unacked = int(q.get("messages_unacknowledged") or 0)
    if ack_rate >= MIN_ACK_RATE and unacked:
        held_s = unacked / ack_rate
        ep["service_time"] = f"exponential:{held_s * 1000:.4g}ms"
        estimates[f"endpoints.{queue}.service_time"] = (
            f"Little's law: {unacked} messages unacknowledged / {ack_rate:.3g} acks/s "
            f"(time held by the consumers, waiting in their prefetch buffers included; "
            f"distribution assumed exponential) ({src})")
    error = s.queues.get(naming.error_queue(queue))
    faulted = _rate((error or {}).get("message_stats"), "publish")
    if ack_rate >= MIN_ACK_RATE and faulted:
        ep["failure_probability"] = round(min(1.0, faulted / ack_rate), 4)
        estimates[f"endpoints.{queue}.failure_probability"] = (
            f"{faulted:.3g}/s into {naming.error_queue(queue)} / {ack_rate:.3g} acks/s "
            f"(after the consumer's retries) ({src})")
    return ep


def _tasks(s: Snapshot, type_of: dict[str, str], estimates: dict[str, str],
           src: str) -> dict[str, Any]:
    """A task kind per message type, weighted by each type's publish rate (equal weights
    where nothing was published)."""
    rates = {x: _rate(s.exchanges.get(x, {}).get("message_stats"), "publish_in")
             for x in type_of}
    total = sum(rates.values())
    tasks: dict[str, Any] = {}
    for exchange, type_name in type_of.items():
        kind = _kind_name(type_name, set(tasks))
        weight = round(rates[exchange] / total, 4) if total else 1.0
        tasks[kind] = {"message": type_name, "weight": weight}
        if total:
            estimates[f"tasks.{kind}.weight"] = (
                f"{rates[exchange]:.3g} of {total:.3g} messages/s published into "
                f"{exchange} ({src})")
    if total:
        estimates["task_rate"] = f"{total:.4g}/s ({total * 60:.4g}/min) published ({src})"
    return tasks


def to_toml(data: dict[str, Any], vhost: str, when: str) -> str:
    """The profile file's text: the header saying what is estimated and what is missing."""
    import tomli_w

    return HEADER.format(vhost=vhost, when=when) + "\n" + tomli_w.dumps(data)
