"""Arrival schedules of each scenario, in one place: the Locust files pace users with them and
`rabbitscale run` uses the same functions to know how many arrivals to expect and when the
bursts are, so the SLO checks judge what was actually asked for."""

from __future__ import annotations

from dataclasses import dataclass

from rabbitscale.scenarios.pacing import RateFn, Step, constant, stepped

SCENARIOS = ("sustained_tasks", "webhook_burst", "mixed_peak", "scale_out")
TASK_SCENARIOS = ("sustained_tasks", "scale_out")  # one task stream: what find-max can step
BACKLOG = "backlog"  # no arrival schedule: fill, hold, drain (scenarios/backlog.py)
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


def streams(scenario: str, rates: Rates, run_time_s: float) -> dict[str, RateFn]:
    """Rate function of each arrival stream ("tasks", "webhooks") of a scenario."""
    webhooks = stepped(burst_steps(run_time_s, rates.webhook_rate, rates.burst_rates))
    if scenario == "sustained_tasks":
        return {"tasks": constant(rates.task_rate)}
    if scenario == "webhook_burst":
        return {"webhooks": webhooks}
    if scenario == "mixed_peak":
        return {"tasks": constant(rates.task_rate), "webhooks": webhooks}
    if scenario == "scale_out":
        return {"tasks": stepped(scale_out_steps(run_time_s, rates.task_rate))}
    raise ValueError(f"unknown scenario {scenario!r} (known: {', '.join(SCENARIOS)})")


def expected_arrivals(rate: RateFn, start_s: float, end_s: float, step_s: float = 0.001) -> float:
    """Integral of a (piecewise constant) rate over [start_s, end_s)."""
    n = int(round((end_s - start_s) / step_s))
    return sum(rate(start_s + (i + 0.5) * step_s) for i in range(n)) * step_s
