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
from tests.support import assert_system_verdict, require_tool

ROOT = Path(__file__).resolve().parents[2]
DASHBOARD = ROOT / "deploy" / "grafana" / "rabbitscale.json"
DEPLOY_PROMETHEUS = ROOT / "deploy" / "prometheus.yml"
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


def _scrape_config(metrics_port: int) -> str:
    """deploy/prometheus.yml's jobs as they are, pointed at this run and the local broker's
    rabbitmq_prometheus, scraping every second."""
    import yaml

    conf = yaml.safe_load(DEPLOY_PROMETHEUS.read_text())
    conf["global"] = {"scrape_interval": "1s", "evaluation_interval": "1s"}
    host = os.environ.get("CONDUITLLM__RABBITMQ__HOST", "127.0.0.1")
    for job in conf["scrape_configs"]:
        job.pop("dns_sd_configs", None)
        target = f"127.0.0.1:{metrics_port}" if job["job_name"] == "rabbitscale" \
            else f"{host}:15692"
        job["static_configs"] = [{"targets": [target]}]
    return yaml.safe_dump(conf)


def _management(path: str) -> object:
    import base64

    host = os.environ.get("CONDUITLLM__RABBITMQ__HOST", "127.0.0.1")
    req = urllib.request.Request(f"http://{host}:15672/api{path}", headers={
        "Authorization": "Basic " + base64.b64encode(b"guest:guest").decode()})
    with urllib.request.urlopen(req, timeout=10) as resp:
        return json.loads(resp.read())


def test_prometheus_scrapes_a_run_and_agrees_with_its_summary(tmp_path):
    """A real Prometheus with the dashboard's scrape jobs: every dashboard query answers,
    without a duplicated series, and its figures agree with summary.json and the management
    API (depth and consumers per queue, node memory, rates, latency)."""
    prometheus = require_tool("prometheus")
    metrics_port, prom_port = _free_port(), _free_port()
    work = Path(tempfile.mkdtemp(prefix="rs-prom-"))
    (work / "prometheus.yml").write_text(_scrape_config(metrics_port))
    server = subprocess.Popen([prometheus, f"--config.file={work / 'prometheus.yml'}",
                               f"--storage.tsdb.path={work / 'data'}",
                               f"--web.listen-address=127.0.0.1:{prom_port}"],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    base = f"http://127.0.0.1:{prom_port}"
    vhost = f"rs-prom-{os.getpid()}"
    try:
        out = tmp_path / "run"
        env = {**os.environ, "CONDUITLLM__RABBITMQ__HOST": "127.0.0.1"}
        _create_vhost(vhost)
        done = subprocess.run(
            [sys.executable, "-m", "rabbitscale", "run", "sustained_tasks", "--duration",
             "30s", "--out", str(out), "--prometheus-port", str(metrics_port),
             "--prometheus-linger", "4s", "--vhost", vhost, "--keep-vhost",
             "--instances", "2"],
            capture_output=True, text=True, timeout=300, env=env, cwd=ROOT)
        ended = time.time()  # the last scrapes came in the linger just before this
        s = json.loads((out / "summary.json").read_text())
        assert_system_verdict(done.returncode, s, "PASS", done.stdout + done.stderr)
        start, duration = float(s["started_at"]), float(s["duration_s"])
        mid, last = start + duration * 0.75, ended - 2
        # every query of the dashboard answers, no label set twice (one series per queue,
        # per node: nothing double-counted)
        dash = json.loads(DASHBOARD.read_text())
        answers = {}
        for panel in dash["panels"]:
            for target in panel["targets"]:
                result = _query(base, target["expr"], last)
                labels = [json.dumps(r["metric"], sort_keys=True) for r in result]
                # (no message faulted in this run: that counter has no series yet)
                assert result or 'status="faulted"' in target["expr"], \
                    (panel["title"], target["expr"])
                assert len(labels) == len(set(labels)), (target["expr"], labels)
                answers[target["expr"]] = result
        depth = next(v for k, v in answers.items() if "rabbitmq_queue_messages_ready" in k)
        ours = {r["metric"]["queue"] for r in depth if r["metric"].get("vhost") == vhost}
        queues = {q["name"]: q for q in _management(f"/queues/{vhost}")}
        assert ours == set(queues), (ours, set(queues))
        assert all("queue" in r["metric"] for r in depth)  # no unlabelled series
        # depth per queue once drained: the dashboard's figure and the management API's
        drained = _query(base, next(k for k in answers if "messages_ready" in k), last)
        for r in drained:
            if r["metric"].get("vhost") == vhost:
                assert float(r["value"][1]) == queues[r["metric"]["queue"]]["messages_ready"]
        # consumers per endpoint queue mid-run: the run's instances, each consuming every
        # endpoint (the _error queues have none, the recorder's queue one)
        endpoints = set(json.loads((out / "config.json").read_text())["profile_spec"]
                        ["endpoints"])
        consumers = _query(base, next(k for k in answers if "rabbitmq_queue_consumers" in k),
                           mid)
        per_queue = {r["metric"]["queue"]: float(r["value"][1]) for r in consumers
                     if r["metric"].get("vhost") == vhost}
        assert {per_queue[q] for q in endpoints} == {float(s["instances"])}, per_queue
        assert all(per_queue[q] == 0 for q in per_queue if q.endswith("_error"))
        # node memory: one series per node, the management API's figure within 10%
        memory = _query(base, 'rabbitmq_process_resident_memory_bytes{job="rabbitmq"}')
        nodes = _management("/nodes")
        assert len(memory) == len(nodes)
        assert float(memory[0]["value"][1]) == pytest.approx(nodes[0]["mem_used"], rel=0.1)
        # the arrival rate over the middle of the schedule, as Prometheus computed it
        rate = sum(float(r["value"][1]) for r in _query(
            base, "sum(rate(rabbitscale_arrivals_total[10s]))", mid))
        want = s["measured"]["achieved_rate_per_min"] / 60
        assert rate == pytest.approx(want, rel=0.15), (rate, want)
        # the broker received at least ours (the shared broker carries other tests' too)
        received = float(_query(base, 'sum(rate(rabbitmq_global_messages_received_total'
                                      '{job="rabbitmq"}[10s]))', mid)[0]["value"][1])
        assert received >= 0.8 * want, (received, want)
        # the run's total arrivals and the final SLO checks, from the last scrape
        # (queried inside the linger: once the target is gone its series are marked stale)
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
        _delete_vhost(vhost)


def _create_vhost(vhost: str) -> bool:
    from tests.support import management

    with management() as mgmt:
        mgmt("PUT", f"/vhosts/{vhost}", {})
        mgmt("PUT", f"/permissions/{vhost}/guest", {"configure": ".*", "write": ".*",
                                                    "read": ".*"})
    return True


def _delete_vhost(vhost: str) -> None:
    from tests.support import management

    with management() as mgmt:
        mgmt("DELETE", f"/vhosts/{vhost}", None)
