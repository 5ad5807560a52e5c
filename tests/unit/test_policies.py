from rabbitscale.core.hashing import murmur3_32
from rabbitscale.harness.middleware import (
    BreakerState,
    CircuitBreaker,
    Dedup,
    RateLimiter,
)
from rabbitscale.topology.policy import BreakerPolicy, RateLimit


class Clock:
    def __init__(self) -> None:
        self.t = 0.0

    def __call__(self) -> float:
        return self.t


def test_breaker_trips_at_its_ratio_after_min_requests():
    """MassTransit's ClosedBehavior: active only after more than ActiveThreshold attempts,
    then a fault trips it at faults x 100 / attempts >= TripThreshold."""
    clock = Clock()
    b = CircuitBreaker(BreakerPolicy(60, 15, 10, 300), clock)
    for _ in range(8):
        b.record(True)
    b.record(False)  # 1 of 9: not active yet
    b.record(False)  # 2 of 10: 10 attempts are not more than 10
    assert b.state is BreakerState.CLOSED
    b.record(True)  # 2 of 11, but only a fault trips
    assert b.state is BreakerState.CLOSED
    b.record(False)  # 3 of 12 = 25% >= 15%
    assert b.state is BreakerState.OPEN and b.trips == 1
    assert not b.allow() and b.rejected == 1


def test_breaker_one_early_fault_does_not_trip_the_guides_breaker():
    """The video endpoint's breaker (5 attempts, 20%): one fault among the first attempts
    cannot trip it (1 of 6 = 16%), two within the first ten can."""
    clock = Clock()
    b = CircuitBreaker(BreakerPolicy(120, 20, 5, 600), clock)
    b.record(False)
    for _ in range(5):
        b.record(True)
    assert b.state is BreakerState.CLOSED
    b.record(False)  # 2 of 7 = 28%
    assert b.state is BreakerState.OPEN


def test_breaker_half_open_then_closes_or_reopens():
    clock = Clock()
    b = CircuitBreaker(BreakerPolicy(60, 50, 2, 300), clock)
    b.record(False)
    b.record(False)
    b.record(False)  # 3 of 3 > 2 attempts
    assert b.state is BreakerState.OPEN
    clock.t = 299
    assert not b.allow()
    clock.t = 300
    assert b.allow() and b.state is BreakerState.HALF_OPEN
    assert not b.allow()  # one trial at a time
    b.record(False)
    assert b.state is BreakerState.OPEN and b.trips == 2
    assert b.resets == 0
    clock.t = 600
    assert b.allow()
    b.record(True)
    assert b.state is BreakerState.CLOSED and b.resets == 1


def test_breaker_window_forgets_old_failures():
    """Counts reset every tracking period (MassTransit's reset timer)."""
    clock = Clock()
    b = CircuitBreaker(BreakerPolicy(60, 50, 4, 300), clock)
    for ok in (False, False, False, True):
        b.record(ok)
    clock.t = 61
    b.record(True)
    b.record(False)  # 1 of 2 in this period: not active
    assert b.state is BreakerState.CLOSED
    for ok in (True, True, True, False):
        b.record(ok)  # 2 of 6 = 33% < 50%
    assert b.state is BreakerState.CLOSED


def test_rate_limiter_fixed_window():
    clock = Clock()
    r = RateLimiter(RateLimit(3, 1.0), clock)
    assert [r.try_acquire() for _ in range(3)] == [0, 0, 0]
    assert r.try_acquire() == 1.0
    clock.t = 0.4
    assert abs(r.try_acquire() - 0.6) < 1e-9
    clock.t = 1.0
    assert r.try_acquire() == 0


def test_murmur3_known_vectors():
    assert murmur3_32(b"") == 0
    assert murmur3_32(b"", 1) == 0x514E28B7
    assert murmur3_32(b"hello") == 0x248BFA47
    assert murmur3_32(b"The quick brown fox jumps over the lazy dog") == 0x2E4FF723


def test_dedup_remembers_only_successes():
    d = Dedup(capacity=2)
    assert not d.is_duplicate("a")
    d.remember("a")
    assert d.is_duplicate("a") and d.duplicates == 1
    d.remember("b")
    d.remember("c")
    assert not d.is_duplicate("a")  # evicted
