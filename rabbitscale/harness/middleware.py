"""Consumer middleware with MassTransit semantics: circuit breaker, rate limit, partitioner,
webhook dedup. Each takes a clock so tests can drive it without sleeping.
"""

from __future__ import annotations

import asyncio
import enum
import time
from collections import OrderedDict
from collections.abc import Callable

from rabbitscale.core.hashing import murmur3_32
from rabbitscale.topology.policy import BreakerPolicy, RateLimit

Clock = Callable[[], float]


class BreakerState(enum.StrEnum):
    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half_open"


class CircuitBreaker:
    """UseCircuitBreaker as MassTransit's ClosedBehavior counts: attempts, successes and faults
    since the start of the current tracking period (all three reset to 0 every ``window_s``);
    active once more than ``min_requests`` attempts were seen; on a fault it trips when
    faults x 100 / attempts (integer division) reaches ``trip_pct``. Open for ``reset_s``, then
    one message goes through (half-open): success closes it, failure opens it again.
    """

    def __init__(self, policy: BreakerPolicy, clock: Clock = time.monotonic,
                 time_scale: float = 1.0) -> None:
        self.policy = policy
        self.clock = clock
        self.window_s = policy.window_s * time_scale
        self.reset_s = policy.reset_s * time_scale
        self.state = BreakerState.CLOSED
        self.trips = 0
        self.resets = 0  # half-open trials that closed it: the evidence that it recovers
        self.rejected = 0
        self._period_start = clock()
        self._attempts = 0
        self._failures = 0
        self._opened_at = 0.0
        self._trial_in_flight = False

    def _roll(self, now: float) -> None:
        """MassTransit's reset timer: counts start again every tracking period."""
        if now - self._period_start >= self.window_s:
            periods = int((now - self._period_start) // self.window_s)
            self._period_start += periods * self.window_s
            self._attempts = self._failures = 0

    def failure_ratio(self) -> float:
        self._roll(self.clock())
        return self._failures / self._attempts if self._attempts else 0.0

    def allow(self) -> bool:
        """May a message be processed now? Counts a rejection when not."""
        if self.state is BreakerState.OPEN and self.clock() - self._opened_at >= self.reset_s:
            self.state = BreakerState.HALF_OPEN
            self._trial_in_flight = False
        if self.state is BreakerState.CLOSED:
            return True
        if self.state is BreakerState.HALF_OPEN and not self._trial_in_flight:
            self._trial_in_flight = True
            return True
        self.rejected += 1
        return False

    def record(self, ok: bool) -> None:
        now = self.clock()
        if self.state is BreakerState.HALF_OPEN:
            if ok:  # closed again: a new ClosedBehavior, a new tracking period
                self.state = BreakerState.CLOSED
                self.resets += 1
                self._period_start, self._attempts, self._failures = now, 0, 0
            else:
                self._open(now)
            self._trial_in_flight = False
            return
        if self.state is BreakerState.OPEN:
            return
        self._roll(now)
        self._attempts += 1
        if ok:
            return
        self._failures += 1
        if self._attempts > self.policy.min_requests and \
                self._failures * 100 // self._attempts >= self.policy.trip_pct:
            self._open(now)

    def _open(self, now: float) -> None:
        self.state = BreakerState.OPEN
        self._opened_at = now
        self.trips += 1


class RateLimiter:
    """UseRateLimit(count, interval): at most ``count`` message starts per fixed window."""

    def __init__(self, limit: RateLimit, clock: Clock = time.monotonic,
                 time_scale: float = 1.0) -> None:
        self.count = limit.count
        self.interval_s = limit.interval_s * time_scale
        self.clock = clock
        self._window_start = clock()
        self._used = 0
        self.waited_s = 0.0

    def try_acquire(self) -> float:
        """0.0 if a slot was taken, else the seconds to wait before trying again."""
        now = self.clock()
        if now - self._window_start >= self.interval_s:
            self._window_start = now
            self._used = 0
        if self._used < self.count:
            self._used += 1
            return 0.0
        return self._window_start + self.interval_s - now

    async def acquire(self) -> None:
        while (wait := self.try_acquire()) > 0:
            self.waited_s += wait
            await asyncio.sleep(wait)


class Partitioner:
    """UsePartitioner(n, key): one message at a time per partition, within this instance."""

    def __init__(self, partitions: int) -> None:
        self.partitions = partitions
        self._locks = [asyncio.Lock() for _ in range(partitions)]

    def partition(self, key: str) -> int:
        return murmur3_32(key) % self.partitions

    def lock(self, key: str) -> asyncio.Lock:
        return self._locks[self.partition(key)]


class Dedup:
    """Webhook dedup on {TaskId}:{EventType}:{MessageId}, bounded LRU per instance."""

    def __init__(self, capacity: int = 100_000) -> None:
        self.capacity = capacity
        self._seen: OrderedDict[str, None] = OrderedDict()
        self.duplicates = 0

    def is_duplicate(self, key: str) -> bool:
        """True (and counted) if ``key`` was already delivered by this instance."""
        if key in self._seen:
            self._seen.move_to_end(key)
            self.duplicates += 1
            return True
        return False

    def remember(self, key: str) -> None:
        """Mark ``key`` delivered; only successful deliveries are remembered."""
        self._seen[key] = None
        if len(self._seen) > self.capacity:
            self._seen.popitem(last=False)
