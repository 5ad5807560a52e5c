"""The find-max search against simulated systems (it must resolve a 15% error, repeat the steps
that decide, say "lower bound" when nothing broke, flag non-monotonic results and stop on a
load generator that cannot produce the rate), and calibration's bad input. The model against
the real broker is tests/test_validation.py."""

from __future__ import annotations

import asyncio
import random
from collections.abc import Callable
from pathlib import Path

import pytest

from rabbitscale.cli.main import main
from rabbitscale.experiments.find_max import BROKE, HELD, INCONCLUSIVE, Search, Step, summarize
from rabbitscale.experiments.validation import bracket_rates


def system(capacity: float, *, noise: Callable[[float, int], str | None] | None = None,
           load_limit: float = float("inf")) -> tuple[Callable, list[float]]:
    """A step runner for a system that holds up to ``capacity``; ``noise(rate, i)`` may
    override the i-th step's outcome."""
    seen: list[float] = []

    async def attempt(rate: float) -> Step:
        seen.append(rate)
        outcome = HELD if rate <= capacity else BROKE
        if rate > load_limit:
            outcome = INCONCLUSIVE
        if noise and (forced := noise(rate, len(seen))):
            outcome = forced
        return Step(rate, outcome, "PASS" if outcome == HELD else "FAIL", 1.0, "")

    return attempt, seen


def run(search: Search, start: float) -> tuple[float | None, float | None]:
    return asyncio.run(search.find(start))


@pytest.mark.parametrize("capacity", [7.0, 19.0, 23.5, 26.0, 140.0])
def test_search_resolves_the_maximum_to_its_resolution(capacity):
    attempt, _ = system(capacity)
    s = Search(attempt, factor=1.2, resolution=0.05)
    low, high = run(s, capacity * 0.6)  # find-max starts below the model's prediction
    assert low is not None and high is not None
    assert low <= capacity < high and (high - low) / low <= 0.05
    # a 15% model error is always told apart: the bracket is three times finer
    assert abs(low - capacity) / capacity < 0.05


def test_a_transient_break_is_repeated_and_outvoted():
    attempt, seen = system(20.0, noise=lambda rate, i: BROKE if i == 2 else None)
    s = Search(attempt, factor=1.2, resolution=0.05)
    low, _ = run(s, 12.0)
    assert low is not None and low > 18.0  # the one failure at 14.4/s did not cap it
    assert seen.count(seen[1]) >= 2  # the break was run again
    assert not s.non_monotonic()


def test_nothing_broke_is_a_lower_bound():
    attempt, _ = system(1e9)
    s = Search(attempt, factor=1.2, max_steps=5)
    low, high = run(s, 10.0)
    assert high is None and low == pytest.approx(10 * 1.2**4)
    doc = summarize(s, low, high, predicted=30.0)
    assert doc.bounded is False and doc.error_pct is None


def test_a_start_that_breaks_steps_down():
    attempt, _ = system(5.0)
    low, high = run(Search(attempt, factor=1.2, resolution=0.05), 12.0)
    assert low is not None and high is not None and low <= 5.0 < high


def test_a_load_generator_that_cannot_keep_up_stops_the_search():
    attempt, _ = system(100.0, load_limit=30.0)
    s = Search(attempt, factor=1.2)
    low, high = run(s, 20.0)
    assert high is None and low is not None and low <= 30.0
    assert "load generator" in s.stopped


def test_a_step_whose_generator_stalled_once_is_run_again():
    # the 2nd step is INVALID once (a stall of the generator's process); the search goes on
    attempt, seen = system(20.0, noise=lambda rate, i: INCONCLUSIVE if i == 2 else None)
    s = Search(attempt, factor=1.2, resolution=0.05)
    low, high = run(s, 12.0)
    assert seen[1] == seen[2] and not s.stopped  # the same rate again
    assert low is not None and high is not None and low <= 20.0 < high
    # without retries the same stall ends the search
    attempt, _ = system(20.0, noise=lambda rate, i: INCONCLUSIVE if i == 2 else None)
    s = Search(attempt, factor=1.2, resolution=0.05, inconclusive_retries=0)
    run(s, 12.0)
    assert "load generator" in s.stopped


def test_non_monotonic_results_are_flagged():
    # a system that breaks around 15/s every time but holds above it: in doubt
    def noise(rate: float, i: int) -> str | None:
        return BROKE if 14.0 < rate < 16.0 else None

    attempt, _ = system(30.0, noise=noise)
    s = Search(attempt, factor=1.2, resolution=0.05)
    run(s, 10.0)
    s.decisions.append((20.0, HELD))
    assert s.non_monotonic() and s.non_monotonic()[0][0] < 20.0


def test_bracket_repeats_surprises_and_can_fail():
    lo, hi = bracket_rates(20.0)
    assert lo == pytest.approx(20 / 1.15) and hi == pytest.approx(20 / 0.85)
    right, _ = system(21.0)
    assert asyncio.run(Search(right).bracket(lo, hi)) == (HELD, BROKE)
    # a model 30% too optimistic: the system breaks at the low end, confirmed by a repeat
    wrong, seen = system(20.0 / 1.3)
    assert asyncio.run(Search(wrong).bracket(lo, hi))[0] == BROKE
    assert seen.count(lo) >= 2
    # a model 30% too pessimistic: it holds at the high end
    slow_model, _ = system(20.0 * 1.3)
    assert asyncio.run(Search(slow_model).bracket(lo, hi))[1] == HELD


def test_search_against_a_noisy_system_still_lands_within_15_percent():
    rng = random.Random(7)

    def noise(rate: float, i: int) -> str | None:  # 5% of steps fail at random
        return BROKE if rng.random() < 0.05 else None

    for capacity in (12.0, 20.0, 33.0):
        attempt, _ = system(capacity, noise=noise)
        low, _ = run(Search(attempt, factor=1.2, resolution=0.05), capacity * 0.7)
        assert low is not None and abs(low - capacity) / capacity <= 0.15


def test_calibrate_bad_input(tmp_path, capsys):
    assert main(["plan", "--calibrate", str(tmp_path / "nope")]) == 2
    assert "no such directory" in capsys.readouterr().err
    Path(tmp_path / "empty").mkdir()
    assert main(["plan", "--calibrate", str(tmp_path / "empty")]) == 2


def test_validate_refuses_an_unknown_case(capsys):
    assert main(["validate", "--case", "nope"]) == 2
    assert "--case: invalid choice: 'nope'" in capsys.readouterr().err


@pytest.mark.parametrize(("bracket", "within", "inconclusive", "shown"), [
    (("holds", "breaks"), True, "", "PASS"),
    (("inconclusive", "breaks"), False, "the step at 52.17/s stayed inconclusive",
     "INCONCLUSIVE"),
    (("breaks", "breaks"), False, "", "FAIL"),
])
def test_a_case_is_shown_inconclusive_never_failed_when_its_step_stalled(
        bracket, within, inconclusive, shown):
    from rabbitscale.experiments.validation import CaseResult, render, verdict

    r = CaseResult("lognormal", "pooled, lognormal", 60.0, bracket=bracket, within=within,
                   inconclusive=inconclusive)
    assert verdict(r) == shown
    assert f"  {shown}  pooled, lognormal" in render([r])
    if inconclusive:
        assert inconclusive in render([r])
