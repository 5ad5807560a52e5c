"""The capacity model against the real broker (experiments/validation.py): every case must
hold at P/1.15 and break at P/0.85 (the model within 15% of the measured maximum), the burst's
peak backlog within 20% of the model's, the latency model's p99 queue wait within 25% (or
10 ms) of the measured one at the step that held (utilisation 0.87), and deliberately wrong
models must fail the same tests. Two 8 s steps per case; `rabbitscale validate --search`
measures the maxima themselves (docs/benchmarks.md keeps that table)."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

import pytest

from rabbitscale.experiments import sweep
from rabbitscale.experiments.find_max import BROKE, HELD, Search, run_attempt
from rabbitscale.experiments.validation import (
    CASES,
    base_options,
    bracket_rates,
    burst_case,
    capacity_case,
    latency_point,
    render,
    stack_engines,
)
from rabbitscale.topology.profile_file import get_profile
from rabbitscale.topology.settings import load_settings

CONDUIT = get_profile("conduit")

# the cases one after another on two xdist workers (about four minutes each), so that the
# slowest group of the tier is not these alone
FIRST, SECOND = pytest.mark.xdist_group("validation"), pytest.mark.xdist_group("validation-2")
SPLIT = {"rate_limited": FIRST, "lognormal": FIRST, "single_active": FIRST}


def _settings():
    env = dict(os.environ)
    env.setdefault("CONDUITLLM__RABBITMQ__HOST", "127.0.0.1")
    return load_settings(environ=env)


@pytest.mark.parametrize("case", [pytest.param(c, id=c.name, marks=SPLIT.get(c.name, SECOND))
                                  for c in CASES])
def test_model_within_15_percent(case, tmp_path):
    result = asyncio.run(capacity_case(_settings(), CONDUIT, case, tmp_path))
    print(render([result]))
    if result.inconclusive:  # a step stalled three times: no verdict either way
        pytest.skip(f"capacity inconclusive: {result.inconclusive}")
    assert result.bracket == (HELD, BROKE), [
        (s["rate_per_s"], s["outcome"], s["keep_up_ratio"], s["failed_checks"])
        for s in result.steps]
    assert result.latency is not None
    if result.latency["stalled"]:  # run three times on a stalled machine: no verdict either way
        pytest.skip(f"latency inconclusive: {result.latency['stalled']}")
    assert result.latency["within"], result.latency


@SECOND
def test_burst_backlog_within_20_percent(tmp_path):
    result = asyncio.run(burst_case(_settings(), CONDUIT, tmp_path))
    print(render([result]))
    assert result.measured, "no backlog measured"
    # an exact prediction is an error of 0.0, which must pass (``or`` would read it as none)
    assert result.error_pct is not None and abs(result.error_pct) <= 20, \
        (result.predicted, result.measured)


@SECOND
def test_a_wrong_model_fails_the_same_test(tmp_path):
    """The pooled case judged with a model that ignores concurrency (one message at a time
    per instance: half the real capacity): the system holds at that model's upper bound
    P/0.85, which the bracket requires to break, so the validation calls the model wrong.
    (One step: the upper end is what fails.)"""
    case = CASES[0]
    settings = _settings()
    wrong = case.predicted_per_s(settings, CONDUIT) / 2
    _, high = bracket_rates(wrong)
    search = Search(run_attempt(stack_engines(settings)(case.profile(CONDUIT), case.instances),
                                base_options(case, CONDUIT), tmp_path, 0.97, print, [0]))
    # run as the bracket runs it (an INVALID step is run again), expected to hold
    assert asyncio.run(search.decide(high, confirm=BROKE)) == HELD, search.steps
    step = search.steps[-1]  # the bracket needs BROKE here: the model fails
    # the latency model at that step (utilisation 0.59), right, then wrong: M/M/1, the pooled
    # endpoint's six slots taken for one server
    predicted = case.predicted_per_s(settings, CONDUIT)
    right = latency_point(settings, CONDUIT, case, high, Path(step.run_dir), predicted)
    wrong_latency = latency_point(settings, CONDUIT, case, high, Path(step.run_dir), predicted,
                                  wrong=sweep.one_server)
    print(f"\n[latency] right {right}\n[latency] wrong {wrong_latency}")
    if right["stalled"]:
        pytest.skip(f"latency inconclusive: {right['stalled']}")
    assert right["within"] and not wrong_latency["within"]
