"""The total-queue ledger of RabbitMQ's Jepsen suite, kept per message under load.

Jepsen's checker sorts every enqueue and dequeue into: attempted (enqueues tried),
acknowledged (enqueues the broker confirmed), ok (dequeued), lost (acknowledged, never
dequeued), duplicated (dequeued more than once), unexpected (dequeued, never attempted) and
recovered (an enqueue whose outcome was unknown, a timeout or a lost connection, that was
dequeued anyway). Here an enqueue is a publish by the stack's API, a dequeue a consumer's
completion record (completed, faulted or skipped: the message left its queue), and a message a
type two endpoints consume counts once in each queue it reaches. Valid when lost = 0 and
unexpected = 0; duplicates are judged only on endpoints whose profile says the consumer is not
idempotent. Messages the consumers publish while processing (callbacks) are consumed without
an API publish: they are counted as ``spawned`` (each record says how many its processing
published and had confirmed), and only consumed messages beyond them are unexpected.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from rabbitscale.judge import slo

UNKNOWN = frozenset({"timeout", "failed", "blocked"})  # the broker may have the message
REFUSED = frozenset({"rejected", "unroutable"})  # it certainly does not


@dataclass
class TotalQueue:
    """Fed by the stack's publish and completion events; ``queues_of(type)`` says where a
    message type goes, ``idempotent(queue)`` whether duplicates there are harmless."""

    queues_of: Any
    idempotent: Any
    run: str = ""
    outcome: dict[str, str] = field(default_factory=dict)  # message id -> publish outcome
    expected: dict[str, tuple[str, ...]] = field(default_factory=dict)
    dequeued: Counter[tuple[str, str]] = field(default_factory=Counter)  # (queue, id) -> n
    foreign: int = 0
    spawned: int = 0  # messages consumers published while processing (confirmed)

    def on_published(self, result: Any) -> None:
        self.outcome[result.message_id] = str(result.outcome)
        self.expected[result.message_id] = tuple(self.queues_of(result.message_type))

    def on_record(self, record: Any) -> None:
        if self.run and record.run != self.run:
            self.foreign += 1
            return
        ident = (record.queue, record.message_id)
        if ident not in self.dequeued:
            self.spawned += int(getattr(record, "spawned", 0) or 0)
        self.dequeued[ident] += 1

    def counts(self) -> dict[str, Any]:
        acknowledged = {"confirmed", "sent"}
        c = Counter[str]()
        dup_by_queue = Counter[str]()
        for mid, out in self.outcome.items():
            for q in self.expected[mid]:
                c["attempted"] += 1
                n = self.dequeued.get((q, mid), 0)
                if out in acknowledged:
                    c["acknowledged"] += 1
                    c["lost"] += n == 0
                elif out in UNKNOWN:
                    c["unknown"] += 1
                    c["recovered"] += n > 0
                elif out in REFUSED:
                    c["refused"] += 1
        not_attempted = 0
        for (q, mid), n in self.dequeued.items():
            c["ok"] += 1
            if mid not in self.outcome or q not in self.expected[mid]:
                not_attempted += 1
            elif self.outcome[mid] in REFUSED:
                c["unexpected"] += 1  # refused at publish, yet delivered
            if n > 1:
                c["duplicated"] += 1
                dup_by_queue[q] += 1
        c["unexpected"] += max(0, not_attempted - self.spawned)
        keys = ("attempted", "acknowledged", "ok", "lost", "duplicated", "unexpected",
                "recovered", "unknown", "refused")
        return {**{k: int(c[k]) for k in keys}, "spawned": self.spawned,
                "duplicated_by_queue": dict(dup_by_queue),
                "valid": c["lost"] == 0 and c["unexpected"] == 0}

    def checks(self, counts: dict[str, Any] | None = None) -> list[slo.Check]:
        c = counts or self.counts()
        judged = {q: n for q, n in c["duplicated_by_queue"].items() if not self.idempotent(q)}
        return [
            slo.at_most("total_queue_lost", c["lost"], 0,
                        "confirmed publishes never consumed (Jepsen's total-queue 'lost')"),
            slo.at_most("total_queue_unexpected", c["unexpected"], 0,
                        "messages consumed that were never published, or refused"),
            slo.at_most("duplicates_on_non_idempotent_endpoints", sum(judged.values()), 0,
                        "messages consumed twice where the profile says the consumer is "
                        "not idempotent" + (f": {judged}" if judged else "")),
        ]
