"""Receive endpoints, their policies, and MassTransit's exchange topology on the broker.

Profile ``conduit`` reproduces the eight receive endpoints of conduit-topology.md; profile
``guide`` the three queue classes of the scaling guide. Both are plain data: the consumer, the
capacity model and the reports read the same objects, so a setting means one thing everywhere.
"""

from __future__ import annotations

import dataclasses
import math
import random
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from rabbitscale.core.units import UnitError, parse_duration_s
from rabbitscale.harness.config import ConfigError, RabbitSettings, load_settings, read_profile_file

NAMESPACE = "ConduitLLM.Core.Events"
COMPLETIONS_EXCHANGE = "rabbitscale.completions"


def message_urn(type_name: str) -> str:
    """MassTransit message-type URN: urn:message:Namespace:TypeName."""
    return f"urn:message:{NAMESPACE}:{type_name}"


def type_exchange(type_name: str) -> str:
    """MassTransit publish topology: one fanout exchange per message type, Namespace:TypeName."""
    return f"{NAMESPACE}:{type_name}"


# ---------------------------------------------------------------------------------------------
# Policies


@dataclass(frozen=True)
class RetryPolicy:
    """MassTransit UseMessageRetry: in-memory retries while the message stays unacked."""

    kind: Literal["none", "immediate", "incremental", "exponential"] = "none"
    limit: int = 0
    initial_s: float = 0.0
    increment_s: float = 0.0
    max_s: float = 0.0

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

    def describe(self) -> str:
        if self.kind == "none":
            return "none"
        if self.kind == "immediate":
            return f"immediate({self.limit})"
        if self.kind == "incremental":
            return f"incremental({self.limit}, {self.initial_s:g}s, +{self.increment_s:g}s)"
        return (f"exponential({self.limit}, {self.initial_s:g}s..{self.max_s:g}s, "
                f"+{self.increment_s:g}s)")


@dataclass(frozen=True)
class BreakerPolicy:
    """MassTransit UseCircuitBreaker: TrackingPeriod, TripThreshold %, ActiveThreshold, Reset."""

    window_s: float
    trip_pct: float
    min_requests: int
    reset_s: float

    def describe(self) -> str:
        return (f"{self.window_s:g}s / {self.trip_pct:g}% / {self.min_requests} / "
                f"{self.reset_s:g}s")


@dataclass(frozen=True)
class RateLimit:
    """MassTransit UseRateLimit: at most ``count`` messages per ``interval_s``."""

    count: int
    interval_s: float

    @property
    def per_second(self) -> float:
        return self.count / self.interval_s


@dataclass(frozen=True)
class ServiceTime:
    """Simulated work per message, so capacity experiments have a known service time."""

    distribution: Literal["fixed", "exponential", "lognormal"] = "fixed"
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

    def describe(self) -> str:
        base = f"{self.distribution}:{self.mean_s * 1000:g}ms"
        return base + (f":{self.sigma:g}" if self.distribution == "lognormal" else "")


# ---------------------------------------------------------------------------------------------
# Endpoints and profiles


@dataclass(frozen=True)
class Endpoint:
    """One receive endpoint: a quorum queue, its exchanges, and the consumer's policies.

    ``prefetch`` / ``concurrency`` / ``partitions`` left as None take the bus-wide settings
    (PrefetchCount, ConcurrentMessageLimit, PartitionCount), as ConduitLLM's defaults do.
    """

    queue: str
    message_type: str
    key_field: str | None
    prefetch: int | None = None
    concurrency: int | None = None
    queue_arguments: Mapping[str, Any] = field(default_factory=dict)
    retry: RetryPolicy = RetryPolicy()
    breaker: BreakerPolicy | None = None
    rate_limit: RateLimit | None = None
    partitioned: bool = False
    partitions: int | None = None
    service_time: ServiceTime = ServiceTime()
    failure_probability: float = 0.0
    webhook_prefetch: bool = False  # CONDUITLLM__WEBHOOKPREFETCHCOUNT applies here

    @property
    def error_queue(self) -> str:
        return f"{self.queue}_error"

    @property
    def skipped_queue(self) -> str:
        return f"{self.queue}_skipped"

    @property
    def single_active_consumer(self) -> bool:
        return bool(self.queue_arguments.get("x-single-active-consumer"))

    @property
    def max_length(self) -> int | None:
        value = self.queue_arguments.get("x-max-length")
        return int(value) if value is not None else None

    def resolved(self, settings: RabbitSettings) -> Endpoint:
        """Fill defaults from the bus-wide settings."""
        prefetch = self.prefetch if self.prefetch is not None else settings.prefetch_count
        if self.webhook_prefetch and settings.webhook_prefetch_count is not None:
            prefetch = settings.webhook_prefetch_count
        return dataclasses.replace(
            self,
            prefetch=prefetch,
            concurrency=(self.concurrency if self.concurrency is not None
                         else settings.concurrent_message_limit),
            partitions=(self.partitions if self.partitions is not None
                        else settings.partition_count) if self.partitioned else None,
        )

    def declared_arguments(self) -> dict[str, Any]:
        return {"x-queue-type": "quorum", **dict(self.queue_arguments)}


@dataclass(frozen=True)
class Profile:
    name: str
    description: str
    endpoints: tuple[Endpoint, ...]

    def endpoint(self, queue: str) -> Endpoint:
        for ep in self.endpoints:
            if ep.queue == queue:
                return ep
        raise ConfigError(f"profile {self.name}: no endpoint named {queue!r}")

    def for_type(self, message_type: str) -> Endpoint:
        for ep in self.endpoints:
            if ep.message_type == message_type:
                return ep
        raise ConfigError(f"profile {self.name}: no endpoint consumes {message_type!r}")

    def resolved(self, settings: RabbitSettings) -> Profile:
        return dataclasses.replace(
            self, endpoints=tuple(ep.resolved(settings) for ep in self.endpoints))

    def findings(self, settings: RabbitSettings) -> list[str]:
        """Where a setting has no effect or contradicts another one in this profile."""
        out: list[str] = []
        resolved = self.resolved(settings)
        if not any(ep.partitioned for ep in resolved.endpoints):
            out.append(f"PartitionCount={settings.partition_count} has no effect: no endpoint "
                       f"of profile {self.name!r} uses a partitioner")
        for ep in resolved.endpoints:
            if ep.single_active_consumer and (ep.concurrency or 1) > 1 and not ep.partitioned:
                out.append(f"{ep.queue}: single-active-consumer with concurrency "
                           f"{ep.concurrency} does not keep order: up to {ep.concurrency} "
                           f"messages run at once in the active consumer")
            if ep.single_active_consumer:
                out.append(f"{ep.queue}: single-active-consumer: only one instance consumes; "
                           f"adding instances adds standby, not throughput")
            if ep.partitioned and ep.partitions and ep.prefetch and \
                    ep.partitions > ep.prefetch:
                out.append(f"{ep.queue}: {ep.partitions} partitions but prefetch {ep.prefetch}: "
                           f"at most {ep.prefetch} partitions can be busy at once; raising "
                           f"PartitionCount beyond prefetch adds no parallelism")
            if ep.partitioned and ep.partitions and ep.concurrency and \
                    ep.partitions < ep.concurrency:
                out.append(f"{ep.queue}: {ep.partitions} partitions cap concurrency "
                           f"{ep.concurrency} at {ep.partitions} messages at once")
            if ep.prefetch is not None and ep.concurrency is not None and \
                    ep.prefetch < ep.concurrency:
                out.append(f"{ep.queue}: prefetch {ep.prefetch} < concurrency "
                           f"{ep.concurrency}: at most {ep.prefetch} messages can run at once")
        return out


def _ep(queue: str, type_name: str, key: str | None, **kw: Any) -> Endpoint:
    return Endpoint(queue=queue, message_type=type_name, key_field=key, **kw)


def _incremental(limit: int, initial: float, inc: float) -> RetryPolicy:
    return RetryPolicy("incremental", limit, initial, inc)


CONDUIT = Profile(
    name="conduit",
    description="The eight receive endpoints of ConduitLLM (conduit-topology.md).",
    endpoints=(
        _ep("webhook-delivery", "WebhookDeliveryRequested", "TaskId",
            prefetch=100, concurrency=75, webhook_prefetch=True,
            queue_arguments={"x-delivery-limit": 10, "x-max-length": 50000,
                             "x-overflow": "reject-publish"},
            retry=RetryPolicy("exponential", 3, 1.0, 2.0, 30.0),
            breaker=BreakerPolicy(60, 15, 10, 300), rate_limit=RateLimit(100, 1.0)),
        _ep("video-generation-events", "VideoGenerationRequested", "VirtualKeyId",
            retry=_incremental(3, 2.0, 5.0), breaker=BreakerPolicy(120, 20, 5, 600)),
        _ep("image-generation-events", "ImageGenerationRequested", "VirtualKeyId",
            queue_arguments={"x-single-active-consumer": True},
            retry=_incremental(3, 1.0, 3.0), breaker=BreakerPolicy(60, 15, 5, 300)),
        _ep("spend-update-events", "SpendUpdateRequested", "KeyId",
            prefetch=10, concurrency=1,
            queue_arguments={"x-single-active-consumer": True, "x-max-length": 10000},
            retry=RetryPolicy("immediate", 3)),
        _ep("media-retention-checks", "MediaRetentionCheckRequested", "VirtualKeyId",
            prefetch=5, concurrency=3, queue_arguments={"x-max-length": 1000},
            retry=_incremental(3, 2.0, 5.0), breaker=BreakerPolicy(120, 15, 5, 600)),
        _ep("media-cleanup-batches", "MediaCleanupBatchRequested", "VirtualKeyId",
            prefetch=10, concurrency=5, retry=RetryPolicy("immediate", 2)),
        _ep("r2-batch-operations", "R2BatchOperationRequested", "VirtualKeyId",
            prefetch=2, concurrency=1,
            queue_arguments={"x-single-active-consumer": True, "x-max-length": 500},
            retry=RetryPolicy("exponential", 10, 5.0, 2.0, 600.0),
            breaker=BreakerPolicy(300, 20, 10, 900), rate_limit=RateLimit(5, 1.0)),
        _ep("media-cleanup-schedule", "MediaCleanupScheduleRequested", None,
            prefetch=1, concurrency=1, queue_arguments={"x-single-active-consumer": True},
            retry=RetryPolicy("immediate", 2)),
    ),
)

GUIDE = Profile(
    name="guide",
    description="The scaling guide's three queue classes, as the guide states them.",
    endpoints=(
        _ep("webhook-delivery", "WebhookDeliveryRequested", "TaskId",
            prefetch=100, concurrency=75, webhook_prefetch=True,
            queue_arguments={"x-max-length": 50000, "x-overflow": "reject-publish"},
            retry=RetryPolicy("exponential", 3, 1.0, 2.0, 30.0),
            breaker=BreakerPolicy(60, 15, 10, 300), rate_limit=RateLimit(100, 1.0)),
        # "Single active consumer for ordering" + ConcurrentLimit 50 + PartitionCount 30:
        # the guide orders per virtual key through the partitioner.
        _ep("video-generation-events", "VideoGenerationRequested", "VirtualKeyId",
            queue_arguments={"x-single-active-consumer": True}, partitioned=True,
            retry=_incremental(3, 2.0, 5.0), breaker=BreakerPolicy(120, 20, 5, 600)),
        _ep("image-generation-events", "ImageGenerationRequested", "VirtualKeyId",
            queue_arguments={"x-single-active-consumer": True}, partitioned=True,
            retry=_incremental(3, 2.0, 5.0), breaker=BreakerPolicy(120, 20, 5, 600)),
        _ep("spend-update-events", "SpendUpdateRequested", "KeyId",
            prefetch=10, concurrency=1,
            queue_arguments={"x-single-active-consumer": True, "x-max-length": 10000},
            retry=RetryPolicy("immediate", 3)),
    ),
)

PROFILES: dict[str, Profile] = {p.name: p for p in (CONDUIT, GUIDE)}


# ---------------------------------------------------------------------------------------------
# Overrides from a profile file


def parse_service_time(text: str) -> ServiceTime:
    """'fixed:20ms', 'exponential:50ms', 'lognormal:200ms:0.6', '0'."""
    parts = str(text).split(":")
    try:
        if len(parts) == 1:
            return ServiceTime("fixed", parse_duration_s(parts[0]))
        dist = {"exp": "exponential"}.get(parts[0], parts[0])
        if dist not in ("fixed", "exponential", "lognormal") or len(parts) > 3 or \
                (len(parts) == 3 and dist != "lognormal"):
            raise UnitError("")
        sigma = float(parts[2]) if len(parts) == 3 else 0.5
        if sigma <= 0:
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
        if p == ["none"]:
            return RetryPolicy()
        if p[0] == "immediate" and len(p) == 2:
            return RetryPolicy("immediate", int(p[1]))
        if p[0] == "incremental" and len(p) == 4:
            return _incremental(int(p[1]), parse_duration_s(p[2]), parse_duration_s(p[3]))
        if p[0] == "exponential" and len(p) == 5:
            return RetryPolicy("exponential", int(p[1]), parse_duration_s(p[2]),
                               parse_duration_s(p[4]), parse_duration_s(p[3]))
    except (UnitError, ValueError):
        pass
    raise ConfigError(f"retry: expected none, immediate:N, incremental:N:2s:5s or "
                      f"exponential:N:min:max:delta, got {text!r}")


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


def _positive_int(key: str, raw: Any, lo: int = 1) -> int:
    if isinstance(raw, bool) or not isinstance(raw, int) or raw < lo or raw > 65535:
        raise ConfigError(f"{key}: expected an integer between {lo} and 65535, got {raw!r}")
    return raw


def apply_overrides(profile: Profile, overrides: Mapping[str, Mapping[str, Any]],
                    source: str = "profile file") -> Profile:
    """Apply [endpoints.<queue>] tables from a profile file; unknown names are errors."""
    endpoints = {ep.queue: ep for ep in profile.endpoints}
    for queue, table in overrides.items():
        if queue not in endpoints:
            raise ConfigError(f"{source}: endpoints.{queue}: profile {profile.name!r} has no "
                              f"such endpoint (has {', '.join(endpoints)})")
        changes: dict[str, Any] = {}
        for key, raw in table.items():
            where = f"{source}: endpoints.{queue}.{key}"
            try:
                if key == "prefetch":
                    changes["prefetch"] = _positive_int(where, raw)
                elif key == "concurrency":
                    changes["concurrency"] = _positive_int(where, raw)
                elif key == "partitions":
                    n = _positive_int(where, raw, lo=0)
                    changes["partitioned"] = n > 0
                    changes["partitions"] = n or None
                elif key == "service_time":
                    changes["service_time"] = parse_service_time(raw)
                elif key == "failure_probability":
                    if isinstance(raw, bool) or not isinstance(raw, int | float) \
                            or not 0 <= raw <= 1:
                        raise ConfigError(f"expected a number between 0 and 1, got {raw!r}")
                    changes["failure_probability"] = float(raw)
                elif key == "retry":
                    changes["retry"] = parse_retry(raw)
                elif key == "breaker":
                    changes["breaker"] = parse_breaker(raw)
                elif key == "rate_limit":
                    changes["rate_limit"] = parse_rate_limit(raw)
                elif key == "queue_arguments":
                    if not isinstance(raw, dict):
                        raise ConfigError("expected a table")
                    changes["queue_arguments"] = dict(raw)
                else:
                    raise ConfigError("unknown setting")
            except ConfigError as exc:
                msg = str(exc)
                raise ConfigError(msg if msg.startswith(source) else f"{where}: {msg}") \
                    from None
        endpoints[queue] = dataclasses.replace(endpoints[queue], **changes)
    return dataclasses.replace(profile, endpoints=tuple(endpoints.values()))


def get_profile(name: str) -> Profile:
    try:
        return PROFILES[name]
    except KeyError:
        raise ConfigError(f"unknown profile {name!r} (known: {', '.join(PROFILES)})") from None


def load_stack_config(profile_name: str | None, profile_file: str | None,
                      environ: dict[str, str] | None = None) -> tuple[RabbitSettings, Profile]:
    """Settings and profile from defaults, a profile file and the environment."""
    pf = read_profile_file(profile_file) if profile_file else None
    settings = load_settings(pf, environ)
    profile = get_profile(profile_name or (pf.profile if pf and pf.profile else "conduit"))
    if pf:
        profile = apply_overrides(profile, pf.endpoints, str(pf.path))
    return settings, profile


# ---------------------------------------------------------------------------------------------
# Declaration on the broker


async def declare(channel: Any, profile: Profile) -> None:
    """Declare the profile idempotently with MassTransit's exchange topology.

    message-type fanout exchange -> endpoint fanout exchange -> quorum queue, plus
    ``<queue>_error`` and ``<queue>_skipped`` (exchange + queue), and the completions exchange
    the stack reports finished work on. Re-declaring with other queue arguments fails with
    the broker's PRECONDITION_FAILED, which is raised as a one-line ConfigError.
    """
    import aio_pika
    from aiormq.exceptions import ChannelPreconditionFailed

    fanout = aio_pika.ExchangeType.FANOUT
    try:
        for ep in profile.endpoints:
            q = await channel.declare_queue(ep.queue, durable=True,
                                            arguments=ep.declared_arguments())
            ex = await channel.declare_exchange(ep.queue, fanout, durable=True)
            await q.bind(ex)
            tx = await channel.declare_exchange(type_exchange(ep.message_type), fanout,
                                                durable=True)
            await ex.bind(tx)
            for side in (ep.error_queue, ep.skipped_queue):
                sq = await channel.declare_queue(side, durable=True,
                                                 arguments={"x-queue-type": "quorum"})
                sx = await channel.declare_exchange(side, fanout, durable=True)
                await sq.bind(sx)
        await channel.declare_exchange(COMPLETIONS_EXCHANGE, fanout, durable=True)
    except ChannelPreconditionFailed as exc:
        raise ConfigError(f"broker refused the topology of profile {profile.name!r} "
                          f"(a queue exists with other arguments; delete it or use another "
                          f"vhost): {exc}") from None
