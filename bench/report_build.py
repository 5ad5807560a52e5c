"""Report build time for a long run: 1 hour of 1-second samples for 10 queues and 1 million
latency samples, beside the same build on the small recorded fixture, in one run.

    python bench/report_build.py
"""

from __future__ import annotations

import json
import random
import shutil
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd

from rabbitscale.core import latency
from rabbitscale.reports.report import build

FIXTURE = Path(__file__).resolve().parent.parent / "tests" / "fixtures" / "run_burst"
QUEUES = [f"queue-{i}" for i in range(10)]


def synthesize(d: Path, seconds: int = 3600, samples: int = 1_000_000) -> None:
    shutil.copytree(FIXTURE, d)
    rng = random.Random(1)
    t0 = 1_800_000_000.0
    rows = []
    for s in range(seconds):
        for i, q in enumerate(QUEUES):
            depth = max(0, int(200 + 150 * ((s + i * 60) % 600 - 300) / 300))
            rows.append({"t": t0 + s, "queue": q, "messages": depth, "ready": depth,
                         "unacked": 25, "consumers": 3, "publish_rate": 16.7,
                         "deliver_rate": 16.7, "ack_rate": 16.7, "ready_now": depth,
                         "oldest_age_s": depth / 16.7})
    pd.DataFrame(rows).to_csv(d / "broker_queues.csv", index=False)
    pd.DataFrame({"t": [t0 + s for s in range(seconds)],
                  "mem_used": [2e8 + 1e5 * (s % 600) for s in range(seconds)],
                  "mem_limit": [2.4e9] * seconds, "mem_alarm": [False] * seconds,
                  "disk_free": [5e10] * seconds, "disk_free_limit": [8e9] * seconds,
                  "disk_alarm": [False] * seconds, "fd_used": [100] * seconds,
                  "fd_total": [1024] * seconds, "sockets_used": [20] * seconds,
                  "connections": [20] * seconds, "channels": [60] * seconds}
                 ).to_csv(d / "broker_node.csv", index=False)
    pd.DataFrame([{"t": int(t0) + s, "queue": q, "completed": 17}
                  for s in range(seconds) for q in QUEUES]).to_csv(d / "throughput.csv",
                                                                    index=False)
    hdr = d / "hdr"
    shutil.rmtree(hdr)
    hdr.mkdir()
    per = samples // (len(QUEUES) * 4)
    summary = json.loads((d / "summary.json").read_text())
    summary["started_at"] = t0
    summary["measured"]["latency_ms"] = {}
    for q in QUEUES:
        summary["measured"]["latency_ms"][q] = {}
        for metric in ("e2e", "queue_wait", "processing", "publish_delay"):
            h = latency.new_histogram()
            for _ in range(per):
                latency.record_s(h, rng.lognormvariate(-4, 1))
            (hdr / f"{q}.{metric}.hdr").write_text(latency.encode(h))
            summary["measured"]["latency_ms"][q][metric] = latency.summary_ms(h)
    (d / "summary.json").write_text(json.dumps(summary))


def timed(run_dir: Path) -> float:
    t = time.perf_counter()
    build(run_dir)
    return time.perf_counter() - t


def main() -> int:
    with tempfile.TemporaryDirectory() as tmp:
        small, big = Path(tmp) / "small", Path(tmp) / "big"
        shutil.copytree(FIXTURE, small)
        t = time.perf_counter()
        synthesize(big)
        print(f"synthesized 1 h x 10 queues, 1,000,000 latency samples in "
              f"{time.perf_counter() - t:.1f}s (not part of the build)")
        timed(small)  # warm matplotlib's font cache
        s, b = timed(small), timed(big)
    print(f"report on the 20 s fixture     : {s:6.2f} s")
    print(f"report on 1 h x 10 queues, 1M  : {b:6.2f} s  (x{b / s:.2f} of the fixture; "
          f"budget 10 s: {'met' if b < 10 else 'MISSED'})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
