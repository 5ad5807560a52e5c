"""``find_max.json``: the highest rate a system sustained, its steps and why the search
stopped."""

from __future__ import annotations

from pydantic import Field

from rabbitscale.results.summary import Model


class StepResult(Model):
    """One run of the search."""

    rate_per_s: float
    outcome: str = Field(description="holds | breaks | inconclusive")
    verdict: str
    keep_up_ratio: float
    run_dir: str
    failed_checks: list[str] = Field(default_factory=list)
    held: bool


class Decision(Model):
    """The majority outcome at a rate (a break is repeated before it counts)."""

    rate_per_s: float
    outcome: str


class FindMaxResult(Model):
    """find-max: the measured maximum beside the model's, and every step."""

    scenario: str
    system: str = Field("", description="what the steps loaded: the reference stack simulating "
                                        "a profile, or the system at a target")
    predicted_max_per_s: float | None
    measured_max_per_s: float | None
    upper_bound_per_s: float | None
    bounded: bool
    error_pct: float | None
    non_monotonic: list[tuple[float, float]] = Field(
        default_factory=list, description="(broke, held) pairs: a rate broke below one that held")
    stopped: str = ""
    steps: list[StepResult]
    decisions: list[Decision]
