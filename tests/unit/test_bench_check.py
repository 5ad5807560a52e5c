"""`make bench-check` judges the benchmarks' verdict lines: a ratio below (or above) its
target fails, a figure is only shown, other output is ignored."""

from __future__ import annotations

import importlib.util
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def _check():
    spec = importlib.util.spec_from_file_location("bench_check", ROOT / "bench" / "check.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_ratio_lines_are_judged_against_their_targets():
    rows = _check().judge("round 1: whatever\nRATIO api_ingest 0.79 >= 0.8\n"
                          "RATIO e2e_p99_http_vs_raw 1.90 <= 2.0\n"
                          "FIGURE generator_http_tasks_per_s 1250\nRATIO broken\n")
    assert [(r[1], r[5]) for r in rows] == [("api_ingest", False),
                                           ("e2e_p99_http_vs_raw", True),
                                           ("generator_http_tasks_per_s", True)]
    assert rows[2][4] is None  # a figure has no target
