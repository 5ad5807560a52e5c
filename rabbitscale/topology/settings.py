"""Connection and endpoint-default settings, read the way ConduitLLM reads them.

Sources, lowest precedence first: the defaults of conduit-topology.md, a profile file's
``[rabbitmq]`` table, ``AMQP_URL`` (host, port, credentials, vhost), then the environment keys
``CONDUITLLM__RABBITMQ__<FIELD>`` / ``CONDUITLLM__WEBHOOKPREFETCHCOUNT``. Keys are
case-insensitive, as in .NET configuration binding. Every invalid value is a ``ConfigError``
whose message is one line naming the key.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote, unquote, urlsplit

from rabbitscale.core.errors import ConfigError
from rabbitscale.core.urls import masked

ENV_PREFIX = "CONDUITLLM__RABBITMQ__"
WEBHOOK_PREFETCH_ENV = "CONDUITLLM__WEBHOOKPREFETCHCOUNT"
# RabbitMQ's collect_statistics_interval default: the management API's queue and node figures
# (mem_alarm included) are up to this old, so a state shorter than this can be missed entirely.
STATS_INTERVAL_S = 5.0
CLUSTER_ENV = "RABBITSCALE_CLUSTER_NODES"  # host:port,host:port (ConduitLLM has no such key)


@dataclass(frozen=True)
class RabbitSettings:
    """ConduitLLM:RabbitMQ settings; defaults from conduit-topology.md."""

    host: str = "localhost"
    port: int = 5672
    management_port: int = 15672
    username: str = "guest"
    password: str = field(default="guest", repr=False)
    vhost: str = "/"
    prefetch_count: int = 25
    partition_count: int = 30
    concurrent_message_limit: int = 50
    max_connections: int = 5
    min_connections: int = 2
    requested_heartbeat: int = 30
    publisher_confirmation: bool = True
    publisher_confirmation_timeout_ms: int = 5000
    channel_max: int = 500
    frame_max: int = 131072
    durable: bool = True
    auto_delete: bool = False
    webhook_prefetch_count: int | None = None
    management_url: str | None = None
    cluster_nodes: tuple[str, ...] = ()  # host:port of every node, when there are several

    @property
    def amqp_url(self) -> str:
        """URL for aio-pika/pika, with heartbeat and channel_max as query parameters."""
        return self.amqp_url_for(f"{self.host}:{self.port}")

    def amqp_url_for(self, node: str) -> str:
        """The AMQP URL of one node (``host:port``) with these credentials and options."""
        cred = f"{quote(self.username, safe='')}:{quote(self.password, safe='')}"
        return (
            f"amqp://{cred}@{node}/{quote(self.vhost, safe='')}"
            f"?heartbeat={self.requested_heartbeat}&channel_max={self.channel_max}"
            f"&frame_max={self.frame_max}"
        )

    @property
    def nodes(self) -> tuple[str, ...]:
        """Every node connections may go to (the configured host first)."""
        own = f"{self.host}:{self.port}"
        return (own, *(n for n in self.cluster_nodes if n != own))

    @property
    def management_base_url(self) -> str:
        return (self.management_url or f"http://{self.host}:{self.management_port}").rstrip("/")

    def with_vhost(self, vhost: str) -> RabbitSettings:
        return dataclasses.replace(self, vhost=vhost)

    def masked(self) -> dict[str, Any]:
        """Settings as a dict with every credential replaced, for run directories and reports."""
        d = dataclasses.asdict(self)
        d["password"] = "***"
        return d

    def where(self) -> dict[str, Any]:
        """Where a deployed system's broker is, masked: what a black-box run records of its
        settings (the bus defaults are the reference stack's, not the system's)."""
        return {"host": self.host, "port": self.port, "vhost": self.vhost,
                "username": self.username, "password": "***",
                "management": self.management_base_url,
                "cluster_nodes": list(self.cluster_nodes)}

    @classmethod
    def from_masked(cls, d: Mapping[str, Any]) -> RabbitSettings:
        """Settings read back from ``masked()`` output (a run's config.json), for the model;
        the password stays the default, nothing here connects."""
        values = {k: v for k, v in d.items()
                  if k in cls.__dataclass_fields__ and k != "password"}
        values["cluster_nodes"] = tuple(values.get("cluster_nodes") or ())
        return cls(**values)


def _int(lo: int, hi: int | None = None) -> Callable[[str, Any], int]:
    def parse(key: str, raw: Any) -> int:
        try:
            if isinstance(raw, bool):
                raise ValueError
            value = int(str(raw).strip())
        except ValueError:
            raise ConfigError(f"{key}: expected an integer, got {raw!r}") from None
        if value < lo or (hi is not None and value > hi):
            bound = f"between {lo} and {hi}" if hi is not None else f">= {lo}"
            raise ConfigError(f"{key}: must be {bound}, got {value}")
        return value

    return parse


def _bool(key: str, raw: Any) -> bool:
    if isinstance(raw, bool):
        return raw
    text = str(raw).strip().lower()
    if text in ("true", "1", "yes", "on"):
        return True
    if text in ("false", "0", "no", "off"):
        return False
    raise ConfigError(f"{key}: expected true or false, got {raw!r}")


def _str(key: str, raw: Any) -> str:
    text = str(raw)
    if not text.strip():
        raise ConfigError(f"{key}: must not be empty")
    return text


def _vhost(key: str, raw: Any) -> str:
    return str(raw) or "/"


# .NET field name (upper-cased) -> (dataclass field, parser)
FIELDS: dict[str, tuple[str, Callable[[str, Any], Any]]] = {
    "HOST": ("host", _str),
    "PORT": ("port", _int(1, 65535)),
    "MANAGEMENTPORT": ("management_port", _int(1, 65535)),
    "USERNAME": ("username", _str),
    "PASSWORD": ("password", lambda k, v: str(v)),
    "VHOST": ("vhost", _vhost),
    "PREFETCHCOUNT": ("prefetch_count", _int(1, 65535)),
    "PARTITIONCOUNT": ("partition_count", _int(1, 100_000)),
    "CONCURRENTMESSAGELIMIT": ("concurrent_message_limit", _int(1, 100_000)),
    "MAXCONNECTIONS": ("max_connections", _int(1, 10_000)),
    "MINCONNECTIONS": ("min_connections", _int(1, 10_000)),
    "REQUESTEDHEARTBEAT": ("requested_heartbeat", _int(0, 65535)),
    "PUBLISHERCONFIRMATION": ("publisher_confirmation", _bool),
    "PUBLISHERCONFIRMATIONTIMEOUT": ("publisher_confirmation_timeout_ms", _int(1, 3_600_000)),
    "CHANNELMAX": ("channel_max", _int(1, 65535)),
    "FRAMEMAX": ("frame_max", _int(4096, 2**31 - 1)),
    "DURABLE": ("durable", _bool),
    "AUTODELETE": ("auto_delete", _bool),
    "MANAGEMENTURL": ("management_url", _str),
}


def _apply(values: dict[str, Any], key: str, raw: Any, source_key: str) -> None:
    name, parse = FIELDS[key]
    values[name] = parse(source_key, raw)


# where the broker's credentials are sent: the environment's or a flag's, never a file's (a
# profile file from elsewhere must not send the user's password to a host of its choosing)
CREDENTIAL_DESTINATIONS = frozenset({"HOST", "PORT", "MANAGEMENTPORT", "MANAGEMENTURL",
                                     "USERNAME", "PASSWORD"})


def settings_from_mapping(
    table: Mapping[str, Any], source: str, base: RabbitSettings | None = None
) -> RabbitSettings:
    """Apply a profile file's [rabbitmq] table (keys like PrefetchCount, case-insensitive):
    the bus's settings and the vhost; never where the credentials go."""
    values = dataclasses.asdict(base or RabbitSettings())
    for raw_key, raw in table.items():
        key = str(raw_key).upper().replace("_", "")
        if key in CREDENTIAL_DESTINATIONS:
            raise ConfigError(f"{source}: {raw_key}: where the broker's credentials go is not "
                              f"a profile file's to choose: set AMQP_URL or "
                              f"{ENV_PREFIX}{key} in the environment (or --management)")
        if key == "WEBHOOKPREFETCHCOUNT":
            values["webhook_prefetch_count"] = _int(1, 65535)(f"{source}: {raw_key}", raw)
        elif key in FIELDS:
            _apply(values, key, raw, f"{source}: {raw_key}")
        else:
            raise ConfigError(f"{source}: unknown setting {raw_key!r}")
    return _validated(RabbitSettings(**values), source)


def settings_from_env(
    environ: Mapping[str, str] | None = None, base: RabbitSettings | None = None
) -> RabbitSettings:
    """Apply AMQP_URL and CONDUITLLM__* environment keys on top of ``base``."""
    env = os.environ if environ is None else environ
    values = dataclasses.asdict(base or RabbitSettings())
    upper = {k.upper(): (k, v) for k, v in env.items()}
    if "AMQP_URL" in upper and upper["AMQP_URL"][1].strip():
        values.update(_parse_amqp_url(upper["AMQP_URL"][1]))
    for ukey, (orig, raw) in sorted(upper.items()):
        if ukey.startswith(ENV_PREFIX):
            field_key = ukey[len(ENV_PREFIX):]
            if field_key in FIELDS:
                _apply(values, field_key, raw, orig)
        elif ukey == WEBHOOK_PREFETCH_ENV:
            values["webhook_prefetch_count"] = _int(1, 65535)(orig, raw)
        elif ukey == CLUSTER_ENV:
            values["cluster_nodes"] = parse_nodes(orig, raw)
    return _validated(RabbitSettings(**values), "environment")


def settings_env(s: RabbitSettings) -> dict[str, str]:
    """Environment keys that ``settings_from_env`` turns back into ``s``: how the stack hands
    its exact settings to the consumer processes it starts (AMQP_URL is blanked so it cannot
    override them)."""
    env = {"AMQP_URL": ""}
    values = dataclasses.asdict(s)
    for key, (name, _) in FIELDS.items():
        value = values[name]
        if value is not None:
            env[ENV_PREFIX + key] = str(value).lower() if isinstance(value, bool) else str(value)
    if s.webhook_prefetch_count is not None:
        env[WEBHOOK_PREFETCH_ENV] = str(s.webhook_prefetch_count)
    env[CLUSTER_ENV] = ",".join(s.cluster_nodes)
    return env


def parse_nodes(key: str, raw: Any) -> tuple[str, ...]:
    """'host:port,host:port' -> ('host:port', ...), each checked."""
    nodes = []
    for part in str(raw).split(","):
        part = part.strip()
        if not part:
            continue
        host, _, port = part.rpartition(":")
        if not host or not port.isdigit() or not 0 < int(port) < 65536:
            raise ConfigError(f"{key}: expected host:port[,host:port...], got {part!r}")
        nodes.append(part)
    return tuple(nodes)


def _parse_amqp_url(url: str) -> dict[str, Any]:
    try:
        parts = urlsplit(url.strip())
        port = parts.port
    except ValueError as exc:
        raise ConfigError(f"AMQP_URL: {exc}") from None
    if parts.scheme not in ("amqp", "amqps") or not parts.hostname:
        raise ConfigError(f"AMQP_URL: expected amqp://user:pass@host:port/vhost, got "
                          f"{masked(url)!r}")
    out: dict[str, Any] = {"host": parts.hostname, "port": port or 5672}
    if parts.username is not None:
        out["username"] = unquote(parts.username)
    if parts.password is not None:
        out["password"] = unquote(parts.password)
    path = parts.path[1:] if parts.path.startswith("/") else parts.path
    if path:
        out["vhost"] = unquote(path)
    return out


def _validated(s: RabbitSettings, source: str) -> RabbitSettings:
    if s.min_connections > s.max_connections:
        raise ConfigError(
            f"{ENV_PREFIX}MINCONNECTIONS: {s.min_connections} is greater than "
            f"MAXCONNECTIONS {s.max_connections} ({source})"
        )
    return s


def load_settings(
    rabbitmq: Mapping[str, Any] | None = None, environ: Mapping[str, str] | None = None,
    source: str = "profile file",
) -> RabbitSettings:
    """Defaults, then a profile's ``[rabbitmq]`` table, then AMQP_URL and CONDUITLLM__* from
    the environment."""
    base = RabbitSettings()
    if rabbitmq:
        base = settings_from_mapping(rabbitmq, source, base)
    return settings_from_env(environ, base)
