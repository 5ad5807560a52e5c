"""Soak figures: growth per hour from sampled process memory, and the check that fails on a
leak (and cannot judge a run too short to tell growth from warm-up)."""

from __future__ import annotations

import pytest

from rabbitscale.judge import slo, soak


def _series(mb_per_hour: float, start_mb: float = 50, seconds: int = 1800, step: int = 5,
            warmup_mb: float = 0.0) -> list[tuple[float, float]]:
    pts = []
    for t in range(0, seconds, step):
        warm = warmup_mb if t > seconds * 0.05 else 0.0  # a step in the first 5%: warm-up
        pts.append((1000.0 + t, (start_mb + warm + mb_per_hour * t / 3600) * 1e6))
    return pts


def test_slope_is_growth_per_hour_after_the_warm_up():
    assert soak.slope_per_hour(_series(30, warmup_mb=40)) == pytest.approx(30e6, rel=1e-6)
    assert soak.slope_per_hour(_series(0)) == pytest.approx(0, abs=1e-3)
    assert soak.slope_per_hour([(0, 1), (1, 2)]) is None  # too few samples


def test_check_fails_on_a_leak_skips_short_runs_and_ignores_the_broker():
    t = slo.Thresholds(rss_growth_max_mb_per_hour=50, soak_min_duration_s=600)
    steady = soak.growth({"stack": _series(3), "generator": _series(1),
                          "broker rabbit@x": _series(400)})
    assert soak.check(steady, 1800, t).verdict == slo.PASS  # the WAL filling is no leak
    leaking = soak.growth({"stack": _series(3), "consumer-2": _series(120)})
    c = soak.check(leaking, 1800, t)
    assert c.verdict == slo.FAIL and "consumer-2" in c.detail and c.measured == 120.0
    assert soak.check(leaking, 120, t).verdict == slo.SKIP
    assert soak.check({}, 1800, t).verdict == slo.SKIP
