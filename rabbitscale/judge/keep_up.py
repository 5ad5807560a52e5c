"""Did each endpoint keep up with what arrived? Judged from the broker's own counters, never
from its averaged rates.

The management API refreshes a queue's figures every statistics interval (5 s by default), so
a sample shows them as they were up to that long ago; the sampler keeps a point each time they
changed (``CounterPoint``). Over the load's window the first and the last change are
refreshes a whole number of intervals apart: the counters' differences between them are exact,
and so are the rates (``window``). Within it:

- ``arrived`` (published into the queue) and ``consumed`` (acked: MassTransit acks a message it
  moves to ``_error`` too) are differences of the queue's counters;
- the backlog's growth is the depth's difference. Consumers hold up to their prefetch each, so
  a depth that grows by no more than the consumers' prefetch (``in_flight``) plus a second of
  arrivals is an endpoint that took what came; beyond it, and with less than ``KEEP_UP_MIN``
  of the arrivals consumed, the endpoint fell behind: named, with the rate it kept up with.
  The drain after the load cannot hide it: it is outside the window.
- the queue wait is derived by Little's law over the window (mean ready depth / consumed
  rate), labelled derived, and never longer than the window itself.

Pure functions: the run gathers the points, this judges them.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from rabbitscale.core.verdicts import FAIL, PASS, SKIP
from rabbitscale.results.check import Check

KEEP_UP_MIN = 0.97  # consumed / arrived over the load's window
MIN_INTERVALS = 1  # intervals between refreshes needed inside the load (else not measured)


@dataclass(frozen=True)
class CounterPoint:
    """A queue's counters as a sample showed them (epoch seconds ``t``)."""

    t: float
    published: int
    acked: int
    messages: int
    ready: int | None = None
    consumers: int | None = None

    @property
    def values(self) -> tuple[int, int, int]:
        return self.published, self.acked, self.messages


@dataclass(frozen=True)
class KeepUp:
    queue: str
    window_s: float
    arrived: int
    consumed: int
    backlog_growth: int
    allowance: int
    mean_depth: float

    @property
    def arrival_rate_per_s(self) -> float:
        return self.arrived / self.window_s

    @property
    def consumed_rate_per_s(self) -> float:
        return self.consumed / self.window_s

    @property
    def ratio(self) -> float | None:
        return self.consumed / self.arrived if self.arrived else None

    @property
    def kept_up(self) -> bool:
        behind = self.backlog_growth > self.allowance
        return not (behind and (self.ratio or 0.0) < KEEP_UP_MIN)

    @property
    def queue_wait_derived_ms(self) -> float | None:
        """Little's law: mean depth / consumed rate, at most the window."""
        if self.consumed_rate_per_s <= 0:
            return None if not self.mean_depth else self.window_s * 1000
        return min(self.window_s, self.mean_depth / self.consumed_rate_per_s) * 1000


def window(points: Sequence[CounterPoint], start: float, end: float
           ) -> tuple[CounterPoint, CounterPoint, list[CounterPoint]] | None:
    """(first, last, all) refreshes inside [start, end]: the points the counters changed at
    (``points`` holds only those). None with fewer than MIN_INTERVALS intervals between them."""
    inside = [p for p in points if start <= p.t <= end]
    if len(inside) < MIN_INTERVALS + 1:
        return None
    return inside[0], inside[-1], inside


def keep_up(queue: str, points: Sequence[CounterPoint], start: float, end: float,
            in_flight: int) -> KeepUp | None:
    """The endpoint over the load's window; None where the window holds too few refreshes."""
    found = window(points, start, end)
    if found is None:
        return None
    first, last, inside = found
    span = max(1e-6, last.t - first.t)
    arrived = max(0, last.published - first.published)
    # waiting: the ready messages (the unacked ones are in the consumers' hands)
    mean_depth = sum(p.ready if p.ready is not None else p.messages for p in inside) / \
        len(inside)
    return KeepUp(queue, span, arrived, max(0, last.acked - first.acked),
                  last.messages - first.messages,
                  in_flight + int(arrived / span) + 1, mean_depth)


def check(k: KeepUp | None, queue: str, why_not: str = "") -> Check:
    """The endpoint's keep-up check: FAIL when its backlog grew beyond what its consumers
    hold and it consumed less than KEEP_UP_MIN of what arrived."""
    name = f"keep_up {queue}"
    if k is None:
        return Check(name, f">= {KEEP_UP_MIN:g}", "not measured", SKIP,
                     why_not or f"the broker's counters refreshed fewer than {MIN_INTERVALS + 1} "
                                f"times during the load: run longer")
    ratio = k.ratio
    detail = (f"over {k.window_s:.0f}s of the load: {k.arrival_rate_per_s:.1f}/s arrived, "
              f"{k.consumed_rate_per_s:.1f}/s consumed, backlog {k.backlog_growth:+,} "
              f"(consumers hold up to {k.allowance:,} in flight)")
    if not k.kept_up:
        detail = (f"{queue} fell behind: it kept up with {k.consumed_rate_per_s:.1f}/s of "
                  f"{k.arrival_rate_per_s:.1f}/s arriving; " + detail)
    return Check(name, f">= {KEEP_UP_MIN:g}", None if ratio is None else round(ratio, 4),
                 PASS if k.kept_up else FAIL, detail)
