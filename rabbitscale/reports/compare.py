"""Run against baseline: the same metrics side by side, deltas, and regression flags.

A metric regresses when it is worse than the baseline by more than the relative tolerance
and by more than its absolute floor (so 2 ms -> 3 ms of latency is not a "50% regression").
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from rabbitscale.results.summary import Summary

DEFAULT_TOLERANCE = 0.10


@dataclass(frozen=True)
class Delta:
    metric: str
    baseline: float | None
    current: float | None
    change_pct: float | None
    better: str  # "higher" or "lower"
    regression: bool

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def metrics(summary: Summary) -> dict[str, tuple[float | None, str, float]]:
    """metric -> (value, which direction is better, absolute floor)."""
    m = summary.measured
    out: dict[str, tuple[float | None, str, float]] = {
        "achieved_rate_per_min": (m.achieved_rate_per_min, "higher", 1.0),
        "peak_queue_depth": (m.peak_queue_depth, "lower", 10.0),
        "lost": (_number(summary.ledger.get("lost")), "lower", 0.0),
        "faulted": (_number(summary.ledger.get("faulted")), "lower", 1.0),
    }
    for name, floor in CHECKED.items():
        c = summary.check(name)
        if c is not None:
            out[name] = (_number(c.measured), "lower", floor)
    for queue, metrics_ in sorted(m.latency_ms.items()):
        for metric, s in metrics_.items():
            for p in ("p50_ms", "p99_ms"):
                value = getattr(s, p)
                if value is not None:
                    out[f"{queue}.{metric}.{p}"] = (value, "lower", 1.0)
    return out


CHECKED = {"peak_memory_fraction_of_watermark": 0.01, "error_rate": 0.001,
           "max_message_age_s": 1.0}  # check -> the absolute change below which it is noise


def _number(v: object) -> float | None:
    return float(v) if isinstance(v, int | float) and not isinstance(v, bool) else None


def compare(current: Summary, baseline: Summary,
            tolerance: float = DEFAULT_TOLERANCE) -> list[Delta]:
    cur, base = metrics(current), metrics(baseline)
    deltas = []
    for name in sorted(set(cur) | set(base)):
        c, better, floor = cur.get(name, (None, "lower", 0.0))
        b = base.get(name, (None, better, floor))[0]
        if c is None or b is None:
            deltas.append(Delta(name, b, c, None, better, False))
            continue
        change = (c - b) / abs(b) * 100 if b else (0.0 if c == b else float("inf"))
        worse = c - b if better == "lower" else b - c
        regression = worse > floor and worse > abs(b) * tolerance
        deltas.append(Delta(name, b, c, round(change, 1) if change != float("inf") else None,
                            better, regression))
    return deltas
