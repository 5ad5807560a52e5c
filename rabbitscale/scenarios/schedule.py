"""Arrival schedules: the rates a run asks for and the shapes scenarios are made of (bursts,
steps). The Locust files pace users with them and `rabbitscale run` uses the same functions to
know how many arrivals to expect and when the bursts are, so the SLO checks judge what was
actually asked for. Which scenario uses which shape: scenarios/registry.py."""

from __future__ import annotations

from dataclasses import dataclass

from rabbitscale.scenarios.pacing import RateFn, Step

# fractions of the run: baseline, burst 1, baseline, burst 2, baseline
BURST_PHASES = ((0.00, None), (0.25, 0), (0.40, None), (0.60, 1), (0.75, None))


@dataclass(frozen=True)
class Rates:
    task_rate: float  # per second
    webhook_rate: float
    burst_rates: tuple[float, ...]


def burst_steps(run_time_s: float, baseline: float, bursts: tuple[float, ...]) -> list[Step]:
    return [Step(frac * run_time_s,
                 baseline if which is None or which >= len(bursts) else bursts[which])
            for frac, which in BURST_PHASES]


def burst_windows(run_time_s: float, bursts: tuple[float, ...]) -> list[tuple[float, float, float]]:
    """(start_s, end_s, rate) of each burst."""
    out = []
    for i, (frac, which) in enumerate(BURST_PHASES):
        if which is not None and which < len(bursts):
            out.append((frac * run_time_s, BURST_PHASES[i + 1][0] * run_time_s, bursts[which]))
    return out


def scale_out_steps(run_time_s: float, base: float) -> list[Step]:
    return [Step(0, base), Step(run_time_s / 3, base * 1.5), Step(2 * run_time_s / 3, base * 2)]


def expected_arrivals(rate: RateFn, start_s: float, end_s: float, step_s: float = 0.001) -> float:
    """Integral of a (piecewise constant) rate over [start_s, end_s)."""
    n = int(round((end_s - start_s) / step_s))
    return sum(rate(start_s + (i + 0.5) * step_s) for i in range(n)) * step_s
