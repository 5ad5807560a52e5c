"""Whole-process time of `rabbitscale plan` (it must answer in under half a second, hence lazy
imports) beside a bare `python -c pass` and an import of the heavy stack, in one run.

    python bench/plan_latency.py [--runs 10]
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time


def timed(cmd: list[str], runs: int) -> float:
    samples = []
    for _ in range(runs):
        t0 = time.perf_counter()
        done = subprocess.run(cmd, capture_output=True)
        if done.returncode not in (0, 1):  # plan exits 1 when a figure FAILs: still an answer
            raise SystemExit(f"{' '.join(cmd)}: exit {done.returncode}")
        samples.append(time.perf_counter() - t0)
    return statistics.median(samples)


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--runs", type=int, default=10)
    args = p.parse_args()
    py = sys.executable
    cases = [
        ("python -c pass", [py, "-c", "pass"]),
        ("rabbitscale plan", [py, "-m", "rabbitscale", "plan"]),
        ("rabbitscale plan --json", [py, "-m", "rabbitscale", "plan", "--json"]),
        ("import rabbitscale.harness.stack", [py, "-c", "import rabbitscale.harness.stack"]),
    ]
    base = None
    print(f"median of {args.runs} runs, whole process:")
    for label, cmd in cases:
        t = timed(cmd, args.runs)
        base = base or t
        print(f"  {label:42s} {t * 1000:7.1f} ms   x{t / base:5.2f} of bare python")
    plan = timed(cases[1][1], args.runs)
    print(f"rabbitscale plan: {plan * 1000:.0f} ms ({'under' if plan < 0.5 else 'OVER'} 500 ms)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
