"""`rabbitscale discover`: the profile file of a live system, read from its vhost.

Read-only (the management API, GET only, as doctor reads it). MassTransit's topology is
recognised from the broker's objects: a receive endpoint is a queue bound from an exchange of
its own name (the endpoint exchange), the exchanges bound to an endpoint exchange are the
message types it consumes (``Namespace:TypeName``), ``QUEUE_error`` and ``QUEUE_skipped`` are
its side queues. What the broker shows goes in as it is: queue types, arguments after
policies, the consumers' prefetch. What it only hints at is written as an estimate, with
where it came from, in the file's ``[estimates]`` table, from a window of samples (``Window``:
the broker's counters differenced over it, never its averaged rates): the task mix and rate
(each message type's publishes), the work per message (Little's law: the mean of the messages
held unacknowledged / the acks per second), the failure rate (what reaches ``_error`` / what
is acked), the instances (consuming connections), the concurrency limit (MassTransit's
default: the prefetch count). Below MIN_ACKS in the window an endpoint gets no work estimate,
and the file says why. What no broker shows (message bodies, retry policies, circuit breakers,
rate limits) is left for the user: the file says so.
"""

from __future__ import annotations

import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from rabbitscale.inspect.doctor import Snapshot, effective_arguments
from rabbitscale.topology import naming
from rabbitscale.topology.profile_file import QUEUE_ARGUMENTS

OWN_PREFIX = "rabbitscale."  # the reference stack's own objects: not part of a system
SIDE_SUFFIXES = ("_error", "_skipped")
MIN_ACKS = 20  # acks in the window below this tell nothing about the work per message
WINDOW_S = 10.0  # how long discover watches the counters by default

HEADER = """\
# A profile discovered by `rabbitscale discover` from vhost {vhost!r} ({when}).
# What the broker shows is written as it is; what it only hints at is in [estimates], with
# where it came from; what no broker shows is yours to add (docs/profile-format.md):
# - the message bodies (each type below has only padding, to reach a size),
# - retry policies, circuit breakers, rate limits and the concurrency limit of each endpoint,
# - routes, for tasks that enter over HTTP.
"""


@dataclass
class Window:
    """Every queue's and exchange's counters, sampled for ``seconds``: differences between the
    first and the last refresh of the management API are exact, its averaged rates are not."""

    seconds: float = 0.0
    samples: int = 0
    queues: dict[str, list[tuple[float, dict[str, float]]]] = field(default_factory=dict)
    exchanges: dict[str, list[tuple[float, dict[str, float]]]] = field(default_factory=dict)

    def add(self, t: float, queues: list[dict[str, Any]], exchanges: list[dict[str, Any]]
            ) -> None:
        self.samples += 1
        for q in queues:
            stats = q.get("message_stats") or {}
            self.queues.setdefault(q["name"], []).append((t, {
                "ack": float(stats.get("ack") or 0), "publish": float(stats.get("publish") or 0),
                "unacked": float(q.get("messages_unacknowledged") or 0)}))
        for x in exchanges:
            stats = x.get("message_stats") or {}
            self.exchanges.setdefault(x["name"], []).append((t, {
                "publish_in": float(stats.get("publish_in") or 0)}))

    @staticmethod
    def delta(points: list[tuple[float, dict[str, float]]], key: str) -> tuple[float, float]:
        """(the counter's difference, seconds between the first and the last refresh it
        showed; 0 with fewer than two)."""
        changes = [points[0]] + [b for a, b in zip(points, points[1:], strict=False)
                                 if b[1][key] != a[1][key]] if points else []
        if len(changes) < 2:
            return 0.0, 0.0
        return changes[-1][1][key] - changes[0][1][key], changes[-1][0] - changes[0][0]

    def rate(self, kind: str, name: str, key: str) -> tuple[float, float]:
        """(per second, count) of a counter over the window; 0, 0 where it did not move."""
        points = (self.queues if kind == "queue" else self.exchanges).get(name, [])
        n, span = self.delta(points, key)
        return (n / span if span > 0 else 0.0), n


async def watch(mgmt: Any, vhost: str, seconds: float, every_s: float = 1.0) -> Window:
    """Sample the vhost's queues and exchanges for ``seconds`` (GET only)."""
    import asyncio

    w = Window(seconds=seconds)
    end = time.monotonic() + seconds
    while True:
        w.add(time.time(), await mgmt.queues(vhost), await mgmt.exchanges(vhost))
        if time.monotonic() >= end:
            return w
        await asyncio.sleep(min(every_s, max(0.0, end - time.monotonic())))


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
        if name.startswith(OWN_PREFIX) or (name, name) not in to_queue or \
                naming.file_name_problem(name):
            continue
        if name.endswith(SIDE_SUFFIXES) and name.rsplit("_", 1)[0] in s.queues:
            continue  # an endpoint's _error or _skipped queue
        out[name] = sorted(b["source"] for b in bindings
                           if b["destination"] == name and b.get("destination_type") ==
                           "exchange" and b["source"] != name)
    return out


def unusable(s: Snapshot) -> list[str]:
    """The queues left out because their names cannot name a run's files, each with why."""
    return [f"{q!r} {naming.file_name_problem(q)}" for q in sorted(s.queues)
            if naming.file_name_problem(q)]


def discover(s: Snapshot, name: str | None = None, when: str | None = None,
             window: Window | None = None) -> dict[str, Any]:
    """The profile data of the system in the snapshot's vhost (``profile_file`` format)."""
    when = when or time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    window = window or Window()
    src = f"management API, {when}, counters over {window.seconds:g}s ({window.samples} " \
          f"samples)"
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
        eps[queue] = _endpoint(s, queue, [type_of[x] for x in exchanges], estimates, src,
                               window)
    tasks, rate = _tasks(type_of, estimates, src, window)
    data: dict[str, Any] = {"name": name or f"discovered-{s.vhost.strip('/') or 'root'}",
                            "description": f"discovered from vhost {s.vhost!r} ({when})",
                            "namespace": namespace, "rabbitmq": {"VHost": s.vhost},
                            "messages": messages, "endpoints": eps, "tasks": tasks}
    instances = Counter(len({(c.get("channel_details") or {}).get("connection_name")
                             for c in s.consumers
                             if (c.get("queue") or {}).get("name") == q}) for q in eps)
    instances.pop(0, None)
    plan: dict[str, Any] = {}
    if instances:
        plan["instances"] = instances.most_common(1)[0][0]
        estimates["plan.instances"] = (f"{plan['instances']} consuming connection(s) on most "
                                       f"endpoints ({src})")
    if rate > 0:
        plan["task_rate"] = f"{rate:.4g}/s"
    if plan:
        data["plan"] = plan
    if estimates:
        data["estimates"] = estimates
    return data


def _endpoint(s: Snapshot, queue: str, consumes: list[str], estimates: dict[str, str],
              src: str, window: Window) -> dict[str, Any]:
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
    _work(queue, ep, estimates, src, window)
    return ep


def _work(queue: str, ep: dict[str, Any], estimates: dict[str, str], src: str,
          window: Window) -> None:
    """The work per message (Little's law over the window) and the failure rate, where the
    window saw enough acks; else why not."""
    points = window.queues.get(queue, [])
    ack_rate, acks = window.rate("queue", queue, "ack")
    if acks < MIN_ACKS:
        estimates[f"endpoints.{queue}.service_time"] = (
            f"not estimated: {acks:.0f} acks in the window (needs {MIN_ACKS}); run discover "
            f"while the system works, with a longer --window, or plan --from-run a run of it")
        return
    held = [v["unacked"] for _, v in points]
    mean_held = sum(held) / len(held)
    if mean_held <= 0:
        estimates[f"endpoints.{queue}.service_time"] = (
            f"not estimated: no message was held unacknowledged at any of {len(held)} samples "
            f"({acks:.0f} acks): the work is too short to see at this load; plan --from-run a "
            f"run with --app-metrics (MassTransit's consume.duration)")
        return
    ep["service_time"] = f"exponential:{mean_held / ack_rate * 1000:.4g}ms"
    estimates[f"endpoints.{queue}.service_time"] = (
        f"Little's law over {len(held)} samples: {mean_held:.3g} messages unacknowledged on "
        f"average (from {min(held):.0f} to {max(held):.0f}, the management API refreshing "
        f"every few seconds) / {ack_rate:.3g} acks/s ({acks:.0f} acks): the time the "
        f"consumers hold a message, waiting in their prefetch buffers included; exponential "
        f"assumed; MassTransit's consume.duration (plan --from-run) is exact ({src})")
    faulted, _ = window.rate("queue", naming.error_queue(queue), "publish")
    if faulted:
        ep["failure_probability"] = round(min(1.0, faulted / ack_rate), 4)
        estimates[f"endpoints.{queue}.failure_probability"] = (
            f"{faulted:.3g}/s into {naming.error_queue(queue)} / {ack_rate:.3g} acks/s "
            f"(after the consumer's retries) ({src})")


def _tasks(type_of: dict[str, str], estimates: dict[str, str], src: str,
           window: Window) -> tuple[dict[str, Any], float]:
    """A task kind per message type, weighted by each type's publishes over the window
    (equal weights where nothing was published), and the total rate."""
    rates = {x: window.rate("exchange", x, "publish_in")[0] for x in type_of}
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
    return tasks, total


def to_toml(data: dict[str, Any], vhost: str, when: str) -> str:
    """The profile file's text: the header saying what is estimated and what is missing."""
    import tomli_w

    return HEADER.format(vhost=vhost, when=when) + "\n" + tomli_w.dumps(data)
