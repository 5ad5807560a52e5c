from rabbitscale.harness.middleware import (
    BreakerState,
    CircuitBreaker,
    Dedup,
    RateLimiter,
    murmur3_32,
)
from rabbitscale.harness.policy import BreakerPolicy, RateLimit


class Clock:
    def __init__(self) -> None:
        self.t = 0.0

    def __call__(self) -> float:
        return self.t


def test_breaker_trips_at_its_ratio_after_min_requests():
    clock = Clock()
    b = CircuitBreaker(BreakerPolicy(60, 15, 10, 300), clock)
    for _ in range(8):
        b.record(True)
    b.record(False)  # 1 of 9: below min requests
    assert b.state is BreakerState.CLOSED
    b.record(True)  # 1 of 10 = 10% < 15%
    assert b.state is BreakerState.CLOSED
    b.record(False)  # 2 of 11 = 18% >= 15%
    assert b.state is BreakerState.OPEN and b.trips == 1
    assert not b.allow() and b.rejected == 1


def test_breaker_half_open_then_closes_or_reopens():
    clock = Clock()
    b = CircuitBreaker(BreakerPolicy(60, 50, 2, 300), clock)
    b.record(False)
    b.record(False)
    assert b.state is BreakerState.OPEN
    clock.t = 299
    assert not b.allow()
    clock.t = 300
    assert b.allow() and b.state is BreakerState.HALF_OPEN
    assert not b.allow()  # one trial at a time
    b.record(False)
    assert b.state is BreakerState.OPEN and b.trips == 2
    clock.t = 600
    assert b.allow()
    b.record(True)
    assert b.state is BreakerState.CLOSED


def test_breaker_window_forgets_old_failures():
    clock = Clock()
    b = CircuitBreaker(BreakerPolicy(60, 50, 4, 300), clock)
    b.record(False)
    b.record(False)
    clock.t = 61
    b.record(False)
    b.record(True)
    b.record(True)
    assert b.state is BreakerState.CLOSED  # 1 of 3 in window


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
