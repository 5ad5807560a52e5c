"""Broker sampler: polls the management API every interval for every queue and the node.

The management API's own statistics refresh every ``collect_statistics_interval`` (5 s by
default), so each sample also takes the exact ready count of each queue with a passive
``queue.declare`` (``ready_now``), and the consumer lag from the recorder's timestamps.
Rows are kept in memory and written as CSV through pandas at the end of the run.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aio_pika

from rabbitscale.harness.management import Management, ManagementError
from rabbitscale.scenarios.recorder import Recorder

QUEUE_COLUMNS = ["t", "queue", "messages", "ready", "unacked", "consumers", "publish_rate",
                 "deliver_rate", "ack_rate", "ready_now", "oldest_age_s"]
NODE_COLUMNS = ["t", "mem_used", "mem_limit", "mem_alarm", "disk_free", "disk_free_limit",
                "disk_alarm", "fd_used", "fd_total", "sockets_used", "connections", "channels"]


def _rate(q: dict[str, Any], name: str) -> float:
    return float(q.get("message_stats", {}).get(f"{name}_details", {}).get("rate", 0.0))


@dataclass
class Sampler:
    management: Management
    channel: aio_pika.abc.AbstractChannel
    queues: list[str]
    recorder: Recorder
    interval_s: float = 1.0
    queue_rows: list[dict[str, Any]] = field(default_factory=list)
    node_rows: list[dict[str, Any]] = field(default_factory=list)
    errors: int = 0
    _task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._loop())

    async def stop(self) -> None:
        if self._task:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        await self.sample()  # a last sample after the load

    async def _loop(self) -> None:
        next_at = time.monotonic()
        while True:
            await self.sample()
            next_at += self.interval_s
            await asyncio.sleep(max(0.0, next_at - time.monotonic()))

    async def _ready_now(self, name: str) -> int | None:
        try:
            q = await self.channel.declare_queue(name, passive=True)
            return int(q.declaration_result.message_count)
        except Exception:
            return None

    async def sample(self) -> None:
        now = time.time()
        try:
            by_name = {q["name"]: q for q in await self.management.queues()}
            overview = await self.management.overview()
            nodes = await self.management.nodes()
        except ManagementError:
            self.errors += 1
            return
        for name in self.queues:
            q = by_name.get(name, {})
            ready_now = await self._ready_now(name)
            depth = ready_now if ready_now is not None else int(q.get("messages_ready", 0) or 0)
            self.queue_rows.append({
                "t": now, "queue": name, "messages": int(q.get("messages", 0) or 0),
                "ready": int(q.get("messages_ready", 0) or 0),
                "unacked": int(q.get("messages_unacknowledged", 0) or 0),
                "consumers": int(q.get("consumers", 0) or 0),
                "publish_rate": _rate(q, "publish"), "deliver_rate": _rate(q, "deliver_get"),
                "ack_rate": _rate(q, "ack"), "ready_now": ready_now,
                "oldest_age_s": round(self.recorder.oldest_age_s(name, depth, now), 3),
            })
        n = nodes[0] if nodes else {}
        totals = overview.get("object_totals", {})
        self.node_rows.append({
            "t": now, "mem_used": n.get("mem_used"), "mem_limit": n.get("mem_limit"),
            "mem_alarm": bool(n.get("mem_alarm")), "disk_free": n.get("disk_free"),
            "disk_free_limit": n.get("disk_free_limit"),
            "disk_alarm": bool(n.get("disk_free_alarm")),
            "fd_used": n.get("fd_used"), "fd_total": n.get("fd_total"),
            "sockets_used": n.get("sockets_used"), "connections": totals.get("connections"),
            "channels": totals.get("channels"),
        })

    def write(self, run_dir: Path) -> None:
        import pandas as pd

        pd.DataFrame(self.queue_rows, columns=QUEUE_COLUMNS).to_csv(
            run_dir / "broker_queues.csv", index=False)
        pd.DataFrame(self.node_rows, columns=NODE_COLUMNS).to_csv(
            run_dir / "broker_node.csv", index=False)
