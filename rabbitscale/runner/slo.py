"""SLO checks from the scaling guide, with thresholds that a TOML file can override.

Each check compares one measured value with its target and gives PASS, WARN or FAIL; the run
fails when any check FAILs. Field names here are the stable names of summary.json.
"""

from __future__ import annotations

import dataclasses
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rabbitscale.core import targets
from rabbitscale.core.errors import ConfigError
from rabbitscale.core.verdicts import FAIL, PASS, SKIP, WARN
from rabbitscale.topology.profiles import Profile

__all__ = ["FAIL", "PASS", "SKIP", "WARN", "Check", "Thresholds", "load_thresholds"]


@dataclass(frozen=True)
class Thresholds:
    rate_ratio_min: float = 0.99  # achieved arrivals / scheduled arrivals
    burst_ratio_min: float = 0.99  # per burst window
    burst_max_lag_s: float = targets.BURST_MAX_LAG_S
    depth_warning: int = targets.DEPTH_WARNING
    depth_critical: int = targets.DEPTH_CRITICAL
    message_age_max_s: float = targets.MESSAGE_AGE_MAX_S
    memory_fraction_max: float = targets.MEMORY_WARNING_FRACTION  # of the high watermark
    error_rate_max: float = 0.0  # faulted / finished; runs set it to the configured failure rate
    lost_max: int = 0
    rss_growth_max_mb_per_hour: float = 50.0  # any process of ours (soak)
    soak_min_duration_s: float = 600.0  # shorter runs cannot tell growth from warm-up


def load_thresholds(path: str | Path | None, profile: Profile | None = None,
                    **overrides: Any) -> Thresholds:
    """The guide's thresholds, then the run's own (``error_rate_max``), the profile's
    ``[thresholds]``, a fault's (``overrides`` after the profile's), then a thresholds file."""
    own = {k: v for k, v in overrides.items() if k == "error_rate_max"}
    base = _replaced(Thresholds(**own), profile.thresholds if profile else {},
                     f"profile {profile.name}: thresholds" if profile else "")
    base = dataclasses.replace(base, **{k: v for k, v in overrides.items()
                                        if k != "error_rate_max"})
    if path is None:
        return base
    p = Path(path)
    try:
        data = tomllib.loads(p.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"{p}: thresholds file not found") from None
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise ConfigError(f"{p}: cannot read thresholds: {exc}") from None
    return _replaced(base, data, str(p))


def _replaced(base: Thresholds, data: Mapping[str, Any], source: str) -> Thresholds:
    fields = {f.name: f.type for f in dataclasses.fields(Thresholds)}
    changes: dict[str, Any] = {}
    for key, value in data.items():
        if key not in fields:
            raise ConfigError(f"{source}: unknown threshold {key!r} (known: "
                              f"{', '.join(fields)})")
        if isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
            raise ConfigError(f"{source}: {key}: expected a non-negative number, got "
                              f"{value!r}")
        changes[key] = int(value) if fields[key] == "int" else float(value)
    return dataclasses.replace(base, **changes)


@dataclass(frozen=True)
class Check:
    name: str
    target: str
    measured: Any
    verdict: str
    detail: str = ""

    def as_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def at_least(name: str, measured: float, minimum: float, detail: str = "") -> Check:
    return Check(name, f">= {minimum:g}", round(measured, 4),
                 PASS if measured >= minimum else FAIL, detail)


def depth_check(name: str, peak: int, t: Thresholds) -> Check:
    verdict = FAIL if peak > t.depth_critical else WARN if peak > t.depth_warning else PASS
    return Check(name, f"<= {t.depth_warning} (critical {t.depth_critical})", peak, verdict)


def at_most(name: str, measured: float, maximum: float, detail: str = "") -> Check:
    return Check(name, f"<= {maximum:g}", round(measured, 4),
                 PASS if measured <= maximum else FAIL, detail)


def not_measured(name: str, detail: str) -> Check:
    """A check this kind of run cannot make: shown as such, never as a pass with 0."""
    return Check(name, "-", "not measured", SKIP, detail)


def verdict(checks: list[Check]) -> str:
    """A run fails when any check FAILs; WARNs are shown, not failed."""
    return FAIL if any(c.verdict == FAIL for c in checks) else PASS
