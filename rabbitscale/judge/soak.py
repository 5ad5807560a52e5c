"""Soak: does any process of the run grow? The sampler records the resident memory of the load
generator, the stack (this process: API, publisher, recorder, sampler), each consumer and the
broker (processes.csv); the growth per hour is the least-squares slope after a warm-up, and a
check fails when one of our processes grows faster than the threshold.

The broker is shown, not judged: a quorum queue's node memory climbs with the data written
until its WAL rolls over (capacity/broker.py), which is bounded growth, not a leak.
"""

from __future__ import annotations

import csv
from collections import defaultdict
from pathlib import Path

from rabbitscale.core import rundir
from rabbitscale.judge import slo

BROKER_PREFIX = "broker "
WARMUP_FRACTION = 0.1  # imports, connection pools, HDR buckets: the first 10% is not growth


def read(run_dir: Path) -> dict[str, list[tuple[float, float]]]:
    """process -> [(t, rss bytes)] from processes.csv (empty when the run did not sample)."""
    path = run_dir / rundir.PROCESSES_CSV
    out: dict[str, list[tuple[float, float]]] = defaultdict(list)
    if not path.exists():
        return {}
    with path.open(newline="") as f:
        for row in csv.DictReader(f):
            out[row["process"]].append((float(row["t"]), float(row["rss_bytes"])))
    return dict(out)


def slope_per_hour(points: list[tuple[float, float]],
                   skip_fraction: float = WARMUP_FRACTION) -> float | None:
    """Least-squares growth in bytes per hour after the first ``skip_fraction`` of the run
    (the warm-up); None with too few points."""
    if len(points) < 5:
        return None
    t0, t1 = points[0][0], points[-1][0]
    kept = [(t, v) for t, v in points if t >= t0 + (t1 - t0) * skip_fraction]
    if len(kept) < 5:
        return None
    mt = sum(t for t, _ in kept) / len(kept)
    mv = sum(v for _, v in kept) / len(kept)
    var = sum((t - mt) ** 2 for t, _ in kept)
    if var == 0:
        return None
    return sum((t - mt) * (v - mv) for t, v in kept) / var * 3600


def growth(series: dict[str, list[tuple[float, float]]]) -> dict[str, dict[str, float | None]]:
    """process -> first, last and peak rss, and growth per hour."""
    return {name: {"first_bytes": pts[0][1], "last_bytes": pts[-1][1],
                   "peak_bytes": max(v for _, v in pts),
                   "growth_bytes_per_hour": slope_per_hour(pts)}
            for name, pts in sorted(series.items()) if pts}


def check(grown: dict[str, dict[str, float | None]], duration_s: float,
          t: slo.Thresholds) -> slo.Check:
    """The fastest-growing process of ours against the threshold; SKIP on runs too short to
    tell growth from warm-up."""
    name = "rss_growth_mb_per_hour"
    ours = {p: g["growth_bytes_per_hour"] for p, g in grown.items()
            if not p.startswith(BROKER_PREFIX) and g["growth_bytes_per_hour"] is not None}
    if not ours:
        return slo.not_measured(name, "no process memory was sampled")
    if duration_s < t.soak_min_duration_s:
        return slo.not_measured(name, f"a run of at least {t.soak_min_duration_s:g}s tells "
                                      f"growth from warm-up (soak_min_duration_s)")
    worst = max(ours, key=lambda p: ours[p] or 0.0)
    mb = (ours[worst] or 0.0) / 1e6
    return slo.Check(name, f"<= {t.rss_growth_max_mb_per_hour:g}", round(mb, 2),
                     slo.PASS if mb <= t.rss_growth_max_mb_per_hour else slo.FAIL,
                     f"fastest: {worst}")
