"""The thresholds a run is judged by, as values: the guide's defaults, the names a profile's
``[thresholds]`` table or a thresholds file may set, and the latency expressions
(``[TASK_KIND_OR_QUEUE.]METRIC.STAT<DURATION``). Read and checked here, once, wherever they come
from (judge/slo.py judges with them; topology/profile_file.py checks a profile's table)."""

from __future__ import annotations

import dataclasses
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from rabbitscale.core import targets
from rabbitscale.core.errors import ConfigError
from rabbitscale.core.units import UnitError, parse_duration_s

LATENCY_METRICS = ("e2e", "queue_wait", "processing", "publish_delay")
LATENCY_STATS = {"p50": 50.0, "p95": 95.0, "p99": 99.0, "p999": 99.9, "max": 100.0}
LATENCY_KEY = "latency"  # the list of expressions in a [thresholds] table
_EXPR = re.compile(r"\s*(?:(?P<scope>\S+)\.)?(?P<metric>" + "|".join(LATENCY_METRICS)
                   + r")\.(?P<stat>" + "|".join(LATENCY_STATS) + r")\s*<=?\s*(?P<value>\S+)\s*")


@dataclass(frozen=True)
class LatencyThreshold:
    """``[TASK_KIND_OR_QUEUE.]METRIC.STAT<VALUE``: the stat of the metric's distribution (over
    the scope's queues, or all of them) must stay below VALUE."""

    scope: str | None
    metric: str
    stat: str
    max_s: float
    source: str = ""  # where it was set: --threshold, a profile (an assumption), a file

    @property
    def name(self) -> str:
        return f"latency {self.scope + ' ' if self.scope else ''}{self.metric} {self.stat}"

    @property
    def text(self) -> str:
        return f"{self.scope + '.' if self.scope else ''}{self.metric}.{self.stat}" \
               f"<{format_ms(self.max_s * 1000)}"


def parse_latency(text: str, source: str = "") -> LatencyThreshold:
    """'video.queue_wait.p95<500ms' -> LatencyThreshold; one-line ConfigError otherwise."""
    m = _EXPR.fullmatch(str(text))
    where = f"{source}: " if source else ""
    if not m:
        raise ConfigError(f"{where}not a latency threshold: {text!r} (expected "
                          f"[TASK_KIND_OR_QUEUE.]METRIC.STAT<DURATION, METRIC one of "
                          f"{', '.join(LATENCY_METRICS)}, STAT one of {', '.join(LATENCY_STATS)};"
                          f" e.g. e2e.p99<2s)")
    try:
        value = parse_duration_s(m.group("value"))
    except UnitError as exc:
        raise ConfigError(f"{where}{text!r}: {exc}") from None
    if value <= 0:
        raise ConfigError(f"{where}{text!r}: the limit must be above zero")
    return LatencyThreshold(m.group("scope"), m.group("metric"), m.group("stat"), value, source)


def format_ms(ms: float) -> str:
    return f"{ms / 1000:g}s" if ms >= 1000 else f"{ms:g}ms"


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
    latency: tuple[LatencyThreshold, ...] = ()  # percentiles a run must stay under


def latency_list(value: Any, source: str) -> tuple[LatencyThreshold, ...]:
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list):
        raise ConfigError(f"{source}: {LATENCY_KEY}: expected a list of expressions such as "
                          f"[\"e2e.p99<2s\"]")
    return tuple(parse_latency(v, source) for v in value)


def replaced(base: Thresholds, data: Mapping[str, Any], source: str) -> Thresholds:
    fields = {f.name: f.type for f in dataclasses.fields(Thresholds)}
    changes: dict[str, Any] = {}
    for key, value in data.items():
        if key not in fields:
            raise ConfigError(f"{source}: unknown threshold {key!r} (known: "
                              f"{', '.join(fields)})")
        if isinstance(value, bool) or not isinstance(value, int | float) or \
                not math.isfinite(value) or value < 0:
            raise ConfigError(f"{source}: {key}: expected a finite, non-negative number, got "
                              f"{value!r}")
        changes[key] = int(value) if fields[key] == "int" else float(value)
    return dataclasses.replace(base, **changes)




def check_table(data: Mapping[str, Any], source: str) -> None:
    """A ``[thresholds]`` table as a profile or a file gives it: known names, finite values,
    latency expressions that parse. One-line ConfigError otherwise."""
    rest = dict(data)
    if LATENCY_KEY in rest:
        latency_list(rest.pop(LATENCY_KEY), source)
    replaced(Thresholds(), rest, source)
