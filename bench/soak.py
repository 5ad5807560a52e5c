"""Soak: the guide's sustained load (1,000 tasks/min, profile `realistic`) for 20 minutes, then
the resident memory of every process of the run, first and last, and its growth per hour
(least-squares after the first 10%, judge/soak.py), side by side in one run. A leak shows
as a growth that does not level off; the broker's own growth is its quorum WAL filling (bounded
by raft.wal_max_size_bytes), not a leak.

    python bench/soak.py [--minutes 20] [--instances 3]
    python bench/soak.py --from RUN_DIR      # the table of an earlier soak run
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

from rabbitscale.judge import soak


def _mb(bytes_per_hour: float | None) -> str:
    return f"{bytes_per_hour / 1e6:+9.1f}" if bytes_per_hour is not None else f"{'-':>9s}"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--minutes", type=float, default=20.0)
    ap.add_argument("--instances", type=int, default=3)
    ap.add_argument("--out", default=f"runs/soak-{time.strftime('%Y%m%d-%H%M%S')}")
    ap.add_argument("--from", dest="existing", metavar="RUN_DIR",
                    help="print the table of an earlier soak run instead of running one")
    args = ap.parse_args()
    if args.existing:
        out, returncode = Path(args.existing), 0
    else:
        out = Path(args.out)
        returncode = subprocess.run([
            sys.executable, "-m", "rabbitscale", "run", "sustained_tasks", "--profile",
            "realistic", "--duration", f"{args.minutes * 60:g}s", "--instances",
            str(args.instances), "--out", str(out)]).returncode
    if not (out / "summary.json").exists():  # the run said why, in one line
        print(f"error: {out}: no summary.json", file=sys.stderr)
        return returncode or 2
    summary = json.loads((out / "summary.json").read_text())
    minutes = summary.get("duration_s", args.minutes * 60) / 60
    print(f"\nsoak of {minutes:g} min, verdict {summary['verdict']} ({out})")
    series = soak.read(out)
    print(f"{'process':28s} {'first MB':>9s} {'last MB':>9s} {'peak MB':>9s} "
          f"{'MB/hour':>9s} {'2nd half':>9s}")
    for name, g in summary["processes"].items():
        slope = g["growth_bytes_per_hour"]
        late = soak.slope_per_hour(series.get(name, []), skip_fraction=0.5)
        print(f"{name:28s} {g['first_bytes'] / 1e6:9.1f} {g['last_bytes'] / 1e6:9.1f} "
              f"{g['peak_bytes'] / 1e6:9.1f} {_mb(slope)} {_mb(late)}")
    print("MB/hour: least-squares slope after the first 10%; 2nd half: the same over the last "
          "half (a bounded window that has filled levels off, a leak does not)")
    check = next(c for c in summary["checks"] if c["name"] == "rss_growth_mb_per_hour")
    print(f"check {check['name']}: {check['measured']} (target {check['target']}) "
          f"{check['verdict']} {check['detail']}")
    return returncode


if __name__ == "__main__":
    sys.exit(main())
