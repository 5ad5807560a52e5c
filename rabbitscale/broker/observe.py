"""Observing a broker, read-only: per-queue and per-node samples from a ``BrokerSource``.

Two sources give the same samples: the management API (``ManagementSource``) and, for brokers
whose management metrics collector is disabled (the official Docker image), rabbitmq_prometheus
(broker/prometheus.py). Neither declares, publishes or consumes anything, so a run can watch a
system it did not start. Figures a source does not have are None, never 0.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any, Protocol

from rabbitscale.broker.management import Management

QUEUE_FIELDS = ("messages", "ready", "unacked", "consumers", "publish_rate", "deliver_rate",
                "ack_rate", "redeliver_rate", "consumer_capacity", "memory", "published_total",
                "acked_total")
NODE_FIELDS = ("node", "mem_used", "mem_limit", "mem_alarm", "disk_free", "disk_free_limit",
               "disk_alarm", "fd_used", "fd_total", "sockets_used", "proc_used", "connections",
               "channels", "rss", "binary", "quorum_ets", "quorum_queue_procs",
               "data_dir_bytes")
# the memory breakdown and the data directory, read only when a run asks (run backlog)
DETAIL_FIELDS = ("rss", "binary", "quorum_ets", "quorum_queue_procs")


@dataclass(frozen=True)
class QueueSample:
    name: str
    messages: int | None = None
    ready: int | None = None
    unacked: int | None = None
    consumers: int | None = None
    publish_rate: float | None = None
    deliver_rate: float | None = None
    ack_rate: float | None = None
    redeliver_rate: float | None = None
    consumer_capacity: float | None = None
    memory: int | None = None
    # cumulative counters (the management API's message_stats; from rabbitmq_prometheus the
    # acks summed over channels since the first sample): differences over a window are exact,
    # the rates above are the source's own averages
    published_total: int | None = None
    acked_total: int | None = None

    def row(self) -> dict[str, Any]:
        return {k: v for k, v in asdict(self).items() if k != "name"}


@dataclass(frozen=True)
class NodeSample:
    node: str
    mem_used: int | None = None
    mem_limit: int | None = None
    mem_alarm: bool | None = None
    disk_free: int | None = None
    disk_free_limit: int | None = None
    disk_alarm: bool | None = None
    fd_used: int | None = None
    fd_total: int | None = None
    sockets_used: int | None = None
    proc_used: int | None = None
    connections: int | None = None
    channels: int | None = None
    rss: int | None = None  # /api/nodes/NAME/memory, total.rss
    binary: int | None = None  # bodies held in memory (the quorum WAL's until it rolls over)
    quorum_ets: int | None = None  # quorum queue indexes and WAL tables
    quorum_queue_procs: int | None = None
    data_dir_bytes: int | None = None  # size of the node's db_dir, where this machine can read it
    raft_commit_latency_s: float | None = None  # quorum queues' commit latency (Prometheus)
    raft_apply_lag: int | None = None  # raft entries committed, not yet applied (Prometheus)

    @property
    def memory_fraction(self) -> float | None:
        if self.mem_used is None or not self.mem_limit:
            return None
        return self.mem_used / self.mem_limit


class BrokerSource(Protocol):
    """Where broker figures come from; every call is a read."""

    name: str

    async def queues(self, vhost: str) -> dict[str, QueueSample]: ...

    async def nodes(self) -> list[NodeSample]: ...

    async def close(self) -> None: ...


def _int(v: Any) -> int | None:
    return None if v is None else int(v)


def _rate(stats: dict[str, Any], name: str) -> float | None:
    details = stats.get(f"{name}_details")
    return float(details.get("rate", 0.0)) if isinstance(details, dict) else None


def queue_sample(q: dict[str, Any]) -> QueueSample:
    """A management API queue object as a sample. Rates are None when the broker keeps no
    message_stats (metrics collector disabled, or nothing published yet)."""
    stats = q.get("message_stats") or {}
    capacity = q.get("consumer_capacity", q.get("consumer_utilisation"))
    return QueueSample(
        name=q["name"], messages=_int(q.get("messages")), ready=_int(q.get("messages_ready")),
        unacked=_int(q.get("messages_unacknowledged")), consumers=_int(q.get("consumers")),
        publish_rate=_rate(stats, "publish"), deliver_rate=_rate(stats, "deliver_get"),
        ack_rate=_rate(stats, "ack"), redeliver_rate=_rate(stats, "redeliver"),
        consumer_capacity=None if capacity is None else float(capacity),
        memory=_int(q.get("memory")), published_total=_int(stats.get("publish")),
        acked_total=_int(stats.get("ack")))


def node_sample(n: dict[str, Any], totals: dict[str, Any] | None = None) -> NodeSample:
    totals = totals or {}
    return NodeSample(
        node=n.get("name", ""), mem_used=_int(n.get("mem_used")),
        mem_limit=_int(n.get("mem_limit")),
        mem_alarm=None if "mem_alarm" not in n else bool(n["mem_alarm"]),
        disk_free=_int(n.get("disk_free")), disk_free_limit=_int(n.get("disk_free_limit")),
        disk_alarm=None if "disk_free_alarm" not in n else bool(n["disk_free_alarm"]),
        fd_used=_int(n.get("fd_used")), fd_total=_int(n.get("fd_total")),
        sockets_used=_int(n.get("sockets_used")), proc_used=_int(n.get("proc_used")),
        connections=_int(totals.get("connections")), channels=_int(totals.get("channels")))


def data_dir_bytes(path: str) -> int | None:
    """Bytes of the files under a broker's data directory (apparent size, as ``du -sb``), or
    None where this machine cannot read it (a remote broker, another user's directory)."""
    root = Path(path)
    if not path or not root.is_dir() or not os.access(root, os.R_OK | os.X_OK):
        return None
    total = 0
    for dirpath, _, files in os.walk(root, onerror=None):
        for name in files:
            with contextlib.suppress(OSError):  # files come and go (WAL, segments)
                total += os.lstat(os.path.join(dirpath, name)).st_size
    return total


def memory_detail(breakdown: dict[str, Any]) -> dict[str, int | None]:
    total = breakdown.get("total")
    rss = total.get("rss") if isinstance(total, dict) else None
    return {"rss": _int(rss), **{k: _int(breakdown.get(k)) for k in DETAIL_FIELDS[1:]}}


class ManagementSource:
    """Samples from the management API (GET only). With ``detail`` each node sample also
    carries its memory breakdown and, where the data directory is readable from here, its
    size on disk."""

    name = "management"

    def __init__(self, management: Management, *, detail: bool = False) -> None:
        self.management = management
        self.detail = detail

    async def queues(self, vhost: str) -> dict[str, QueueSample]:
        return {q["name"]: queue_sample(q) for q in await self.management.queues(vhost)}

    async def nodes(self) -> list[NodeSample]:
        overview = await self.management.overview()
        totals = overview.get("object_totals", {})
        nodes = await self.management.nodes()
        # object totals are cluster-wide: report them on the first node only
        samples = [node_sample(n, totals if i == 0 else None) for i, n in enumerate(nodes)]
        if not self.detail:
            return samples
        out = []
        for n, sample in zip(nodes, samples, strict=True):
            extra: dict[str, Any] = {}
            if n.get("running", True):
                extra = memory_detail(await self.management.node_memory(sample.node))
                extra["data_dir_bytes"] = await asyncio.to_thread(
                    data_dir_bytes, str(n.get("db_dir") or ""))
            out.append(replace(sample, **extra))
        return out

    async def close(self) -> None:
        await self.management.close()
