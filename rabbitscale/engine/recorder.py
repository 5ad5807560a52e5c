"""The run recorder: every completion record and webhook arrival, turned into the ledger,
HDR histograms per queue and per-second throughput.

It listens on a durable queue of its own bound to the completions exchange (declared before
the load starts), so no record is missed. Latency is split the same way everywhere:
publish delay = sent - intended, queue wait = started - sent, processing = finished -
started, end to end = finished - intended (for webhooks: arrival at the sink - intended).

Memory stays bounded however long a run lasts: counters, HDR histograms, per-second buckets
and a window of recent message ids for duplicate detection (core/recent.py); no per-message
list is kept.
"""

from __future__ import annotations

import math
import time
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

from rabbitscale.core import latency, targets
from rabbitscale.core.events import EventHook, factory
from rabbitscale.core.recent import RecentIds
from rabbitscale.harness.completions import COMPLETED, FAULTED, SKIPPED, Completion

WEBHOOK_SINK = "webhook-sink"  # the name the sink's end-to-end histogram goes by
METRICS = ("e2e", "queue_wait", "slot_wait", "processing", "publish_delay")


@dataclass
class QueueStats:
    histograms: dict[str, Any] = field(
        default_factory=lambda: {m: latency.new_histogram() for m in METRICS})
    last_started_sent: float = 0.0  # sent time of the newest message a consumer took


@dataclass
class Recorder:
    run: str = ""
    ordered_queues: frozenset[str] = frozenset()  # endpoints that apply messages in key order
    burst_max_lag_s: float = targets.BURST_MAX_LAG_S
    started_at: float = field(default_factory=time.time)
    keep_up_deadline: float = math.inf  # records finished before it count as kept up
    by_status: dict[str, int] = field(
        default_factory=lambda: {COMPLETED: 0, FAULTED: 0, SKIPPED: 0})
    duplicates: int = 0
    spawned: int = 0  # messages consumers published while processing (task callbacks)
    done_in_time: int = 0
    order_violations: int = 0
    queues: dict[str, QueueStats] = field(default_factory=lambda: defaultdict(QueueStats))
    per_second: dict[tuple[int, str], int] = field(default_factory=lambda: defaultdict(int))
    # every finished message (any status) by the second it was sent and finished: the exact
    # backlog of each queue over time, whatever the broker's statistics interval
    sent_per_second: dict[tuple[int, str], int] = field(
        default_factory=lambda: defaultdict(int))
    done_per_second: dict[tuple[int, str], int] = field(
        default_factory=lambda: defaultdict(int))
    webhook_arrivals: int = 0
    webhook_duplicates: int = 0
    webhook_e2e: Any = field(default_factory=latency.new_histogram)
    webhook_per_second: dict[int, int] = field(default_factory=lambda: defaultdict(int))
    foreign: int = 0
    fault_reasons: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    completed_after_retry: int = 0
    redelivered: int = 0
    counted: EventHook = field(default_factory=factory("counted"))
    _windows: list[tuple[float, float]] = field(default_factory=list)
    _absorbed: list[int] = field(default_factory=list)
    _last_seq: dict[tuple[str, str], int] = field(default_factory=dict)
    _ids: RecentIds = field(default_factory=RecentIds)
    _webhook_ids: RecentIds = field(default_factory=RecentIds)

    @property
    def finished(self) -> int:
        """Unique messages finished (completed, faulted or skipped)."""
        return sum(self.by_status.values())

    def track_windows(self, windows: list[tuple[float, float]]) -> None:
        """Count, per [start, end) of intended send times, webhooks that arrived within
        ``burst_max_lag_s`` (the burst checks), without keeping the arrivals."""
        self._windows = list(windows)
        self._absorbed = [0] * len(windows)

    def on_record(self, r: Completion) -> None:
        if self.run and r.run != self.run:
            self.foreign += 1
            return
        if self._ids.seen(r.identity):
            self.duplicates += 1
            return
        self.by_status[r.status] = self.by_status.get(r.status, 0) + 1
        self.spawned += r.spawned
        self.sent_per_second[(int(r.sent), r.queue)] += 1
        self.done_per_second[(int(r.finished), r.queue)] += 1
        self.counted.fire(record=r)
        if r.finished < self.keep_up_deadline:
            self.done_in_time += 1
        q = self.queues[r.queue]
        q.last_started_sent = max(q.last_started_sent, r.sent)
        if r.redelivered:
            self.redelivered += 1
        if r.status != COMPLETED:
            self.fault_reasons[r.reason.split(":", 1)[0] or r.status] += 1
        else:
            if r.attempts > 1:
                self.completed_after_retry += 1
            h = q.histograms
            latency.record_s(h["e2e"], r.e2e_s)
            latency.record_s(h["queue_wait"], r.queue_wait_s)
            latency.record_s(h["slot_wait"], r.slot_wait_s)
            latency.record_s(h["processing"], r.processing_s)
            latency.record_s(h["publish_delay"], r.sent - r.intended)
            self.per_second[(int(r.finished), r.queue)] += 1
        if r.queue in self.ordered_queues and r.key:
            k = (r.queue, r.key)
            if r.seq <= self._last_seq.get(k, 0):
                self.order_violations += 1
            self._last_seq[k] = max(r.seq, self._last_seq.get(k, 0))

    def on_arrival(self, arrival: dict[str, Any]) -> None:
        if self.run and arrival.get("run") != self.run:
            return
        if self._webhook_ids.seen(str(arrival.get("message_id", ""))):
            self.webhook_duplicates += 1
            return
        self.webhook_arrivals += 1
        self.webhook_per_second[int(arrival["arrived"])] += 1
        intended = arrival.get("intended")
        if intended:
            lag = arrival["arrived"] - intended
            latency.record_s(self.webhook_e2e, lag)
            if lag <= self.burst_max_lag_s:
                for i, (start, end) in enumerate(self._windows):
                    if start <= intended < end:
                        self._absorbed[i] += 1

    def absorbed(self) -> list[int]:
        """Per tracked window: webhooks delivered within the max lag."""
        return list(self._absorbed)

    def counts(self) -> dict[str, int]:
        return {"completed": self.by_status.get(COMPLETED, 0),
                "faulted": self.by_status.get(FAULTED, 0),
                "skipped": self.by_status.get(SKIPPED, 0), "duplicates": self.duplicates}

    def histograms(self) -> dict[str, dict[str, Any]]:
        out = {queue: dict(q.histograms) for queue, q in self.queues.items()}
        out[WEBHOOK_SINK] = {"e2e": self.webhook_e2e}
        return out

    def throughput(self) -> dict[tuple[int, str], int]:
        out = dict(self.per_second)
        out.update({(sec, WEBHOOK_SINK): n for sec, n in self.webhook_per_second.items()})
        return out

    def peak_backlog(self) -> dict[str, int]:
        """Per queue: the most messages sent and not yet finished at the end of any second
        (from the records, so exact: the messages in the queue plus those in consumers)."""
        out: dict[str, int] = {}
        for queue in {q for _, q in self.sent_per_second}:
            seconds = sorted({t for t, q in self.sent_per_second if q == queue}
                             | {t for t, q in self.done_per_second if q == queue})
            backlog = peak = 0
            for t in seconds:
                backlog += self.sent_per_second.get((t, queue), 0) \
                    - self.done_per_second.get((t, queue), 0)
                peak = max(peak, backlog)
            out[queue] = peak
        return out

    def e2e_p99_ms(self) -> float:
        return max((q.histograms["e2e"].get_value_at_percentile(99)
                    for q in self.queues.values()), default=0) / 1000

    def oldest_age_s(self, queue: str, depth: int, now: float | None = None) -> float:
        """Consumer lag of a FIFO queue: age of its head, estimated from our own timestamps
        (quorum queues report no head-message timestamp). The head was sent just after the
        newest message a consumer has taken."""
        if depth <= 0:
            return 0.0
        q = self.queues.get(queue)
        if q is None or not q.last_started_sent:
            return (now or time.time()) - self.started_at
        return max(0.0, (now or time.time()) - q.last_started_sent)
