"""Every scenario, defined once: its name, the arrival streams it schedules, the Locust file
that drives it, how many users it needs and what it needs of the system under test.

The CLI takes its choices from here, a run its schedule and locustfile, a black-box run the
scenarios it may drive, find-max the scenarios it can step. No other module spells a scenario
name.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from rabbitscale.core.errors import BadInput
from rabbitscale.scenarios.pacing import RateFn, constant, stepped
from rabbitscale.scenarios.schedule import Rates, burst_steps, scale_out_steps

LOCUSTFILES = Path(__file__).resolve().parent / "locustfiles"
TASKS, WEBHOOKS = "tasks", "webhooks"  # the arrival streams
BACKLOG = "backlog"  # `run backlog`: no arrival schedule: fill, hold, drain (engine/backlog.py)
# Locust users per arrival stream and process: each takes slots and hands each send to a
# greenlet of its own (the process's --max-in-flight bounds the sends, not the users), so a few
# keep any rate; more than one keeps a slot from waiting on one user's wake-up
DISPATCHERS_PER_STREAM = 4


@dataclass(frozen=True)
class Scenario:
    name: str
    summary: str
    schedule: Callable[[Rates, float], dict[str, RateFn]]  # (rates, run time) -> streams
    step_rate: bool = False  # one task stream: what find-max can step
    scales_out: bool = False  # the run starts consumer instances mid-run (not black-box)

    def streams(self, rates: Rates, run_time_s: float) -> dict[str, RateFn]:
        """Rate function of each arrival stream (``TASKS``, ``WEBHOOKS``)."""
        return self.schedule(rates, run_time_s)

    @property
    def locustfile(self) -> Path:
        return LOCUSTFILES / f"{self.name}.py"

    def users(self, rates: Rates) -> int:
        """Locust users: ``DISPATCHERS_PER_STREAM`` for each arrival stream."""
        return DISPATCHERS_PER_STREAM * len(self.streams(rates, 60.0))


def _webhooks(rates: Rates, run_time_s: float) -> RateFn:
    return stepped(burst_steps(run_time_s, rates.webhook_rate, rates.burst_rates))


SUSTAINED_TASKS = Scenario(
    "sustained_tasks", "async tasks at --task-rate (1,000/min) in the --task-mix",
    lambda r, t: {TASKS: constant(r.task_rate)}, step_rate=True)
WEBHOOK_BURST = Scenario(
    "webhook_burst", "webhooks at a baseline, then bursts at 50/s and 100/s",
    lambda r, t: {WEBHOOKS: _webhooks(r, t)})
MIXED_PEAK = Scenario(
    "mixed_peak", "sustained tasks and webhook bursts at the same time",
    lambda r, t: {TASKS: constant(r.task_rate), WEBHOOKS: _webhooks(r, t)})
SCALE_OUT = Scenario(
    "scale_out", "tasks stepping 1x, 1.5x, 2x while instances grow to --scale-to",
    lambda r, t: {TASKS: stepped(scale_out_steps(t, r.task_rate))}, step_rate=True,
    scales_out=True)

SCENARIOS: dict[str, Scenario] = {s.name: s for s in (
    SUSTAINED_TASKS, WEBHOOK_BURST, MIXED_PEAK, SCALE_OUT)}
STEPPABLE = tuple(name for name, s in SCENARIOS.items() if s.step_rate)


def get(name: str) -> Scenario:
    try:
        return SCENARIOS[name]
    except KeyError:
        raise BadInput(f"unknown scenario {name!r} (known: {', '.join(SCENARIOS)})") from None
