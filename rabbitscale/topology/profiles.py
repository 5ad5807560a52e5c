"""Receive endpoints and the profiles that group them.

Profile ``conduit`` reproduces the eight receive endpoints of conduit-topology.md; profile
``guide`` the three queue classes of the scaling guide. Both are plain data: the consumer, the
capacity model, doctor and the reports read the same objects.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from rabbitscale.core.errors import ConfigError
from rabbitscale.topology import naming
from rabbitscale.topology.policy import (
    BreakerPolicy,
    RateLimit,
    RetryPolicy,
    ServiceTime,
    incremental,
)
from rabbitscale.topology.settings import RabbitSettings

QUEUE_TYPE = "quorum"  # every receive endpoint of ConduitLLM is a quorum queue

# Work per message where a profile configures none: the plan's stated assumptions (the guide's
# "each partition handles ~2-3 messages/second" gives 0.4 s for generation work), and the
# simulated work of profile `realistic`, so the demo's report compares like with like.
ASSUMED_SERVICE_TIME_S = {
    "webhook-delivery": 0.2, "video-generation-events": 0.4, "image-generation-events": 0.4,
    "spend-update-events": 0.02, "media-retention-checks": 0.5, "media-cleanup-batches": 1.0,
    "r2-batch-operations": 1.0, "media-cleanup-schedule": 1.0,
}
ASSUMED_SERVICE_TIME_OTHER_S = 0.5
# generation calls to an upstream model fail now and then; the retry policy absorbs them
ASSUMED_FAILURE_PROBABILITY = {"video-generation-events": 0.005,
                               "image-generation-events": 0.005}


@dataclass(frozen=True)
class Endpoint:
    """One receive endpoint: a quorum queue, its exchanges, and the consumer's policies.

    ``prefetch`` / ``concurrency`` / ``partitions`` left as None take the bus-wide settings
    (PrefetchCount, ConcurrentMessageLimit, PartitionCount), as ConduitLLM's defaults do.
    ``service_time`` None means "not configured": the stack does no simulated work and the
    plan uses its stated assumption; a configured 0 means no work, in both.
    """

    queue: str
    message_type: str
    key_field: str | None  # the message property orders are kept by (read case-insensitively)
    prefetch: int | None = None
    concurrency: int | None = None
    queue_arguments: Mapping[str, Any] = field(default_factory=dict)
    retry: RetryPolicy = RetryPolicy()
    breaker: BreakerPolicy | None = None
    rate_limit: RateLimit | None = None
    partitioned: bool = False
    partitions: int | None = None
    service_time: ServiceTime | None = None
    failure_probability: float = 0.0
    webhook_prefetch: bool = False  # CONDUITLLM__WEBHOOKPREFETCHCOUNT applies here

    @property
    def error_queue(self) -> str:
        return naming.error_queue(self.queue)

    @property
    def skipped_queue(self) -> str:
        return naming.skipped_queue(self.queue)

    @property
    def single_active_consumer(self) -> bool:
        return self.queue_arguments.get("x-single-active-consumer") is True

    @property
    def max_length(self) -> int | None:
        value = self.queue_arguments.get("x-max-length")
        return int(value) if value is not None else None

    @property
    def ordered(self) -> bool:
        """One message at a time on one consumer: what per-key order needs."""
        return self.single_active_consumer and self.concurrency == 1

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
        return {"x-queue-type": QUEUE_TYPE, **dict(self.queue_arguments)}


@dataclass(frozen=True)
class Profile:
    """``pooled_publisher``: publish over a pool of MinConnections..MaxConnections
    connections, as the guide describes; otherwise over one connection, as MassTransit does
    (ConduitLLM reads neither setting: one connection per bus)."""

    name: str
    description: str
    endpoints: tuple[Endpoint, ...]
    pooled_publisher: bool = False

    def publisher_connections(self, settings: RabbitSettings) -> tuple[int, int]:
        """(opened at start, at most) publisher connections per process."""
        if self.pooled_publisher:
            return settings.min_connections, settings.max_connections
        return 1, 1

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


def _ep(queue: str, type_name: str, key: str | None, **kw: Any) -> Endpoint:
    return Endpoint(queue=queue, message_type=type_name, key_field=key, **kw)


CONDUIT = Profile(
    name="conduit",
    description="The eight receive endpoints of ConduitLLM (conduit-topology.md).",
    endpoints=(
        _ep("webhook-delivery", "WebhookDeliveryRequested", "taskId",
            prefetch=100, concurrency=75, webhook_prefetch=True,
            queue_arguments={"x-delivery-limit": 10, "x-max-length": 50000,
                             "x-overflow": "reject-publish"},
            retry=RetryPolicy("exponential", 3, 1.0, 2.0, 30.0),
            breaker=BreakerPolicy(60, 15, 10, 300), rate_limit=RateLimit(100, 1.0)),
        _ep("video-generation-events", "VideoGenerationRequested", "virtualKeyId",
            retry=incremental(3, 2.0, 5.0), breaker=BreakerPolicy(120, 20, 5, 600)),
        _ep("image-generation-events", "ImageGenerationRequested", "virtualKeyId",
            queue_arguments={"x-single-active-consumer": True},
            retry=incremental(3, 1.0, 3.0), breaker=BreakerPolicy(60, 15, 5, 300)),
        _ep("spend-update-events", "SpendUpdateRequested", "keyId",
            prefetch=10, concurrency=1,
            queue_arguments={"x-single-active-consumer": True, "x-max-length": 10000},
            retry=RetryPolicy("immediate", 3)),
        _ep("media-retention-checks", "MediaRetentionCheckRequested", "virtualKeyId",
            prefetch=5, concurrency=3, queue_arguments={"x-max-length": 1000},
            retry=incremental(3, 2.0, 5.0), breaker=BreakerPolicy(120, 15, 5, 600)),
        _ep("media-cleanup-batches", "MediaCleanupBatchRequested", "virtualKeyId",
            prefetch=10, concurrency=5, retry=RetryPolicy("immediate", 2)),
        _ep("r2-batch-operations", "R2BatchOperationRequested", "virtualKeyId",
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
    pooled_publisher=True,  # "Connection pooling: 5 connections"
    endpoints=(
        _ep("webhook-delivery", "WebhookDeliveryRequested", "taskId",
            prefetch=100, concurrency=75, webhook_prefetch=True,
            queue_arguments={"x-max-length": 50000, "x-overflow": "reject-publish"},
            retry=RetryPolicy("exponential", 3, 1.0, 2.0, 30.0),
            breaker=BreakerPolicy(60, 15, 10, 300), rate_limit=RateLimit(100, 1.0)),
        # "Single active consumer for ordering" + ConcurrentLimit 50 + PartitionCount 30:
        # the guide orders per virtual key through the partitioner.
        _ep("video-generation-events", "VideoGenerationRequested", "virtualKeyId",
            queue_arguments={"x-single-active-consumer": True}, partitioned=True,
            retry=incremental(3, 2.0, 5.0), breaker=BreakerPolicy(120, 20, 5, 600)),
        _ep("image-generation-events", "ImageGenerationRequested", "virtualKeyId",
            queue_arguments={"x-single-active-consumer": True}, partitioned=True,
            retry=incremental(3, 2.0, 5.0), breaker=BreakerPolicy(120, 20, 5, 600)),
        _ep("spend-update-events", "SpendUpdateRequested", "keyId",
            prefetch=10, concurrency=1,
            queue_arguments={"x-single-active-consumer": True, "x-max-length": 10000},
            retry=RetryPolicy("immediate", 3)),
    ),
)

def _realistic(base: Profile) -> Profile:
    """``base`` doing the plan's assumed work: lognormal service times around the assumed
    means (webhooks: the assumed time plus the real POST), the assumed failure rates."""
    return dataclasses.replace(base, name="realistic", description=(
        "conduit's topology with the plan's assumed service times (lognormal) and failure "
        "rates: what `make demo` runs, so the model is compared on real work."),
        endpoints=tuple(dataclasses.replace(
            ep, service_time=ServiceTime("lognormal", ASSUMED_SERVICE_TIME_S.get(
                ep.queue, ASSUMED_SERVICE_TIME_OTHER_S), 0.5),
            failure_probability=ASSUMED_FAILURE_PROBABILITY.get(ep.queue, 0.0))
            for ep in base.endpoints))


REALISTIC = _realistic(CONDUIT)
PROFILES: dict[str, Profile] = {p.name: p for p in (CONDUIT, GUIDE, REALISTIC)}


def get_profile(name: str) -> Profile:
    try:
        return PROFILES[name]
    except KeyError:
        raise ConfigError(f"unknown profile {name!r} (known: {', '.join(PROFILES)})") from None
