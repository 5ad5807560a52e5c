"""`rabbitscale run` end to end on the real broker: the CI smoke runs of sustained_tasks and
webhook_burst at the guide's rates, Locust's distributed mode, and plain Locust against a
running `rabbitscale stack`."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from tests.support import assert_system_verdict, env, rabbitscale

ROOT = Path(__file__).resolve().parents[2]


def _run(tmp_path: Path, *args: str) -> tuple[int, dict, str]:
    out = tmp_path / "run"
    proc = rabbitscale("run", *args, "--out", str(out), "--drain-timeout", "30s", timeout=240)
    summary = json.loads((out / "summary.json").read_text()) if \
        (out / "summary.json").exists() else {}
    return proc.returncode, summary, proc.stdout + proc.stderr


def test_sustained_tasks_smoke(tmp_path):
    rc, s, out = _run(tmp_path, "sustained_tasks", "--duration", "20s")
    assert_system_verdict(rc, s, "PASS", out)
    assert abs(s["measured"]["achieved_rate_per_min"] - 1000) <= 10  # within 1%
    assert s["ledger"]["lost"] == 0 and s["ledger"]["completed"] == s["ledger"]["published"]
    for name in ("config.json", "locust_stats.csv", "broker_queues.csv", "broker_node.csv",
                 "throughput.csv", "ledger.json", "hdr", "locust_hdr"):
        assert (tmp_path / "run" / name).exists(), name
    lat = s["measured"]["latency_ms"]["spend-update-events"]
    assert set(lat) == {"e2e", "queue_wait", "slot_wait", "processing", "publish_delay"}
    assert lat["e2e"]["p99_ms"] >= lat["e2e"]["p50_ms"] > 0
    assert lat["slot_wait"]["mean_ms"] <= lat["queue_wait"]["mean_ms"]
    # soak figures: every process of the run sampled; 20 s is too short to judge growth
    procs = set(s["processes"])
    assert {"generator", "stack", "consumer-1", "consumer-2", "consumer-3"} <= procs
    assert any(p.startswith("broker ") for p in procs)
    soak = next(c for c in s["checks"] if c["name"] == "rss_growth_mb_per_hour")
    assert soak["verdict"] == "SKIP" and "soak_min_duration_s" in soak["detail"]
    assert "guest" not in (tmp_path / "run" / "config.json").read_text().split('"password"')[1][:12]


def test_webhook_burst_reaches_100_per_second(tmp_path):
    rc, s, out = _run(tmp_path, "webhook_burst", "--duration", "20s")
    assert_system_verdict(rc, s, "PASS", out)
    bursts = [c for c in s["checks"] if c["name"].startswith("burst_")]
    assert len(bursts) == 2 and all(c["verdict"] == "PASS" for c in bursts)
    assert "at 100/s" in bursts[1]["detail"]
    assert s["ledger"]["webhooks_arrived"] == s["ledger"]["published"]


def test_distributed_workers_match_a_single_process(tmp_path):
    rc, s, out = _run(tmp_path, "sustained_tasks", "--duration", "12s", "--workers", "2")
    assert_system_verdict(rc, s, "PASS", out)
    scheduled = s["targets"]["scheduled_arrivals"]
    assert abs(s["ledger"]["published"] - scheduled) <= 2  # the two workers split one schedule
    hdr = s["measured"]["locust_hdr"]
    # histograms from both workers were merged on the master: one count per request
    assert hdr["tasks_request"]["count"] == s["measured"]["arrivals"]
    assert hdr["tasks_send_delay"]["count"] == s["measured"]["arrivals"]
    stats = (tmp_path / "run" / "locust_stats.csv").read_text().splitlines()
    total = next(line for line in stats if ",Aggregated," in line).split(",")
    assert int(total[2]) == s["measured"]["arrivals"]


def test_plain_locust_against_a_running_stack(running_stack):
    stack = running_stack(secret="pl")
    loc = subprocess.run([sys.executable, "-m", "locust", "--config", "locust.conf",
                          "--headless", "--host", stack.api, "--run-time", "9s",
                          "--schedule-time", "6"],
                         env=env(CONDUITLLM__RABBITMQ__VHOST=stack.vhost,
                                 RABBITSCALE_API_SECRET=stack.secret,
                                 RABBITSCALE_API_URL=stack.api),
                         cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert loc.returncode == 0, loc.stdout[-2000:] + loc.stderr[-2000:]
    fields = stack.stop()
    # a 6 s schedule at 1,000/min (it starts 2 s after Locust's test start)
    assert 90 <= int(fields["published"]) <= 110
    assert fields["lost"] == "0"


def test_amqp_transport_publishes_straight_to_the_broker(tmp_path):
    """The AMQP user: our asyncio Publisher on a native thread, driven from gevent greenlets,
    reporting publish+confirm time through Locust's request event."""
    rc, s, out = _run(tmp_path, "sustained_tasks", "--duration", "8s", "--transport", "amqp")
    assert_system_verdict(rc, s, "PASS", out)
    assert s["ledger"]["lost"] == 0 and s["ledger"]["published"] == s["measured"]["arrivals"]
    rows = (tmp_path / "run" / "locust_stats.csv").read_text().splitlines()
    amqp = [r.split(",") for r in rows if r.startswith("AMQP,publish ")]
    assert {r[1] for r in amqp} == {"publish video", "publish image", "publish spend"}
    assert sum(int(r[2]) for r in amqp) == s["ledger"]["published"]
    assert all(r[3] == "0" for r in amqp)  # no failed publishes
