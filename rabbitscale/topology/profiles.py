"""A system as data: message types, the receive endpoints that consume them, the task kinds
that enter it, the SLO thresholds a run holds it to.

Every room reads the same objects: the reference stack declares, consumes and serves them,
the load generator builds its messages and requests from them, the capacity model plans them,
doctor audits a broker against them. They come from profile files (topology/profile_file.py;
the built-in ones are files too, in topology/profiles/), never from code: no system's queue,
message or route is spelled outside its file.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from rabbitscale.core.errors import ConfigError
from rabbitscale.topology import naming
from rabbitscale.topology.policy import BreakerPolicy, RateLimit, RetryPolicy, ServiceTime
from rabbitscale.topology.settings import RabbitSettings
from rabbitscale.topology.template import Template

QUORUM = "quorum"
STREAMS = ("tasks", "webhooks")  # the arrival streams a task kind can belong to
# the plan's work per message where a profile gives none: a stated assumption, labelled so
DEFAULT_ASSUMED_SERVICE_TIME_S = 0.5


@dataclass(frozen=True)
class MessageType:
    """A message type as MassTransit puts it on the wire: its URN (then the base types and
    interfaces it implements, in ``messageType``), the fanout exchange it is published to, the
    property per-key order is kept by, and a body template (``${...}`` placeholders)."""

    name: str
    urn: str
    exchange: str
    implements: tuple[str, ...] = ()  # URNs
    key: str | None = None
    task: str | None = None  # the property holding the task's id
    body: Template | None = None
    size_bytes: int | None = None  # fixed size; else the run's --payload-size (${pad})
    enums: Mapping[str, tuple[str, ...]] = field(default_factory=dict)  # property -> names

    @property
    def urns(self) -> tuple[str, ...]:
        return (self.urn, *self.implements)


@dataclass(frozen=True)
class Callbacks:
    """Messages an endpoint publishes while it processes a message that carries a callback
    URL (ConduitLLM calls a task's webhook when it starts, completes, fails): the message type
    published, the event of each moment (None: not published) and the ``request`` template the
    published type's body is rendered with."""

    url: str  # property of the consumed message holding the URL
    publish: str  # message type published
    started: str | None
    completed: str | None
    failed: str | None
    request: Template

    def event(self, moment: str) -> str | None:
        return {"started": self.started, "completed": self.completed,
                "failed": self.failed}[moment]


@dataclass(frozen=True)
class Delivery:
    """The endpoint's work is an HTTP POST per message (webhook delivery): where the URL, the
    payload, extra headers, the event and the task id are in the message."""

    url: str
    payload: str | None = None
    headers: str | None = None
    event: str | None = None
    task: str | None = None
    progress_events: tuple[str, ...] = ()  # events sent with X-Webhook-Type: progress


@dataclass(frozen=True)
class Endpoint:
    """One receive endpoint: its queue, its exchanges, and the consumer's policies.

    ``prefetch`` / ``concurrency`` / ``partitions`` left as None take the bus-wide settings
    (PrefetchCount, ConcurrentMessageLimit, PartitionCount). ``service_time`` None means "not
    configured": the reference stack does no simulated work and the plan uses
    ``assumed_service_time_s`` (a stated assumption); a configured 0 means no work, in both.
    """

    queue: str
    consumes: tuple[str, ...]  # message type names
    queue_type: str = QUORUM
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
    assumed_service_time_s: float | None = None
    webhook_prefetch: bool = False  # CONDUITLLM__WEBHOOKPREFETCHCOUNT applies here
    callbacks: Callbacks | None = None
    delivery: Delivery | None = None
    idempotent: bool = True  # duplicates do no harm (judged only where this is False)
    consumer_types: tuple[str, ...] = ()  # MassTransit's consumer class names (meters)

    @property
    def message_type(self) -> str:
        """The first message type it consumes (most endpoints consume one)."""
        return self.consumes[0]

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
    def overflow(self) -> str:
        return str(self.queue_arguments.get("x-overflow", "drop-head"))

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
        return {"x-queue-type": self.queue_type, **dict(self.queue_arguments)}

    def planned_service_time_s(self) -> float:
        """Work per attempt the plan uses: the configured one, else the stated assumption."""
        if self.service_time is not None:
            return self.service_time.mean_s
        if self.assumed_service_time_s is not None:
            return self.assumed_service_time_s
        return DEFAULT_ASSUMED_SERVICE_TIME_S


@dataclass(frozen=True)
class Field:
    """One field of a route's request body, as the reference API validates it."""

    name: str
    type: str  # string | integer | number | boolean | url | headers | object | any
    required: bool = False
    default: Any = None
    min: float | None = None
    max: float | None = None
    min_length: int | None = None
    max_length: int | None = None


@dataclass(frozen=True)
class Route:
    """How a task enters over HTTP: the route, the request body the load generator sends (a
    template), the fields the reference API accepts, where a callback URL goes."""

    path: str
    method: str = "POST"
    auth: str = "bearer"
    request: Template | None = None
    fields: tuple[Field, ...] = ()
    callback: str | None = None  # request field carrying the callback URL
    id_field: str | None = None  # request field that, when given, is the task's id
    status: str = "queued"  # the task's status when accepted
    id: str = "task_id"  # response property with the system's id of the task
    poll: str | None = None  # GET path of a task's status, "{id}" replaced


@dataclass(frozen=True)
class TaskKind:
    """What a load generator asks the system to do: a message published, through a route or
    straight to the broker."""

    name: str
    message: str
    stream: str = "tasks"
    weight: float = 0.0  # share in the default mix
    route: Route | None = None

    @property
    def calls_back(self) -> bool:
        """Its tasks ask the system to call back: a webhook (its URL), or a route with a
        callback field."""
        return self.stream == "webhooks" or (self.route is not None and
                                             self.route.callback is not None)


@dataclass(frozen=True)
class Profile:
    """``pooled_publisher``: publish over a pool of MinConnections..MaxConnections connections,
    as the scaling guide describes; otherwise over one connection, as MassTransit does.
    ``spec`` is the data the profile was built from (a run records it, a child process
    rebuilds the profile from it): change a profile with ``profile_file.apply_overrides``,
    never ``dataclasses.replace``, or the spec and the profile part."""

    name: str
    description: str
    endpoints: tuple[Endpoint, ...]
    messages: Mapping[str, MessageType] = field(default_factory=dict)
    tasks: Mapping[str, TaskKind] = field(default_factory=dict)
    pooled_publisher: bool = False
    thresholds: Mapping[str, float | list[str]] = field(default_factory=dict)
    spec: Mapping[str, Any] = field(default_factory=dict, compare=False, repr=False)
    estimates: Mapping[str, str] = field(default_factory=dict)  # figure -> where it came from
    guide: bool = False  # the scaling guide's system (plan: the guide's figures and targets)
    plan_instances: int | None = None  # [plan] defaults, e.g. what discover saw
    plan_task_rate_per_s: float | None = None

    # --- lookups ------------------------------------------------------------------------------

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

    def consumers_of(self, message_type: str) -> tuple[Endpoint, ...]:
        """Every endpoint a message of this type reaches (its exchange fans out to each)."""
        return tuple(ep for ep in self.endpoints if message_type in ep.consumes)

    def fanout(self, message_type: str) -> int:
        """Queues one message of this type lands in: a ledger counts it once in each."""
        return len(self.consumers_of(message_type))

    def for_type(self, message_type: str) -> Endpoint:
        found = self.consumers_of(message_type)
        if not found:
            raise ConfigError(f"profile {self.name}: no endpoint consumes {message_type!r}")
        return found[0]

    def message(self, name: str) -> MessageType:
        try:
            return self.messages[name]
        except KeyError:
            raise ConfigError(f"profile {self.name}: no message type {name!r}") from None

    def task(self, kind: str) -> TaskKind:
        try:
            return self.tasks[kind]
        except KeyError:
            raise ConfigError(f"profile {self.name}: no task kind {kind!r} (has "
                              f"{', '.join(self.tasks) or 'none'})") from None

    def kinds(self, stream: str | None = None) -> tuple[str, ...]:
        return tuple(k for k, t in self.tasks.items() if stream is None or t.stream == stream)

    @property
    def default_mix(self) -> dict[str, float]:
        """The task stream's default mix: the weights of the profile's task kinds, else every
        kind of the task stream at an equal share."""
        mix = {k: t.weight for k, t in self.tasks.items() if t.stream == "tasks" and t.weight}
        return mix or dict.fromkeys(self.kinds("tasks"), 1.0)

    @property
    def webhook_kind(self) -> str | None:
        """The task kind the webhooks stream sends (None: the system takes no webhooks)."""
        found = self.kinds("webhooks")
        return found[0] if found else None

    def queues_of(self, kind: str) -> tuple[str, ...]:
        return tuple(ep.queue for ep in self.consumers_of(self.task(kind).message))

    def resolved(self, settings: RabbitSettings) -> Profile:
        """Bus-wide defaults filled in. The spec stays the profile's own: resolving it again
        with the same settings (a child process does) gives the same endpoints."""
        return dataclasses.replace(
            self, endpoints=tuple(ep.resolved(settings) for ep in self.endpoints))
