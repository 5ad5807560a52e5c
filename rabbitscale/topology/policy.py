"""Consumer policies as values, with the text format profile files use for them.

Retry, circuit breaker, rate limit (MassTransit's middleware) and the simulated service time.
The consumer runs them (harness/middleware.py); the capacity model reads the same values, so a
setting means one thing everywhere. Each ``parse_*`` raises a one-line ``ConfigError``.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass
from typing import Literal

from rabbitscale.core.errors import ConfigError
from rabbitscale.core.units import UnitError, parse_duration_s

Distribution = Literal["fixed", "exponential", "lognormal"]


def _s(seconds: float) -> str:
    """Seconds as exact duration text ('0.05s'), for the ``spec()`` forms."""
    return f"{seconds!r}s"


@dataclass(frozen=True)
class RetryPolicy:
    """MassTransit UseMessageRetry: in-memory retries while the message stays unacked."""

    kind: Literal["none", "immediate", "incremental", "exponential"] = "none"
    limit: int = 0
    initial_s: float = 0.0
    increment_s: float = 0.0
    max_s: float = 0.0

    def spec(self) -> str:
        """The profile-file text that ``parse_retry`` reads back."""
        if self.kind == "none":
            return "none"
        if self.kind == "immediate":
            return f"immediate:{self.limit}"
        if self.kind == "incremental":
            return f"incremental:{self.limit}:{_s(self.initial_s)}:{_s(self.increment_s)}"
        return (f"exponential:{self.limit}:{_s(self.initial_s)}:{_s(self.max_s)}:"
                f"{_s(self.increment_s)}")

    def delays_s(self) -> list[float]:
        """Delay before each retry; len() is the number of retries after the first attempt."""
        if self.kind == "immediate":
            return [0.0] * self.limit
        if self.kind == "incremental":
            return [self.initial_s + i * self.increment_s for i in range(self.limit)]
        if self.kind == "exponential":
            # MassTransit ExponentialRetryPolicy: min + 2^i * delta, capped at max.
            return [min(self.initial_s + (2**i) * self.increment_s, self.max_s)
                    for i in range(1, self.limit + 1)]
        return []



def incremental(limit: int, initial_s: float, increment_s: float) -> RetryPolicy:
    return RetryPolicy("incremental", limit, initial_s, increment_s)


@dataclass(frozen=True)
class BreakerPolicy:
    """MassTransit UseCircuitBreaker: TrackingPeriod, TripThreshold %, ActiveThreshold, Reset."""

    window_s: float
    trip_pct: float
    min_requests: int
    reset_s: float

    def spec(self) -> str:
        return f"{_s(self.window_s)}:{self.trip_pct!r}:{self.min_requests}:{_s(self.reset_s)}"



@dataclass(frozen=True)
class RateLimit:
    """MassTransit UseRateLimit: at most ``count`` messages per ``interval_s``."""

    count: int
    interval_s: float

    def spec(self) -> str:
        return f"{self.count}/{_s(self.interval_s)}"

    @property
    def per_second(self) -> float:
        return self.count / self.interval_s


@dataclass(frozen=True)
class ServiceTime:
    """Simulated work per message, so capacity experiments have a known service time."""

    distribution: Distribution = "fixed"
    mean_s: float = 0.0
    sigma: float = 0.5  # lognormal shape (sigma of the underlying normal)

    def sample_s(self, rng: random.Random) -> float:
        if self.mean_s <= 0:
            return 0.0
        if self.distribution == "exponential":
            return rng.expovariate(1.0 / self.mean_s)
        if self.distribution == "lognormal":
            mu = math.log(self.mean_s) - self.sigma**2 / 2  # so the mean is mean_s
            return rng.lognormvariate(mu, self.sigma)
        return self.mean_s

    def spec(self) -> str:
        base = f"{self.distribution}:{_s(self.mean_s)}"
        return base + (f":{self.sigma!r}" if self.distribution == "lognormal" else "")

    @property
    def scv(self) -> float:
        """Squared coefficient of variation (variance / mean^2): 0 fixed, 1 exponential."""
        if self.distribution == "exponential":
            return 1.0
        if self.distribution == "lognormal":
            return math.exp(self.sigma**2) - 1.0
        return 0.0



def parse_service_time(text: str) -> ServiceTime:
    """'fixed:20ms', 'exponential:50ms', 'lognormal:200ms:0.6', '20ms', '0'."""
    parts = str(text).split(":")
    try:
        if len(parts) == 1:
            return ServiceTime("fixed", parse_duration_s(parts[0]))
        dist = {"exp": "exponential"}.get(parts[0], parts[0])
        if dist not in ("fixed", "exponential", "lognormal") or len(parts) > 3 or \
                (len(parts) == 3 and dist != "lognormal"):
            raise UnitError("")
        sigma = float(parts[2]) if len(parts) == 3 else 0.5
        if not 0 < sigma <= 5:
            raise UnitError("")
        return ServiceTime(dist, parse_duration_s(parts[1]), sigma)  # type: ignore[arg-type]
    except (UnitError, ValueError):
        raise ConfigError(
            f"service_time: expected fixed:20ms, exponential:50ms or lognormal:200ms:0.6, "
            f"got {text!r}") from None


def parse_retry(text: str) -> RetryPolicy:
    """'none', 'immediate:3', 'incremental:3:2s:5s', 'exponential:3:1s:30s:2s'."""
    p = str(text).split(":")
    try:
        policy: RetryPolicy | None = None
        if p == ["none"]:
            policy = RetryPolicy()
        elif p[0] == "immediate" and len(p) == 2:
            policy = RetryPolicy("immediate", int(p[1]))
        elif p[0] == "incremental" and len(p) == 4:
            policy = incremental(int(p[1]), parse_duration_s(p[2]), parse_duration_s(p[3]))
        elif p[0] == "exponential" and len(p) == 5:
            policy = RetryPolicy("exponential", int(p[1]), parse_duration_s(p[2]),
                                 parse_duration_s(p[4]), parse_duration_s(p[3]))
        if policy is not None and 0 <= policy.limit <= 100:
            return policy
    except (UnitError, ValueError):
        pass
    raise ConfigError(f"retry: expected none, immediate:N, incremental:N:2s:5s or "
                      f"exponential:N:min:max:delta (N up to 100), got {text!r}")


def parse_breaker(text: str) -> BreakerPolicy | None:
    """'none' or 'window:trip%:min_requests:reset', e.g. '1m:15:10:5m'."""
    if str(text) == "none":
        return None
    p = str(text).split(":")
    try:
        if len(p) == 4:
            b = BreakerPolicy(parse_duration_s(p[0]), float(p[1]), int(p[2]),
                              parse_duration_s(p[3]))
            if 0 < b.trip_pct <= 100 and b.window_s > 0 and b.min_requests >= 1:
                return b
    except (UnitError, ValueError):
        pass
    raise ConfigError(f"breaker: expected none or window:trip%:min_requests:reset "
                      f"(e.g. 1m:15:10:5m), got {text!r}")


def parse_rate_limit(text: str) -> RateLimit | None:
    """'none' or 'count/interval', e.g. '100/1s'."""
    if str(text) == "none":
        return None
    count, _, interval = str(text).partition("/")
    try:
        r = RateLimit(int(count), parse_duration_s(interval or "1s"))
        if r.count >= 1 and r.interval_s > 0:
            return r
    except (UnitError, ValueError):
        pass
    raise ConfigError(f"rate_limit: expected none or count/interval (e.g. 100/1s), got {text!r}")
