"""Task mixes: the ``--task-mix`` text format (``kind=weight,...``) and shares, the kinds
being a profile's task kinds (topology/profiles.py)."""

from __future__ import annotations

from rabbitscale.core.errors import ConfigError
from rabbitscale.topology.profiles import Profile


def parse_task_mix(text: str, profile: Profile | None = None) -> dict[str, float]:
    """'orders=0.7,refunds=0.3' -> weights; one-line ConfigError otherwise. With a profile,
    every kind must be one of its task kinds."""
    mix: dict[str, float] = {}
    for part in str(text).split(","):
        kind, sep, weight = part.partition("=")
        kind = kind.strip()
        if not sep or not kind:
            raise ConfigError(f"--task-mix: bad entry {part.strip()!r} (use kind=weight, "
                              f"comma-separated)")
        try:
            value = float(weight)
        except ValueError:
            raise ConfigError(f"--task-mix: bad weight in {part.strip()!r}") from None
        if not 0 <= value < float("inf"):
            raise ConfigError(f"--task-mix: weight must be >= 0 in {part.strip()!r}")
        mix[kind] = value
    if not sum(mix.values()):
        raise ConfigError("--task-mix: weights must not all be 0")
    if profile is not None:
        check_mix(mix, profile)
    return mix


def check_mix(mix: dict[str, float], profile: Profile) -> dict[str, float]:
    unknown = [k for k in mix if k not in profile.tasks]
    if unknown:
        raise ConfigError(f"--task-mix: profile {profile.name!r} has no task kind "
                          f"{unknown[0]!r} (has {', '.join(profile.tasks) or 'none'})")
    return mix


def format_task_mix(mix: dict[str, float]) -> str:
    return ",".join(f"{k}={v:g}" for k, v in mix.items())


def shares(mix: dict[str, float]) -> dict[str, float]:
    """Weights normalised to fractions of the task stream."""
    total = sum(mix.values()) or 1.0
    return {k: v / total for k, v in mix.items() if v > 0}


def arrivals_per_queue(profile: Profile, mix: dict[str, float], rate_per_s: float
                       ) -> dict[str, float]:
    """Messages per second each endpoint receives when tasks arrive at ``rate_per_s`` in
    ``mix``: a message type's exchange fans out to every endpoint that consumes it."""
    out: dict[str, float] = {}
    for kind, share in shares(mix).items():
        for queue in profile.queues_of(kind):
            out[queue] = out.get(queue, 0.0) + rate_per_s * share
    return out
