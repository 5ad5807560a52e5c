"""`rabbitscale find-max SCENARIO`: the highest arrival rate the stack sustains, found by
stepping the rate up (as PerfTest's rate-vs-latency runs do) until an SLO breaks, then
bisecting between the last rate that held and the first that did not. Each step is a full
`rabbitscale run` in its own vhost; the model's prediction is printed beside the result.

A step holds when every SLO check passes and the consumers kept up: at least
``keep_up_min`` of the arrivals were finished by the end of the schedule (+0.5 s).
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rabbitscale.capacity.plan import predicted_max_per_s
from rabbitscale.core import rundir
from rabbitscale.harness.config import RabbitSettings
from rabbitscale.harness.profiles import Profile
from rabbitscale.scenarios.run import Run, RunOptions
from rabbitscale.scenarios.schedule import Rates


@dataclass(frozen=True)
class Step:
    rate_per_s: float
    verdict: str
    keep_up_ratio: float
    held: bool
    run_dir: str


async def find_max(settings: RabbitSettings, profile: Profile, base: RunOptions, *,
                   start_per_s: float, factor: float = 1.2, bisect_steps: int = 2,
                   max_steps: int = 12, keep_up_min: float = 0.97, out_dir: Path,
                   say: Any = print) -> tuple[float | None, list[Step]]:
    """``base`` is the run whose task rate is varied."""
    steps: list[Step] = []

    async def attempt(rate: float) -> bool:
        i = len(steps) + 1
        opts = dataclasses.replace(
            base, out=out_dir / f"step{i:02d}-{rate:.2f}per_s", quiet=True,
            rates=Rates(rate, base.rates.webhook_rate, base.rates.burst_rates))
        rc = await Run(settings, profile, opts).execute()
        assert opts.out is not None
        summary = json.loads((opts.out / rundir.SUMMARY).read_text())
        keep = float(summary["measured"].get("keep_up_ratio", 0))
        held = rc == 0 and keep >= keep_up_min
        steps.append(Step(rate, summary["verdict"], keep, held, str(opts.out)))
        say(f"  step {i:2d}: {rate * 60:8.1f}/min ({rate:6.2f}/s)  verdict {summary['verdict']}"
            f"  kept up {keep:6.1%}  -> {'holds' if held else 'breaks'}")
        return held

    low, high = None, None
    rate = start_per_s
    while len(steps) < max_steps:
        if await attempt(rate):
            low = rate
            rate *= factor
        else:
            high = rate
            break
    if low is None or high is None:
        return low, steps
    for _ in range(bisect_steps):
        if len(steps) >= max_steps:
            break
        mid = (low + high) / 2
        if await attempt(mid):
            low = mid
        else:
            high = mid
    return low, steps


def run_find_max(settings: RabbitSettings, profile: Profile, base: RunOptions, *,
                 start: float | None,
                 mix: dict[str, float], out_dir: Path, keep_up_min: float = 0.97) -> int:
    predicted = predicted_max_per_s(settings, profile, base.instances, mix)
    start_rate = start if start else max(0.5, predicted * 0.5) if predicted != float("inf") \
        else 10.0
    print(f"find-max {base.scenario}: model predicts {predicted * 60:.1f}/min "
          f"({predicted:.2f}/s); stepping from {start_rate:.2f}/s, {base.duration_s:g}s steps")
    found, steps = asyncio.run(find_max(settings, profile, base, start_per_s=start_rate,
                                        out_dir=out_dir, keep_up_min=keep_up_min))
    result = {"scenario": base.scenario, "predicted_max_per_s": predicted,
              "measured_max_per_s": found,
              "error_pct": (predicted - found) / found * 100 if found else None,
              "steps": [dataclasses.asdict(s) for s in steps]}
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / rundir.FIND_MAX).write_text(json.dumps(result, indent=2))
    if found is None:
        print("no step held: lower --start")
        return 1
    print(f"maximum sustainable: {found * 60:.1f}/min ({found:.2f}/s); model "
          f"{predicted:.2f}/s, error {result['error_pct']:+.1f}%  ({out_dir / rundir.FIND_MAX})")
    return 0
