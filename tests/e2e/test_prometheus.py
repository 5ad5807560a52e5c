"""Live metrics and CI reports: the /metrics exposition, a real Prometheus server scraping a run
(its arrival rate and a latency quantile against summary.json), the Grafana dashboard's queries
against what the run and rabbitmq_prometheus export, and JUnit XML against the schema CI tools
read."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.parse
import urllib.request
from pathlib import Path

import pytest

from rabbitscale.harness.metrics import LATENCY_BUCKETS_S
from tests.support import require_tool

ROOT = Path(__file__).resolve().parents[2]
def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _query(base: str, q: str, at: float | None = None) -> list[dict]:
    params = {"query": q} | ({"time": f"{at:.3f}"} if at else {})
    url = f"{base}/api/v1/query?{urllib.parse.urlencode(params)}"
    with urllib.request.urlopen(url, timeout=10) as resp:
        doc = json.loads(resp.read())
    assert doc["status"] == "success", doc
    return doc["data"]["result"]


def test_prometheus_scrapes_a_run_and_agrees_with_its_summary(tmp_path):
    prometheus = require_tool("prometheus")
    metrics_port, prom_port = _free_port(), _free_port()
    work = Path(tempfile.mkdtemp(prefix="rs-prom-"))
    (work / "prometheus.yml").write_text(
        "global: {scrape_interval: 1s}\nscrape_configs:\n  - job_name: rabbitscale\n"
        f"    static_configs: [{{targets: ['127.0.0.1:{metrics_port}']}}]\n")
    server = subprocess.Popen([prometheus, f"--config.file={work / 'prometheus.yml'}",
                               f"--storage.tsdb.path={work / 'data'}",
                               f"--web.listen-address=127.0.0.1:{prom_port}"],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    base = f"http://127.0.0.1:{prom_port}"
    try:
        out = tmp_path / "run"
        env = {**os.environ, "CONDUITLLM__RABBITMQ__HOST": "127.0.0.1"}
        done = subprocess.run(
            [sys.executable, "-m", "rabbitscale", "run", "sustained_tasks", "--duration",
             "30s", "--out", str(out), "--prometheus-port", str(metrics_port),
             "--prometheus-linger", "4s"],
            capture_output=True, text=True, timeout=300, env=env, cwd=ROOT)
        ended = time.time()  # the last scrapes came in the linger just before this
        assert done.returncode == 0, done.stdout[-2000:] + done.stderr
        s = json.loads((out / "summary.json").read_text())
        start, duration = float(s["started_at"]), float(s["duration_s"])
        # the arrival rate over the middle of the schedule, as Prometheus computed it
        mid = start + duration * 0.75
        rate = sum(float(r["value"][1]) for r in _query(
            base, "sum(rate(rabbitscale_arrivals_total[10s]))", mid))
        want = s["measured"]["achieved_rate_per_min"] / 60
        assert rate == pytest.approx(want, rel=0.15), (rate, want)
        # the run's total arrivals and the final SLO checks, from the last scrape
        # (queried inside the linger: once the target is gone its series are marked stale)
        last = ended - 2
        total = _query(base, 'sum(rabbitscale_arrivals_total{kind!="webhook"})', last)
        assert float(total[0]["value"][1]) == s["measured"]["arrivals"]
        checks = {r["metric"]["check"]: float(r["value"][1])
                  for r in _query(base, "rabbitscale_slo_check", last)}
        assert checks and all(v == 1.0 for v in checks.values()), checks
        # e2e p50 of all queues from the histogram, against the HDR figure: Prometheus
        # interpolates within the bucket that holds the true value
        result = _query(base, "histogram_quantile(0.5, sum by (le) "
                              "(rabbitscale_e2e_seconds_bucket))", last)
        p50 = float(result[0]["value"][1])
        hdr = [v["e2e"]["p50_ms"] / 1000 for q, v in s["measured"]["latency_ms"].items()
               if "e2e" in v and q != "webhook-sink"]
        lo = max([b for b in (0.0, *LATENCY_BUCKETS_S) if b <= min(hdr)])
        hi = min([b for b in LATENCY_BUCKETS_S if b >= max(hdr)])
        assert lo <= p50 <= hi, (p50, hdr, lo, hi)
    finally:
        server.terminate()
        server.wait(timeout=30)
        shutil.rmtree(work, ignore_errors=True)
