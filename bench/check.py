"""`make bench-check`: run the ratio benchmarks one after another and fail when a ratio misses
its target. Each benchmark prints its verdict lines itself, measured side by side in its own
run: `RATIO name value >= target` (or `<=`) is judged, `FIGURE name value` is only shown.
By hand before a release, not in CI: the CI machine is shared and noisy.

    python bench/check.py [--only api_ingest,e2e_ratio]
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
BENCHES = ("stack_ceiling", "api_ingest", "e2e_ratio", "generator")
LINE = re.compile(r"^(RATIO|FIGURE) (\S+) ([\d.]+)(?: (>=|<=) ([\d.]+))?$")


def judge(output: str) -> list[tuple[str, str, float, str, float | None, bool]]:
    """(kind, name, value, op, target, ok) for each verdict line of a benchmark's output."""
    out = []
    for line in output.splitlines():
        m = LINE.match(line.strip())
        if not m:
            continue
        kind, name, value, op, target = m.groups()
        v, t = float(value), float(target) if target else None
        ok = t is None or (v >= t if op == ">=" else v <= t)
        out.append((kind, name, v, op or "", t, ok))
    return out


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--only", default="", help="comma list of: " + ", ".join(BENCHES))
    args = p.parse_args()
    chosen = [b for b in args.only.split(",") if b] or list(BENCHES)
    unknown = [b for b in chosen if b not in BENCHES]
    if unknown:
        print(f"bench-check: unknown benchmark {unknown[0]!r} ({', '.join(BENCHES)})",
              file=sys.stderr)
        return 2
    rows, failed = [], False
    for bench in chosen:
        print(f"== {bench}", flush=True)
        done = subprocess.run([sys.executable, str(HERE / f"{bench}.py")], text=True,
                              capture_output=True)
        print(done.stdout[-1500:], end="", flush=True)
        found = judge(done.stdout)
        if done.returncode != 0 or not found:
            print(f"{bench}: exit {done.returncode}, no verdict line\n{done.stderr[-800:]}")
            failed = True
        rows += found
    print("\nratio                              measured   target")
    for _kind, name, value, op, target, ok in rows:
        goal = f"{op} {target:g}" if target is not None else "(figure)"
        print(f"  {name:32s} {value:8.2f}   {goal:8s} {'PASS' if ok else 'FAIL'}")
        failed = failed or not ok
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
