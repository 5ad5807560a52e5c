"""Profile files: a system described as data (docs/profile-format.md), read, checked and turned
into the ``Profile`` every room uses.

A file may ``extends`` another profile (a built-in name such as ``conduit``, or a path): its
tables are merged over the other's, key by key, and an endpoint or task kind with
``remove = true`` is dropped. Today's short files still work: ``profile = "conduit"`` and
``[endpoints.QUEUE]`` tables of settings. The merged data is checked once against the schema
(``ProfileModel``, pydantic, which also gives the JSON Schema): a bad file is one line naming
the key and the form it expects. The merged data is also what a run records and what a child
process (a consumer, a Locust worker) rebuilds the profile from (``profile_spec``), so every
process runs the one profile.
"""

from __future__ import annotations

import copy
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from rabbitscale.core import thresholds
from rabbitscale.core.errors import ConfigError
from rabbitscale.core.units import parse_duration_s, parse_rate_per_s, parse_size_bytes
from rabbitscale.topology import naming, profiles
from rabbitscale.topology.policy import (
    parse_breaker,
    parse_rate_limit,
    parse_retry,
    parse_service_time,
)
from rabbitscale.topology.template import compile_template

BUILTIN_DIR = Path(__file__).resolve().parent / "profiles"
PROFILE_ENV = "RABBITSCALE_PROFILE_SPEC"  # a resolved profile handed to a child process
DEFAULT_PROFILE = "conduit"  # the scaling guide's system, when no profile is named
MAX_LENGTH_LIMIT = 2**31 - 1
# variables a template may use, by where it is rendered
MESSAGE_VARS = {"task_id", "key_id", "key", "now", "uuid", "amount", "pad", "callback",
                "request", "event", "status", "task_type", "error", "message"}
REQUEST_VARS = {"task_id", "key_id", "key", "now", "uuid", "amount", "pad", "callback"}
CALLBACK_VARS = {"message", "event", "status", "error", "task_id", "now", "uuid",
                 "message_id"}


class _Strict(BaseModel):
    # inf and nan are no value anywhere in a profile (weight = inf, failure_probability = nan)
    model_config = ConfigDict(extra="forbid", populate_by_name=True, allow_inf_nan=False)


def _checked(parse: Any, text: Any, what: str) -> Any:
    try:
        return parse(text)
    except (ConfigError, ValueError) as exc:
        raise ValueError(str(exc) or f"not {what}") from None


Duration = Annotated[str | float, Field(description="a duration: 20ms, 2s, 5m")]
Size = Annotated[str | int, Field(description="a size in bytes: 1000, 10KB, 10KiB")]


class MessageModel(_Strict):
    """A message type: ``[messages.TypeName]``."""

    namespace: str | None = Field(None, description="default: the file's namespace")
    urn: str | None = Field(None, description="default urn:message:NAMESPACE:TypeName")
    exchange: str | None = Field(None, description="default NAMESPACE:TypeName (MassTransit's "
                                                   "publish topology)")
    implements: list[str] = Field([], description="base types and interfaces MassTransit "
                                                  "lists after the type (names or URNs)")
    key: str | None = Field(None, description="the property per-key order is kept by")
    task: str | None = Field(None, description="the property holding the task's id (the "
                                               "reference API reports the task's status)")
    size: Size | None = Field(None, description="a fixed size (default: the run's "
                                                "--payload-size); ${pad} in the body (or the "
                                                "route's request) is filled to reach it")
    enums: dict[str, list[str]] = Field({}, description="properties sent as an enum's "
                                                        "number: property = [names in order]")
    body: dict[str, Any] = Field({}, description="the message body, with ${...} placeholders")

    @field_validator("size")
    @classmethod
    def _size(cls, v: Any) -> Any:
        return None if v is None else _checked(parse_size_bytes, v, "a size")


class CallbacksModel(_Strict):
    url: str = Field(description="property of the consumed message holding the URL")
    publish: str = Field(description="message type published for each event")
    started: str | None = Field(None, description="event published when processing starts")
    completed: str | None = Field(None, description="event published when it completes")
    failed: str | None = Field(None, description="event published when it faults")
    request: dict[str, Any] = Field(description="what the published type's body is rendered "
                                                "with (as ${request.*})")


class DeliveryModel(_Strict):
    url: str = Field(description="property holding the URL to POST to")
    payload: str | None = Field(None, description="property holding the body (JSON text)")
    headers: str | None = Field(None, description="property holding extra headers")
    event: str | None = Field(None, description="property holding the event")
    task: str | None = Field(None, description="property holding the task id")
    progress_events: list[str] = Field([], description="events that are progress, not an "
                                                       "end (X-Webhook-Type: progress)")


QueueType = Literal["quorum", "classic", "stream"]


class EndpointModel(_Strict):
    """A receive endpoint: ``[endpoints.QUEUE]``."""

    remove: bool = Field(False, description="drop this endpoint of the extended profile")
    consumes: list[str] | None = Field(None, description="message types it consumes")
    queue_type: QueueType | None = None
    arguments: dict[str, Any] | None = Field(None, alias="queue_arguments",
                                             description="queue arguments (x-max-length, ...)")
    prefetch: int | None = Field(None, ge=1, le=65535)
    concurrency: int | None = Field(None, ge=1, le=65535)
    partitions: int | None = Field(None, ge=0, le=65535,
                                   description="> 0 adds a partitioner of that many partitions "
                                               "keyed on the ordering key")
    partitioner: bool | None = Field(None, description="a partitioner of the bus's "
                                                       "PartitionCount partitions")
    retry: str | None = Field(None, description="none | immediate:N | incremental:N:2s:5s | "
                                                "exponential:N:min:max:delta")
    breaker: str | None = Field(None, description="none | window:trip%:min_requests:reset")
    rate_limit: str | None = Field(None, description="none | count/interval, e.g. 100/1s")
    service_time: str | None = Field(None, description="fixed:20ms | exponential:50ms | "
                                                       "lognormal:200ms:0.6")
    failure_probability: float | None = Field(None, ge=0, le=1)
    assumed_service_time: Duration | None = Field(
        None, description="work per message the plan assumes where service_time is not set")
    webhook_prefetch: bool | None = Field(None, description="CONDUITLLM__WEBHOOKPREFETCHCOUNT "
                                                            "applies here")
    idempotent: bool | None = None
    consumer_types: list[str] = Field([], description="MassTransit's consumer class names (its "
                                                      "meters' consumer_type), to tell this "
                                                      "endpoint's consumes of a message type "
                                                      "another endpoint consumes too")
    callbacks: CallbacksModel | None = None
    delivery: DeliveryModel | None = None

    @field_validator("retry")
    @classmethod
    def _retry(cls, v: Any) -> Any:
        return v if v is None else _checked(parse_retry, v, "a retry policy") and v

    @field_validator("breaker")
    @classmethod
    def _breaker(cls, v: Any) -> Any:
        if v is not None:
            _checked(parse_breaker, v, "a breaker")
        return v

    @field_validator("rate_limit")
    @classmethod
    def _rate_limit(cls, v: Any) -> Any:
        if v is not None:
            _checked(parse_rate_limit, v, "a rate limit")
        return v

    @field_validator("service_time")
    @classmethod
    def _service_time(cls, v: Any) -> Any:
        if v is not None:
            _checked(parse_service_time, v, "a service time")
        return v

    @field_validator("assumed_service_time")
    @classmethod
    def _assumed(cls, v: Any) -> Any:
        return v if v is None else _checked(parse_duration_s, v, "a duration")

    @field_validator("arguments")
    @classmethod
    def _arguments(cls, v: Any) -> Any:
        return v if v is None else validate_queue_arguments(v)


FieldType = Literal["string", "integer", "number", "boolean", "url", "headers", "object", "any"]


class FieldModel(_Strict):
    type: FieldType = "any"
    required: bool = False
    default: Any = None
    min: float | None = None
    max: float | None = None
    min_length: int | None = Field(None, ge=0)
    max_length: int | None = Field(None, ge=1)


class RouteModel(_Strict):
    path: str = Field(pattern=r"^/", description="e.g. /v1/orders")
    method: Literal["POST", "PUT"] = "POST"
    auth: Literal["bearer", "none"] = "bearer"
    request: dict[str, Any] = Field({}, description="the body the load generator sends")
    fields: dict[str, FieldModel] = Field({}, description="what the reference API accepts")
    callback: str | None = Field(None, description="request field carrying a callback URL")
    id_field: str | None = Field(None, description="request field that, when given, is the "
                                                   "task's id")
    status: str = Field("queued", description="the task's status when accepted")
    id: str = Field("task_id", description="response property with the task's id")
    poll: str | None = Field(None, description="GET path of a task's status, {id} replaced")


class TaskModel(_Strict):
    """A task kind: ``[tasks.KIND]``."""

    remove: bool = False
    message: str | None = Field(None, description="the message type it publishes")
    stream: Literal["tasks", "webhooks"] = "tasks"
    weight: float = Field(0.0, ge=0, description="share in the default --task-mix")
    route: RouteModel | None = Field(None, description="how it enters over HTTP (none: "
                                                       "published straight to the broker)")


class PlanModel(_Strict):
    """``[plan]``: defaults of `rabbitscale plan` for this system."""

    instances: int | None = Field(None, ge=1, le=100000,
                                  description="consumer instances of each endpoint")
    task_rate: str | None = Field(None, description="the task arrival rate, e.g. 20/s")

    @field_validator("task_rate")
    @classmethod
    def _rate(cls, v: Any) -> Any:
        if v is not None:
            rate = _checked(parse_rate_per_s, v, "a rate")
            if not 0 <= rate < 1e7:
                raise ValueError(f"expected a rate from 0/s, got {v!r}")
        return v


class ProfileModel(_Strict):
    """A system on RabbitMQ (docs/profile-format.md)."""

    extends: str | None = Field(None, alias="profile",
                                description="a built-in profile or a file this one changes")
    name: str | None = None
    description: str = ""
    namespace: str = Field("", description="message types' namespace (URNs, exchanges)")
    publisher: Literal["bus", "pool"] = Field(
        "bus", description="one connection per process (MassTransit) or a pool of "
                           "MinConnections..MaxConnections")
    queue_type: QueueType = "quorum"
    rabbitmq: dict[str, Any] = Field({}, description="connection settings and bus defaults "
                                                     "(PrefetchCount, ...)")
    messages: dict[str, MessageModel] = {}
    endpoints: dict[str, EndpointModel] = {}
    tasks: dict[str, TaskModel] = {}
    thresholds: dict[str, float | list[str]] = Field(
        {}, description="SLO thresholds of a run; latency = [\"[KIND_OR_QUEUE.]METRIC.STAT<DURATION"
                        "\", ...] (METRIC e2e|queue_wait|processing|publish_delay, STAT "
                        "p50|p95|p99|p999|max)")
    estimates: dict[str, str] = Field({}, description="figures discover estimated, and from "
                                                      "what")
    guide: bool = Field(False, description="the scaling guide's system: `plan` shows the "
                                           "guide's own figures and its targets as defaults")
    plan: PlanModel = Field(default_factory=lambda: PlanModel(instances=None, task_rate=None),
                            description="what `plan` takes where no flag is given (discover "
                                        "writes what it saw, with [estimates])")

    @field_validator("thresholds")
    @classmethod
    def _thresholds(cls, v: dict[str, Any]) -> dict[str, Any]:
        try:
            thresholds.check_table(v, "thresholds")
        except ConfigError as exc:
            raise ValueError(str(exc).removeprefix("thresholds: ")) from None
        return v

    @model_validator(mode="after")
    def _names(self) -> ProfileModel:
        """Names that become AMQP names or files of a run, checked once, here."""
        for where, name, problem in self._named():
            found = problem(name)
            if found:
                raise ValueError(f"{where}: {name!r} {found}")
        return self

    def _named(self) -> list[tuple[str, str, Any]]:
        out: list[tuple[str, str, Any]] = [("namespace", self.namespace,
                                            naming.amqp_name_problem)]
        out += [(f"endpoints.{q}", q, naming.file_name_problem) for q in self.endpoints]
        out += [(f"tasks.{k}", k, naming.file_name_problem) for k in self.tasks]
        for t, m in self.messages.items():
            out += [(f"messages.{t}", t, naming.amqp_name_problem)]
            out += [(f"messages.{t}.{f}", v, naming.amqp_name_problem)
                    for f, v in (("exchange", m.exchange), ("urn", m.urn)) if v is not None]
        return out


# --- queue arguments ----------------------------------------------------------------------------


def _int_in(lo: int, hi: int) -> Any:
    def check(raw: Any) -> int:
        if isinstance(raw, bool) or not isinstance(raw, int) or not lo <= raw <= hi:
            raise ConfigError(f"expected an integer between {lo} and {hi}, got {raw!r}")
        return raw

    return check


def _bool(raw: Any) -> bool:
    if not isinstance(raw, bool):
        raise ConfigError(f"expected true or false (unquoted), got {raw!r}")
    return raw


def _one_of(*choices: str) -> Any:
    def check(raw: Any) -> str:
        if raw not in choices:
            raise ConfigError(f"expected one of {', '.join(choices)}, got {raw!r}")
        return str(raw)

    return check


def _text(raw: Any) -> str:
    if not isinstance(raw, str):
        raise ConfigError(f"expected a string, got {raw!r}")
    return raw


# Queue arguments a profile may set, each with its check. Anything else is refused: a misspelt
# argument would otherwise be declared, ignored by the broker, and planned on.
QUEUE_ARGUMENTS: dict[str, Any] = {
    "x-max-length": _int_in(0, MAX_LENGTH_LIMIT),
    "x-max-length-bytes": _int_in(0, 2**62),
    "x-overflow": _one_of("drop-head", "reject-publish", "reject-publish-dlx"),
    "x-single-active-consumer": _bool,
    "x-delivery-limit": _int_in(0, MAX_LENGTH_LIMIT),
    "x-quorum-initial-group-size": _int_in(1, 64),
    "x-dead-letter-exchange": _text,
    "x-dead-letter-routing-key": _text,
    "x-dead-letter-strategy": _one_of("at-most-once", "at-least-once"),
    "x-message-ttl": _int_in(0, 2**32 - 1),
    "x-expires": _int_in(1, 2**32 - 1),
    "x-queue-leader-locator": _one_of("client-local", "balanced"),
    "x-max-in-memory-length": _int_in(0, MAX_LENGTH_LIMIT),
    "x-max-in-memory-bytes": _int_in(0, 2**62),
    "x-max-priority": _int_in(0, 255),
    "x-queue-mode": _one_of("default", "lazy"),
}


def validate_queue_arguments(raw: Any) -> dict[str, Any]:
    if not isinstance(raw, Mapping):
        raise ConfigError("expected a table of queue arguments")
    out = {}
    for key, value in raw.items():
        check = QUEUE_ARGUMENTS.get(str(key))
        if check is None:
            raise ConfigError(f"{key}: not a queue argument this tool knows (known: "
                              f"{', '.join(QUEUE_ARGUMENTS)})")
        try:
            out[str(key)] = check(value)
        except ConfigError as exc:
            raise ConfigError(f"{key}: {exc}") from None
    return out


# --- reading and merging --------------------------------------------------------------------------


def builtin_names() -> list[str]:
    return sorted(p.stem for p in BUILTIN_DIR.glob("*.toml"))


def read_toml(path: str | Path) -> dict[str, Any]:
    p = Path(path)
    try:
        return tomllib.loads(p.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"{p}: profile file not found") from None
    except IsADirectoryError:
        raise ConfigError(f"{p}: a directory, not a profile file") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{p}: cannot read profile file: {exc}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{p}: not valid TOML: {exc}") from None
    except RecursionError:  # tomllib recurses per nesting level
        raise ConfigError(f"{p}: not a profile file: nested too deeply") from None


def _locate(ref: str, relative_to: Path | None) -> tuple[dict[str, Any], str]:
    """A built-in profile by name, or a file (relative to the file that names it)."""
    if ref in builtin_names():
        return read_toml(BUILTIN_DIR / f"{ref}.toml"), ref
    path = Path(ref)
    if relative_to is not None and not path.is_absolute():
        path = relative_to / path
    if path.suffix != ".toml" and not path.exists():
        raise ConfigError(f"unknown profile {ref!r} (built-in: {', '.join(builtin_names())}; "
                          f"or a .toml file)")
    return read_toml(path), str(path)


# tables that are one value: a file that sets them replaces them whole
ATOMIC = {"arguments", "queue_arguments", "body", "request", "fields", "enums"}


def merge(base: Mapping[str, Any], over: Mapping[str, Any]) -> dict[str, Any]:
    """``over`` on ``base``, table by table; a table with ``remove = true`` drops the key;
    queue arguments, bodies, requests and fields are replaced whole."""
    out = copy.deepcopy(dict(base))
    for key, value in over.items():
        if key == "queue_arguments":  # the older spelling of ``arguments``
            out.pop("arguments", None)
        elif key == "arguments":
            out.pop("queue_arguments", None)
        if isinstance(value, Mapping) and value.get("remove") is True:
            out.pop(key, None)
        elif isinstance(value, Mapping) and isinstance(out.get(key), Mapping) and \
                key not in ATOMIC:
            out[key] = merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def resolve(data: Mapping[str, Any], source: str, relative_to: Path | None = None,
            seen: tuple[str, ...] = ()) -> dict[str, Any]:
    """The file's data with every ``extends`` (or ``profile``) merged in, outermost last. A
    file with neither endpoints nor messages of its own only tunes the default profile."""
    ref = data.get("extends", data.get("profile"))
    if ref is None and not data.get("endpoints") and not data.get("messages"):
        ref = DEFAULT_PROFILE
    if ref is None:
        return dict(data)
    if not isinstance(ref, str):
        raise ConfigError(f"{source}: extends: expected a profile name or a file path")
    if ref in seen:
        raise ConfigError(f"{source}: extends {ref!r} again (a loop: {' -> '.join(seen)})")
    base_data, base_source = _locate(ref, relative_to)
    base_dir = Path(base_source).parent if base_source.endswith(".toml") else None
    base = resolve(base_data, base_source, base_dir, (*seen, ref))
    own = {k: v for k, v in data.items() if k not in ("extends", "profile")}
    merged = merge(base, own)
    merged.setdefault("name", ref)
    return merged


def load_data(ref: str) -> tuple[dict[str, Any], str]:
    """The resolved data of a built-in profile or a profile file, and its source."""
    data, source = _locate(ref, None)
    base_dir = Path(source).parent if source.endswith(".toml") else None
    return resolve(data, source, base_dir), source


# --- building the Profile -------------------------------------------------------------------------


def _one_line(exc: ValidationError, source: str) -> ConfigError:
    err = exc.errors()[0]
    where = ".".join(str(p) for p in err["loc"])
    msg = str(err["msg"]).removeprefix("Value error, ")
    if not where:  # a check of the whole model names its key itself
        where, _, msg = msg.partition(": ")
    got = err.get("input")
    shown = "" if isinstance(got, dict | list) or got is None or repr(got) in msg or \
        err["type"] in ("missing", "extra_forbidden") else f" (got {got!r})"
    if err["type"] == "extra_forbidden":
        msg = "not a key of the profile format (docs/profile-format.md)"
    return ConfigError(f"{source}: {where}: {msg}{shown}")


def validate(data: Mapping[str, Any], source: str) -> ProfileModel:
    try:
        return ProfileModel.model_validate(dict(data))
    except ValidationError as exc:
        raise _one_line(exc, source) from None


def build(data: Mapping[str, Any], source: str) -> profiles.Profile:
    """Check resolved data against the schema and make the Profile."""
    m = validate(data, source)
    name = m.name or Path(source).stem
    messages = {n: _message(n, mm, m.namespace, source) for n, mm in m.messages.items()}
    endpoints = tuple(_endpoint(q, e, m, messages, source) for q, e in m.endpoints.items())
    if not endpoints:
        raise ConfigError(f"{source}: endpoints: a profile needs at least one receive endpoint")
    tasks = {k: _task(k, t, messages, source) for k, t in m.tasks.items()}
    return profiles.Profile(
        name=name, description=m.description, endpoints=endpoints, messages=messages,
        tasks=tasks, pooled_publisher=m.publisher == "pool", thresholds=dict(m.thresholds),
        spec={**copy.deepcopy(dict(data)), "name": name}, estimates=dict(m.estimates),
        guide=m.guide, plan_instances=m.plan.instances,
        plan_task_rate_per_s=parse_rate_per_s(m.plan.task_rate) if m.plan.task_rate else None)


def _urn(name: str, namespace: str) -> str:
    return name if name.startswith("urn:") else naming.message_urn(name, namespace)


def _message(name: str, m: MessageModel, namespace: str, source: str) -> profiles.MessageType:
    ns = m.namespace if m.namespace is not None else namespace
    where = f"{source}: messages.{name}.body"
    return profiles.MessageType(
        name=name, urn=m.urn or _urn(name, ns),
        exchange=m.exchange or naming.type_exchange(name, ns),
        implements=tuple(_urn(t, ns) for t in m.implements), key=m.key, task=m.task,
        body=compile_template(m.body, where, MESSAGE_VARS),
        size_bytes=m.size if isinstance(m.size, int) else None,
        enums={k: tuple(v) for k, v in m.enums.items()})


def _endpoint(queue: str, e: EndpointModel, m: ProfileModel,
              messages: Mapping[str, profiles.MessageType], source: str) -> profiles.Endpoint:
    at = f"{source}: endpoints.{queue}"
    if not e.consumes:
        raise ConfigError(f"{at}.consumes: required: the message types it consumes")
    for t in e.consumes:
        if t not in messages:
            raise ConfigError(f"{at}.consumes: no message type {t!r} in [messages] (has "
                              f"{', '.join(messages) or 'none'})")
    callbacks = None
    if e.callbacks is not None:
        c = e.callbacks
        if c.publish not in messages:
            raise ConfigError(f"{at}.callbacks.publish: no message type {c.publish!r}")
        callbacks = profiles.Callbacks(
            url=c.url, publish=c.publish, started=c.started, completed=c.completed,
            failed=c.failed,
            request=compile_template(c.request, f"{at}.callbacks.request", CALLBACK_VARS))
    delivery = None
    if e.delivery is not None:
        d = e.delivery
        delivery = profiles.Delivery(url=d.url, payload=d.payload, headers=d.headers,
                                     event=d.event, task=d.task,
                                     progress_events=tuple(d.progress_events))
    partitioned = bool(e.partitions) or bool(e.partitioner)
    queue_type = e.queue_type or m.queue_type
    args = dict(e.arguments or {})
    if queue_type != profiles.QUORUM:
        for quorum_only in ("x-delivery-limit", "x-quorum-initial-group-size"):
            if quorum_only in args:
                raise ConfigError(f"{at}.arguments.{quorum_only}: only quorum queues take it "
                                  f"(queue_type is {queue_type})")
    return profiles.Endpoint(
        queue=queue, consumes=tuple(e.consumes), queue_type=queue_type,
        prefetch=e.prefetch, concurrency=e.concurrency, queue_arguments=args,
        retry=parse_retry(e.retry) if e.retry else profiles.RetryPolicy(),
        breaker=parse_breaker(e.breaker) if e.breaker else None,
        rate_limit=parse_rate_limit(e.rate_limit) if e.rate_limit else None,
        partitioned=partitioned, partitions=e.partitions or None,
        service_time=parse_service_time(e.service_time) if e.service_time else None,
        failure_probability=e.failure_probability or 0.0,
        assumed_service_time_s=float(e.assumed_service_time)
        if e.assumed_service_time is not None else None,
        webhook_prefetch=bool(e.webhook_prefetch), callbacks=callbacks, delivery=delivery,
        idempotent=e.idempotent if e.idempotent is not None else True,
        consumer_types=tuple(e.consumer_types))


def _task(kind: str, t: TaskModel, messages: Mapping[str, profiles.MessageType],
          source: str) -> profiles.TaskKind:
    at = f"{source}: tasks.{kind}"
    if not t.message or t.message not in messages:
        raise ConfigError(f"{at}.message: expected one of the message types "
                          f"({', '.join(messages) or 'none'}), got {t.message!r}")
    route = None
    if t.route is not None:
        r = t.route
        route = profiles.Route(
            path=r.path, method=r.method, auth=r.auth,
            request=compile_template(r.request, f"{at}.route.request", REQUEST_VARS),
            fields=tuple(profiles.Field(name=n, **f.model_dump()) for n, f in r.fields.items()),
            callback=r.callback, id_field=r.id_field, status=r.status, id=r.id, poll=r.poll)
    return profiles.TaskKind(name=kind, message=t.message, stream=t.stream, weight=t.weight,
                             route=route)


# --- what the commands call -----------------------------------------------------------------------

_CACHE: dict[str, profiles.Profile] = {}


def get_profile(ref: str) -> profiles.Profile:
    """A built-in profile by name, or a profile file by path."""
    if ref not in _CACHE or ref not in builtin_names():  # files are read again: they change
        data, source = load_data(ref)
        _CACHE[ref] = build(data, source)
    return _CACHE[ref]


def profile_spec(profile: profiles.Profile) -> dict[str, Any]:
    """What rebuilds ``profile`` exactly: its resolved data (a run records it; a child process
    gets it through PROFILE_ENV)."""
    return copy.deepcopy(dict(profile.spec))


def profile_from_spec(spec: Mapping[str, Any], source: str = "recorded profile"
                      ) -> profiles.Profile:
    """Rebuild a profile from ``profile_spec`` output (or a run directory's older record:
    ``{"profile": NAME, "endpoints": {...}}``)."""
    if not isinstance(spec, Mapping):
        raise ConfigError(f"{source}: expected a table")
    return build(resolve(spec, source), source)


def profile_env(profile: profiles.Profile) -> dict[str, str]:
    """The environment that hands ``profile`` to a child process (a consumer, Locust)."""
    import json

    return {PROFILE_ENV: json.dumps(profile_spec(profile))}


def profile_from_env(environ: Mapping[str, str] | None = None) -> profiles.Profile:
    """The profile a parent process handed over (``profile_env``), else the default one."""
    import json
    import os

    text = (os.environ if environ is None else environ).get(PROFILE_ENV)
    if not text:
        return get_profile(DEFAULT_PROFILE)
    try:
        spec = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ConfigError(f"{PROFILE_ENV}: not JSON: {exc}") from None
    return profile_from_spec(spec, PROFILE_ENV)


def apply_overrides(profile: profiles.Profile, tables: Mapping[str, Mapping[str, Any]],
                    source: str = "overrides", section: str = "endpoints") -> profiles.Profile:
    """``[endpoints.QUEUE]`` (or another section's) tables merged into the profile; a table
    for an endpoint the profile lacks must say what it consumes."""
    data = merge(profile.spec, {section: tables})
    return build(data, source)


def with_replicas(profile: profiles.Profile, replicas: int) -> profiles.Profile:
    """Every quorum queue (and its side queues) with ``replicas`` members."""
    return apply_overrides(profile, {ep.queue: {"queue_arguments": {
        **ep.queue_arguments, "x-quorum-initial-group-size": replicas}}
        for ep in profile.endpoints if ep.queue_type == profiles.QUORUM}, f"--replicas {replicas}")


def recorded_profile(config: Mapping[str, Any]) -> profiles.Profile:
    """The profile a run directory's config.json says the run used."""
    spec = config.get("profile_spec")
    if isinstance(spec, Mapping):
        return profile_from_spec(spec, "config.json: profile_spec")
    return get_profile(str(config.get("profile", DEFAULT_PROFILE)))


def load_system(profile: str | None = None, profile_file: str | None = None,
         environ: Mapping[str, str] | None = None) -> tuple[Any, profiles.Profile]:
    """Settings and profile of a command: ``--profile NAME`` (a built-in profile) and/or
    ``--profile-file FILE``; a file that names no profile to extend describes a whole system.
    Settings: defaults, the profile's [rabbitmq] table, then the environment."""
    from rabbitscale.topology.settings import load_settings

    if profile_file:
        data = read_toml(profile_file)
        if profile:
            data = {**{k: v for k, v in data.items() if k != "profile"}, "extends": profile}
        source = str(profile_file)
        resolved = resolve(data, source, Path(profile_file).parent)
    else:
        resolved, source = load_data(profile or DEFAULT_PROFILE)
    prof = build(resolved, source)
    settings = load_settings(resolved.get("rabbitmq") or {}, environ, f"{source}: rabbitmq")
    return settings, prof
