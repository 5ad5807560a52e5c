"""`rabbitscale find-max SCENARIO`: the highest arrival rate a system sustains, found by
stepping the rate (as PerfTest's rate-vs-latency runs do) until a step breaks, then bisecting
between the last rate that held and the first that broke. Each step is a full run of any
engine kind (engine/base.py: the reference stack in a vhost of its own, or a deployed system
at --target); the model's prediction is printed beside the result.

A step holds when every SLO check passes and the consumers kept up: at least ``keep_up_min``
of the arrivals were finished (by their completion records' own timestamps) by the end of the
schedule + 0.5 s. A step whose load generator could not produce the rate (arrivals below the
schedule, or the run INVALID: sends late, its CPU saturated) proves nothing about the system:
it is run again, up to ``inconclusive_retries`` times (on a shared machine one stall of the
generator's process makes a step INVALID), and if it stays inconclusive that ends the
search. A break is repeated before it counts (the majority of up to three runs decides), so
one transient failure does not fix the upper bound; a result with no break is reported as a
lower bound; a break below a rate that held is reported as non-monotonic.
"""

from __future__ import annotations

import asyncio
import dataclasses
import math
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rabbitscale.core import rundir
from rabbitscale.core.verdicts import FAIL, INVALID
from rabbitscale.engine.base import EngineFactory, LoadOptions
from rabbitscale.results.find_max import FindMaxResult
from rabbitscale.results.summary import read as read_summary

HELD, BROKE, INCONCLUSIVE = "holds", "breaks", "inconclusive"
LOAD_CHECK = "achieved_rate_ratio"  # the load generator's own check, not the system's


@dataclass(frozen=True)
class Step:
    rate_per_s: float
    outcome: str  # holds | breaks | inconclusive
    verdict: str
    keep_up_ratio: float
    run_dir: str
    failed_checks: tuple[str, ...] = ()

    @property
    def held(self) -> bool:
        return self.outcome == HELD


Attempt = Callable[[float], Awaitable[Step]]


@dataclass
class Search:
    """The search over rates, apart from how a step is run (so it is tested with fakes)."""

    attempt: Attempt
    factor: float = 1.2
    resolution: float = 0.05  # stop bisecting when (high - low) / low is this small
    max_steps: int = 16
    inconclusive_retries: int = 2  # an inconclusive step is run again this many times
    steps: list[Step] = field(default_factory=list)
    decisions: list[tuple[float, str]] = field(default_factory=list)  # rate, majority outcome
    stopped: str = ""

    async def _run(self, rate: float) -> Step:
        """A step at ``rate``, run again while its generator fell short (inconclusive), up to
        ``inconclusive_retries`` times and within ``max_steps``."""
        for _ in range(self.inconclusive_retries + 1):
            step = await self.attempt(rate)
            self.steps.append(step)
            if step.outcome != INCONCLUSIVE or len(self.steps) >= self.max_steps:
                break
        return step

    async def decide(self, rate: float, confirm: str) -> str:
        """The outcome at ``rate``; an outcome equal to ``confirm`` is repeated and the
        majority of up to three runs decides. Inconclusive ends the decision at once."""
        outcome = await self._decide(rate, confirm)
        self.decisions.append((rate, outcome))
        return outcome

    async def _decide(self, rate: float, confirm: str) -> str:
        first = await self._run(rate)
        if first.outcome != confirm or first.outcome == INCONCLUSIVE:
            return first.outcome
        if len(self.steps) >= self.max_steps:
            return first.outcome
        second = await self._run(rate)
        if second.outcome in (first.outcome, INCONCLUSIVE) or len(self.steps) >= self.max_steps:
            return second.outcome
        return (await self._run(rate)).outcome

    async def find(self, start: float) -> tuple[float | None, float | None]:
        """(highest rate that held, lowest that broke): up from ``start`` until a break (down
        if ``start`` itself breaks), then bisection to ``resolution``."""
        low: float | None = None
        high: float | None = None
        rate = start
        while len(self.steps) < self.max_steps:
            outcome = await self.decide(rate, confirm=BROKE)
            if outcome == INCONCLUSIVE:
                self.stopped = f"the load generator could not produce {rate:.2f}/s"
                return low, high
            if outcome == HELD:
                low = rate
                if high is not None:
                    break
                rate *= self.factor
            else:
                high = rate
                if low is not None:
                    break
                rate /= self.factor
        if low is None or high is None:
            self.stopped = self.stopped or "step limit reached"
            return low, high
        while (high - low) / low > self.resolution and len(self.steps) < self.max_steps:
            mid = math.sqrt(low * high)
            outcome = await self.decide(mid, confirm=BROKE)
            if outcome == INCONCLUSIVE:
                self.stopped = f"the load generator could not produce {mid:.2f}/s"
                break
            if outcome == HELD:
                low = mid
            else:
                high = mid
        return low, high

    async def bracket(self, low: float, high: float) -> tuple[str, str]:
        """Outcomes at ``low`` (expected to hold) and ``high`` (expected to break), each
        surprise repeated: a model within the bracket holds at low and breaks at high."""
        return (await self.decide(low, confirm=BROKE), await self.decide(high, confirm=HELD))

    def non_monotonic(self) -> list[tuple[float, float]]:
        """(broke, held) pairs of decided rates where a rate broke below one that held: noise
        or a system whose capacity changed during the search; the result is in doubt."""
        held = [r for r, o in self.decisions if o == HELD]
        broke = [r for r, o in self.decisions if o == BROKE]
        return sorted({(b, h) for b in broke for h in held if b < h})


def run_attempt(factory: EngineFactory, base: LoadOptions, out_dir: Path, keep_up_min: float,
                say: Any, counter: list[int]) -> Attempt:
    """A step: one quiet run of the factory's kind at ``rate``, into a directory of its own."""

    async def attempt(rate: float) -> Step:
        counter[0] += 1
        i = counter[0]
        opts = base.at_rate(rate, out_dir / f"step{i:02d}-{rate:.2f}per_s")
        rc = await factory(opts).execute()
        assert opts.out is not None
        summary = read_summary(opts.out / rundir.SUMMARY)
        keep = summary.measured.keep_up_ratio or 0.0
        failed = tuple(summary.failed((FAIL,)))
        if LOAD_CHECK in failed or summary.verdict == INVALID:
            outcome = INCONCLUSIVE  # the generator, not the system, fell short
        elif rc == 0 and keep >= keep_up_min:
            outcome = HELD
        else:
            outcome = BROKE
        step = Step(rate, outcome, summary.verdict, keep, str(opts.out), failed)
        say(f"  step {i:2d}: {rate * 60:8.1f}/min ({rate:6.2f}/s)  verdict {step.verdict}"
            f"  kept up {keep:6.1%}  -> {outcome}"
            + (f"  ({', '.join(failed)})" if failed else ""))
        return step

    return attempt


@dataclass(frozen=True)
class Stepping:
    """How the search steps: by ``factor`` up (or down), bisecting to ``resolution``, at most
    ``max_steps`` runs; a step holds when at least ``keep_up_min`` of its arrivals finished in
    time."""

    factor: float = 1.2
    resolution: float = 0.05
    max_steps: int = 16
    keep_up_min: float = 0.97


async def find_max(factory: EngineFactory, base: LoadOptions, start_per_s: float,
                   out_dir: Path, stepping: Stepping = Stepping(), say: Any = print
                   ) -> tuple[float | None, float | None, Search]:
    """``base`` is the run whose task rate is varied: (highest rate that held, lowest that
    broke, the search with its steps and why it stopped)."""
    search = Search(run_attempt(factory, base, out_dir, stepping.keep_up_min, say, [0]),
                    factor=stepping.factor, resolution=stepping.resolution,
                    max_steps=stepping.max_steps)
    low, high = await search.find(start_per_s)
    return low, high, search


def summarize(search: Search, low: float | None, high: float | None, predicted: float,
              scenario: str = "", system: str = "") -> FindMaxResult:
    """find_max.json: the measured maximum, whether it is bounded, and the model beside it."""
    return FindMaxResult.model_validate({
        "scenario": scenario, "system": system,
        "predicted_max_per_s": None if math.isinf(predicted) else predicted,
        "measured_max_per_s": low, "upper_bound_per_s": high,
        "bounded": low is not None and high is not None,
        "error_pct": (predicted - low) / low * 100 if low and high and
        not math.isinf(predicted) else None,
        "non_monotonic": search.non_monotonic(), "stopped": search.stopped,
        "steps": [dataclasses.asdict(s) | {"held": s.held} for s in search.steps],
        "decisions": [{"rate_per_s": r, "outcome": o} for r, o in search.decisions],
    })


def run_find_max(factory: EngineFactory, base: LoadOptions, *, predicted: float,
                 system: str, start: float | None, out_dir: Path,
                 stepping: Stepping = Stepping()) -> int:
    """``system``: what the steps load (the reference stack simulating a profile, or the
    system at a target), said in every output."""
    start_rate = start if start else max(0.5, predicted * 0.7) if not math.isinf(predicted) \
        else 10.0
    print(f"find-max {base.scenario} on {system}: model predicts "
          f"{_rate(predicted)}; stepping from {start_rate:.2f}/s, {base.duration_s:g}s steps, "
          f"resolution {stepping.resolution:.0%}")
    low, high, search = asyncio.run(find_max(factory, base, start_rate, out_dir, stepping))
    result = summarize(search, low, high, predicted, base.scenario, system)
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / rundir.FIND_MAX).write_text(result.model_dump_json(indent=2))
    for b, h in result.non_monotonic:
        print(f"warning: {b:.2f}/s broke although {h:.2f}/s held: the result is in doubt")
    if low is None:
        print(f"no step held{': ' + search.stopped if search.stopped else ''}: lower --start")
        return 1
    if high is None:
        print(f"at least {low * 60:.1f}/min ({low:.2f}/s) on {system}: no step broke, a lower "
              f"bound ({search.stopped}); raise --start  ({out_dir / rundir.FIND_MAX})")
        return 0
    error = f", error {result.error_pct:+.1f}%" if result.error_pct is not None else ""
    print(f"maximum sustainable on {system}: {low * 60:.1f}/min ({low:.2f}/s), breaks at "
          f"{high:.2f}/s; model {_rate(predicted)}{error}  ({out_dir / rundir.FIND_MAX})")
    return 0


def _rate(v: float) -> str:
    return "no finite capacity (no work per message known)" if math.isinf(v) else \
        f"{v * 60:.1f}/min ({v:.2f}/s)"
