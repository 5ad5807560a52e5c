"""Endpoint overrides: a profile file's ``[endpoints.<queue>]`` tables applied to a profile,
every value validated with a one-line error naming its key, and the reverse (``profile_spec``),
so a run directory can record the profile it really used and be read back exactly.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from typing import Any

from rabbitscale.topology.policy import (
    parse_breaker,
    parse_rate_limit,
    parse_retry,
    parse_service_time,
)
from rabbitscale.topology.profiles import Endpoint, Profile, get_profile
from rabbitscale.topology.settings import (
    ConfigError,
    RabbitSettings,
    load_settings,
    read_profile_file,
)

MAX_LENGTH_LIMIT = 2**31 - 1
PROFILE_ENV = "RABBITSCALE_PROFILE_SPEC"  # a resolved profile handed to a child process


def _int_in(lo: int, hi: int) -> Callable[[Any], int]:
    def check(raw: Any) -> int:
        if isinstance(raw, bool) or not isinstance(raw, int) or not lo <= raw <= hi:
            raise ConfigError(f"expected an integer between {lo} and {hi}, got {raw!r}")
        return raw

    return check


def _bool(raw: Any) -> bool:
    if not isinstance(raw, bool):
        raise ConfigError(f"expected true or false (unquoted), got {raw!r}")
    return raw


def _one_of(*choices: str) -> Callable[[Any], str]:
    def check(raw: Any) -> str:
        if raw not in choices:
            raise ConfigError(f"expected one of {', '.join(choices)}, got {raw!r}")
        return str(raw)

    return check


def _text(raw: Any) -> str:
    if not isinstance(raw, str):
        raise ConfigError(f"expected a string, got {raw!r}")
    return raw


# Quorum-queue arguments a profile may set, each with its check. Anything else is refused:
# a misspelt argument would otherwise be declared, ignored by the broker, and planned on.
QUEUE_ARGUMENTS: dict[str, Callable[[Any], Any]] = {
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
}


def validate_queue_arguments(raw: Any) -> dict[str, Any]:
    if not isinstance(raw, Mapping):
        raise ConfigError("expected a table of queue arguments")
    out = {}
    for key, value in raw.items():
        check = QUEUE_ARGUMENTS.get(str(key))
        if check is None:
            raise ConfigError(f"{key}: not a quorum-queue argument this tool knows "
                              f"(known: {', '.join(QUEUE_ARGUMENTS)})")
        try:
            out[str(key)] = check(value)
        except ConfigError as exc:
            raise ConfigError(f"{key}: {exc}") from None
    return out


def _probability(raw: Any) -> float:
    if isinstance(raw, bool) or not isinstance(raw, int | float) or not 0 <= raw <= 1:
        raise ConfigError(f"expected a number between 0 and 1, got {raw!r}")
    return float(raw)


def _setting(key: str, raw: Any) -> dict[str, Any]:
    """Endpoint field changes for one ``key = value`` of an endpoint table."""
    if key in ("prefetch", "concurrency"):
        return {key: _int_in(1, 65535)(raw)}
    if key == "partitions":
        n = _int_in(0, 65535)(raw)
        return {"partitioned": n > 0, "partitions": n or None}
    if key == "service_time":
        return {"service_time": parse_service_time(raw)}
    if key == "failure_probability":
        return {"failure_probability": _probability(raw)}
    if key == "retry":
        return {"retry": parse_retry(raw)}
    if key == "breaker":
        return {"breaker": parse_breaker(raw)}
    if key == "rate_limit":
        return {"rate_limit": parse_rate_limit(raw)}
    if key == "queue_arguments":
        return {"queue_arguments": validate_queue_arguments(raw)}
    raise ConfigError("unknown setting (prefetch, concurrency, partitions, service_time, "
                      "failure_probability, retry, breaker, rate_limit, queue_arguments)")


def apply_overrides(profile: Profile, overrides: Mapping[str, Mapping[str, Any]],
                    source: str = "profile file") -> Profile:
    """Apply [endpoints.<queue>] tables from a profile file; unknown names are errors."""
    endpoints = {ep.queue: ep for ep in profile.endpoints}
    for queue, table in overrides.items():
        if queue not in endpoints:
            raise ConfigError(f"{source}: endpoints.{queue}: profile {profile.name!r} has no "
                              f"such endpoint (has {', '.join(endpoints)})")
        if not isinstance(table, Mapping):
            raise ConfigError(f"{source}: endpoints.{queue}: expected a table")
        changes: dict[str, Any] = {}
        for key, raw in table.items():
            try:
                changes.update(_setting(str(key), raw))
            except ConfigError as exc:
                raise ConfigError(f"{source}: endpoints.{queue}.{key}: {exc}") from None
        endpoints[queue] = dataclasses.replace(endpoints[queue], **changes)
    return dataclasses.replace(profile, endpoints=tuple(endpoints.values()))


def with_replicas(profile: Profile, replicas: int) -> Profile:
    """Every endpoint's quorum queue (and its side queues) with ``replicas`` members
    (x-quorum-initial-group-size)."""
    return apply_overrides(profile, {ep.queue: {"queue_arguments": {
        **ep.queue_arguments, "x-quorum-initial-group-size": replicas}}
        for ep in profile.endpoints}, f"--replicas {replicas}")


def load_stack_config(profile_name: str | None, profile_file: str | None,
                      environ: Mapping[str, str] | None = None) -> tuple[RabbitSettings, Profile]:
    """Settings and profile from defaults, a profile file and the environment."""
    pf = read_profile_file(profile_file) if profile_file else None
    settings = load_settings(pf, environ)
    profile = get_profile(profile_name or (pf.profile if pf and pf.profile else "conduit"))
    if pf:
        profile = apply_overrides(profile, pf.endpoints, str(pf.path))
    return settings, profile


# --- the reverse: a profile as the tables that rebuild it ------------------------------------


def endpoint_spec(ep: Endpoint) -> dict[str, Any]:
    """The endpoint table that ``apply_overrides`` turns back into ``ep`` (resolved values)."""
    spec: dict[str, Any] = {
        "retry": ep.retry.spec(), "breaker": ep.breaker.spec() if ep.breaker else "none",
        "rate_limit": ep.rate_limit.spec() if ep.rate_limit else "none",
        "failure_probability": ep.failure_probability,
        "queue_arguments": dict(ep.queue_arguments),
    }
    if not (ep.partitioned and ep.partitions is None):  # unresolved: the settings decide
        spec["partitions"] = ep.partitions or 0
    if ep.prefetch is not None:
        spec["prefetch"] = ep.prefetch
    if ep.concurrency is not None:
        spec["concurrency"] = ep.concurrency
    if ep.service_time is not None:
        spec["service_time"] = ep.service_time.spec()
    return spec


def profile_spec(profile: Profile) -> dict[str, Any]:
    """``{"profile": name, "endpoints": {queue: table}}``: what a run directory records."""
    return {"profile": profile.name,
            "endpoints": {ep.queue: endpoint_spec(ep) for ep in profile.endpoints}}


def recorded_profile(config: Mapping[str, Any]) -> Profile:
    """The profile a run directory's config.json says the run used: the recorded spec, or
    (run directories written before it was recorded) the built-in profile of that name."""
    spec = config.get("profile_spec")
    if isinstance(spec, Mapping):
        return profile_from_spec(spec, "config.json: profile_spec")
    return get_profile(str(config.get("profile", "conduit")))


def profile_from_spec(spec: Mapping[str, Any], source: str = "recorded profile") -> Profile:
    """Rebuild the profile a run used from ``profile_spec`` output."""
    name = spec.get("profile")
    if not isinstance(name, str):
        raise ConfigError(f"{source}: no profile name")
    endpoints = spec.get("endpoints") or {}
    if not isinstance(endpoints, Mapping):
        raise ConfigError(f"{source}: endpoints: expected a table")
    return apply_overrides(get_profile(name), endpoints, source)
