"""Soak: the guide's sustained load (1,000 tasks/min, profile `realistic`) for 20 minutes, then
the resident memory of every process of the run, first and last, and its growth per hour
(least-squares after the first 10%, scenarios/soak.py), side by side in one run. A leak shows
as a growth that does not level off; the broker's own growth is its quorum WAL filling (bounded
by raft.wal_max_size_bytes), not a leak.

    python bench/soak.py [--minutes 20] [--instances 3]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--minutes", type=float, default=20.0)
    ap.add_argument("--instances", type=int, default=3)
    ap.add_argument("--out", default=f"runs/soak-{time.strftime('%Y%m%d-%H%M%S')}")
    args = ap.parse_args()
    out = Path(args.out)
    done = subprocess.run([sys.executable, "-m", "rabbitscale", "run", "sustained_tasks",
                           "--profile", "realistic", "--duration", f"{args.minutes * 60:g}s",
                           "--instances", str(args.instances), "--out", str(out)])
    if not (out / "summary.json").exists():  # the run said why, in one line
        return done.returncode or 1
    summary = json.loads((out / "summary.json").read_text())
    print(f"\nsoak of {args.minutes:g} min, verdict {summary['verdict']} ({out})")
    print(f"{'process':28s} {'first MB':>9s} {'last MB':>9s} {'peak MB':>9s} "
          f"{'MB/hour':>9s} {'%/hour':>8s}")
    for name, g in summary["processes"].items():
        slope = g["growth_bytes_per_hour"]
        pct = f"{slope / g['first_bytes'] * 100:+8.1f}" if slope is not None else "       -"
        mb = f"{slope / 1e6:+9.1f}" if slope is not None else "        -"
        print(f"{name:28s} {g['first_bytes'] / 1e6:9.1f} {g['last_bytes'] / 1e6:9.1f} "
              f"{g['peak_bytes'] / 1e6:9.1f} {mb} {pct}")
    check = next(c for c in summary["checks"] if c["name"] == "rss_growth_mb_per_hour")
    print(f"check {check['name']}: {check['measured']} (target {check['target']}) "
          f"{check['verdict']} {check['detail']}")
    return done.returncode


if __name__ == "__main__":
    sys.exit(main())
