"""The run recorder: every completion record and webhook arrival, turned into the ledger,
HDR histograms per queue and per-second throughput.

It listens on a durable queue of its own bound to the completions exchange (declared before
the load starts), so no record is missed. Latency is split the same way everywhere:
publish delay = sent - intended, queue wait = started - sent, processing = finished -
started, end to end = finished - intended (for webhooks: arrival at the sink - intended).
"""

from __future__ import annotations

import time
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

from rabbitscale.core import latency
from rabbitscale.harness.completions import COMPLETED, Completion

ORDERED_TYPES = {"SpendUpdateRequested"}  # must be applied in order per key
METRICS = ("e2e", "queue_wait", "processing", "publish_delay")


@dataclass
class QueueStats:
    histograms: dict[str, Any] = field(
        default_factory=lambda: {m: latency.new_histogram() for m in METRICS})
    last_started_sent: float = 0.0  # sent time of the newest message a consumer took


@dataclass
class Recorder:
    run: str = ""
    started_at: float = field(default_factory=time.time)
    finished: dict[str, str] = field(default_factory=dict)  # message_id -> final status
    duplicates: int = 0
    order_violations: int = 0
    queues: dict[str, QueueStats] = field(default_factory=lambda: defaultdict(QueueStats))
    per_second: dict[tuple[int, str], int] = field(default_factory=lambda: defaultdict(int))
    webhook_arrivals: int = 0
    webhook_duplicates: int = 0
    webhook_e2e: Any = field(default_factory=latency.new_histogram)
    webhook_per_second: dict[int, int] = field(default_factory=lambda: defaultdict(int))
    webhook_times: list[tuple[float, float]] = field(default_factory=list)  # (intended, arrived)
    foreign: int = 0
    fault_reasons: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    completed_after_retry: int = 0
    redelivered: int = 0
    _last_seq: dict[tuple[str, str], int] = field(default_factory=dict)
    _webhook_ids: set[str] = field(default_factory=set)

    def on_record(self, r: Completion) -> None:
        if self.run and r.run != self.run:
            self.foreign += 1
            return
        if r.message_id in self.finished:
            self.duplicates += 1
            return
        self.finished[r.message_id] = r.status
        q = self.queues[r.queue]
        q.last_started_sent = max(q.last_started_sent, r.sent)
        if r.redelivered:
            self.redelivered += 1
        if r.status != COMPLETED:
            self.fault_reasons[r.reason.split(":", 1)[0] or r.status] += 1
        elif r.attempts > 1:
            self.completed_after_retry += 1
        if r.status == COMPLETED:
            h = q.histograms
            latency.record_s(h["e2e"], r.e2e_s)
            latency.record_s(h["queue_wait"], r.queue_wait_s)
            latency.record_s(h["processing"], r.processing_s)
            latency.record_s(h["publish_delay"], r.sent - r.intended)
            self.per_second[(int(r.finished), r.queue)] += 1
        if r.message_type in ORDERED_TYPES and r.key:
            k = (r.message_type, r.key)
            if r.seq <= self._last_seq.get(k, 0):
                self.order_violations += 1
            self._last_seq[k] = max(r.seq, self._last_seq.get(k, 0))

    def on_arrival(self, arrival: dict[str, Any]) -> None:
        if self.run and arrival.get("run") != self.run:
            return
        mid = arrival.get("message_id", "")
        if mid in self._webhook_ids:
            self.webhook_duplicates += 1
            return
        self._webhook_ids.add(mid)
        self.webhook_arrivals += 1
        self.webhook_per_second[int(arrival["arrived"])] += 1
        if arrival.get("intended"):
            latency.record_s(self.webhook_e2e, arrival["arrived"] - arrival["intended"])
            self.webhook_times.append((arrival["intended"], arrival["arrived"]))

    def absorbed(self, start: float, end: float, max_lag_s: float) -> int:
        """Webhooks scheduled in [start, end) that arrived within ``max_lag_s`` of their
        intended time: a burst is absorbed when that is all of them."""
        return sum(1 for intended, arrived in self.webhook_times
                   if start <= intended < end and arrived - intended <= max_lag_s)

    def counts(self) -> dict[str, int]:
        statuses = list(self.finished.values())
        return {"completed": statuses.count(COMPLETED), "faulted": statuses.count("faulted"),
                "skipped": statuses.count("skipped"), "duplicates": self.duplicates}

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
