"""Broker sampler: every interval, every watched queue and every node, from a BrokerSource.

Rows go straight to ``broker_queues.csv`` / ``broker_node.csv`` as they are taken (a run of any
length keeps constant memory); the sampler keeps only what the checks need (peaks, the last
depth). The management API refreshes its statistics every ``collect_statistics_interval``
(5 s by default), so where the run owns the queues an exact ready count is also taken each
sample (``ready_now``, a passive ``queue.declare``); black-box runs pass no such counter.

Message age: quorum queues report no head-message timestamp. With completion records the
head's age is known from our own timestamps (``Recorder.oldest_age_s``); without them it is
estimated as depth / ack rate and flagged ``age_estimated``.
"""

from __future__ import annotations

import asyncio
import contextlib
import csv
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from rabbitscale.broker.amqp import ready_count
from rabbitscale.broker.observe import NODE_FIELDS, QUEUE_FIELDS, BrokerSource, QueueSample
from rabbitscale.core import rundir
from rabbitscale.core.errors import RabbitscaleError
from rabbitscale.core.events import hook
from rabbitscale.core.processes import rss_bytes
from rabbitscale.judge.keep_up import CounterPoint

QUEUE_COLUMNS = ["t", "queue", *QUEUE_FIELDS, "ready_now", "oldest_age_s", "age_estimated"]
NODE_COLUMNS = ["t", *NODE_FIELDS]
PROCESS_COLUMNS = ["t", "process", "rss_bytes"]
ProcessIds = Callable[[], dict[str, list[int]]]  # name -> pids (generator, stack, consumer-N)

ExactCount = Callable[[str], Awaitable[int | None]]
AgeFn = Callable[[str, int, float], float | None]  # queue, depth, now -> age in seconds


def exact_counter(channel: Any) -> ExactCount:
    """Exact ready count of a queue the run owns: a passive queue.declare on ``channel``."""

    async def ready_now(name: str) -> int | None:
        try:
            return await ready_count(channel, name)
        except Exception:  # a missing queue or a channel lost mid-run: no exact figure
            return None

    return ready_now


def estimated_age_s(depth: int, sample: QueueSample) -> float | None:
    """Age of the head of a FIFO queue if it drains at its measured ack rate."""
    if depth <= 0:
        return 0.0
    if not sample.ack_rate:
        return None
    return depth / sample.ack_rate


@dataclass(frozen=True)
class Probes:
    """What a run adds to the broker's figures: an exact ready count of the queues it owns,
    the head's age from its own timestamps, which queues are main queues (not side queues),
    and its processes' ids (the soak figures)."""

    exact: ExactCount | None = None
    age: AgeFn | None = None
    main_queue: Callable[[str], bool] | None = None
    processes: ProcessIds | None = None


class Sampler:
    def __init__(self, source: BrokerSource, vhost: str, queues: list[str] | None,
                 run_dir: Path, *, interval_s: float = 1.0, probes: Probes = Probes()) -> None:
        exact, age, processes = probes.exact, probes.age, probes.processes
        main_queue = probes.main_queue
        self.source = source
        self.vhost = vhost
        # None: every queue the source shows in the vhost, each from the sample it first
        # appears in (a system's queues can show up in the broker's statistics seconds late)
        self.follow = queues is None
        self.queues: list[str] = list(queues or [])
        self.interval_s = interval_s
        self.exact = exact
        self.age = age
        self.is_main = main_queue or (lambda q: not q.endswith(("_error", "_skipped")))
        self.errors = 0
        self.samples = 0
        self.last_error = ""
        self._peak_depth = 0
        self._max_age = 0.0
        self._peak_mem = 0.0
        self._alarm = False
        self._depth_now = 0
        self._last_nodes: list[Any] = []
        self.first_depth: dict[str, int] = {}  # messages in each queue at the first sample
        self.last_depth: dict[str, int] = {}  # ... and at the latest
        # main queue -> its counters each time the source showed them changed (the
        # management API refreshes every few seconds): what keep-up is judged from
        self.counters: dict[str, list[CounterPoint]] = {}
        self._task: asyncio.Task[None] | None = None
        self._files: list[IO[str]] = []
        run_dir.mkdir(parents=True, exist_ok=True)
        self._q = self._writer(run_dir / rundir.QUEUES_CSV, QUEUE_COLUMNS)
        self._n = self._writer(run_dir / rundir.NODE_CSV, NODE_COLUMNS)
        self.processes = processes
        self._p = self._writer(run_dir / rundir.PROCESSES_CSV, PROCESS_COLUMNS) \
            if processes else None
        # fire(vhost=, queues=[QueueSample], nodes=[NodeSample], rss={name: bytes}) per sample
        self.sampled = hook("sampled")
        self._stopped = False
        self._t0 = time.time()

    def _writer(self, path: Path, columns: list[str]) -> Any:
        f = path.open("w", newline="", encoding="utf-8")
        self._files.append(f)
        w = csv.DictWriter(f, fieldnames=columns)
        w.writeheader()
        return w

    def start(self) -> None:
        self._task = asyncio.create_task(self._loop())

    async def stop(self) -> None:
        """Stop sampling after one last sample; idempotent."""
        if self._stopped:
            return
        self._stopped = True
        if self._task:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        with contextlib.suppress(Exception):
            await self.sample()  # a last sample after the load
        for f in self._files:
            f.close()

    async def _loop(self) -> None:
        next_at = time.monotonic()
        while True:
            await self.sample()
            next_at += self.interval_s
            await asyncio.sleep(max(0.0, next_at - time.monotonic()))

    async def sample(self) -> None:
        now = time.time()
        try:
            by_name = await self.source.queues(self.vhost)
            nodes = await self.source.nodes()
        except RabbitscaleError as exc:  # a missed sample is counted, the run goes on
            self.errors += 1
            self.last_error = str(exc)
            return
        self.samples += 1
        if self.follow:
            self.queues += sorted(set(by_name) - set(self.queues))
        depth_now = 0
        for name in self.queues:
            s = by_name.get(name, QueueSample(name))
            ready_now = await self.exact(name) if self.exact else None
            depth = ready_now if ready_now is not None else (s.ready or 0)
            age = self.age(name, depth, now) if self.age else None
            estimated = age is None
            if estimated:  # never older than the watching: depth / ack rate can say more
                guess = estimated_age_s(depth, s)
                age = None if guess is None else min(guess, now - self._t0)
            self._q.writerow({"t": now, "queue": name, **s.row(), "ready_now": ready_now,
                              "oldest_age_s": None if age is None else round(age, 3),
                              "age_estimated": estimated})
            messages = s.messages if s.messages is not None else depth
            self.first_depth.setdefault(name, messages)
            self.last_depth[name] = messages
            if self.is_main(name):
                self._count(name, now, s)
                depth_now += depth
                self._peak_depth = max(self._peak_depth, depth, s.messages or 0)
                self._max_age = max(self._max_age, age or 0.0)
        self._depth_now = depth_now
        for n in nodes:
            self._n.writerow({"t": now, **{k: getattr(n, k) for k in NODE_FIELDS}})
            if n.memory_fraction is not None:
                self._peak_mem = max(self._peak_mem, n.memory_fraction)
            self._alarm = self._alarm or bool(n.mem_alarm)
        self._last_nodes = nodes
        rss: dict[str, int] = {}
        if self.processes and self._p:
            rss = rss_bytes(self.processes())
            for name, value in rss.items():
                self._p.writerow({"t": now, "process": name, "rss_bytes": value})
            for n in nodes:  # the broker's own figure, where the source has it
                broker = n.rss if n.rss is not None else n.mem_used
                if broker is not None:
                    self._p.writerow({"t": now, "process": f"broker {n.node}",
                                      "rss_bytes": broker})
        self.sampled.fire(vhost=self.vhost, queues=[by_name.get(q, QueueSample(q))
                                                    for q in self.queues],
                          nodes=nodes, rss=rss)
        for f in self._files:
            f.flush()

    def _count(self, name: str, now: float, s: QueueSample) -> None:
        if s.published_total is None or s.acked_total is None or s.messages is None:
            return
        point = CounterPoint(now, s.published_total, s.acked_total, s.messages, s.ready,
                             s.consumers)
        series = self.counters.setdefault(name, [])
        if not series or series[-1].values != point.values:
            series.append(point)

    # --- what the checks and the progress line need --------------------------------------

    def growth(self, predicate: Callable[[str], bool]) -> int:
        """Messages added to the matching queues between the first and the latest sample."""
        return sum(max(0, self.last_depth[q] - self.first_depth.get(q, 0))
                   for q in self.last_depth if predicate(q))

    def current_depth(self) -> int:
        return self._depth_now

    def peak_depth(self) -> int:
        return self._peak_depth

    def max_age_s(self) -> float:
        return self._max_age

    def peak_memory_fraction(self) -> float:
        return self._peak_mem

    def memory_alarm(self) -> bool:
        return self._alarm

    @property
    def nodes(self) -> list[Any]:
        return self._last_nodes
