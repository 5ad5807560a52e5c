"""The eight fault scenarios on the real broker, each a `rabbitscale run --fault NAME` judged
by its ledger (printed: run pytest with -rP, as `make test` does, to see it)."""

from __future__ import annotations

import json
from pathlib import Path

import aio_pika
import pytest

from tests.support import assert_system_verdict, rabbitscale

ROOT = Path(__file__).resolve().parents[2]


def _run(tmp_path: Path, fault: str, *args: str, scenario: str = "sustained_tasks",
         duration: str = "10s") -> tuple[int, dict, Path]:
    out = tmp_path / fault
    proc = rabbitscale("run", scenario, "--duration", duration, "--fault", fault, "--out",
                       str(out), "--drain-timeout", "40s", *args, timeout=300)
    assert (out / "summary.json").exists(), proc.stdout[-3000:] + proc.stderr[-3000:]
    s = json.loads((out / "summary.json").read_text())
    print(f"\n[{fault}] injected: {[e['what'] for e in s['fault']['events']]}")
    print(f"[{fault}] ledger: {json.dumps(s['ledger'])}")
    print(f"[{fault}] publisher: {json.dumps(s['publisher'])}")
    failed = [c["name"] for c in s["checks"] if c["verdict"] == "FAIL"]
    print(f"[{fault}] verdict {s['verdict']}, failed checks: {failed}")
    assert not any(e["what"].startswith("failed") for e in s["fault"]["events"]), s["fault"]
    return proc.returncode, s, out


def _balanced(s: dict) -> None:
    led = s["ledger"]
    assert led["lost"] == 0
    assert led["still_queued"] == 0
    assert led["published"] + led["delivered_unconfirmed"] == \
        led["completed"] + led["faulted"] + led["skipped"]


def test_consumer_killed_mid_run(tmp_path):
    rc, s, _ = _run(tmp_path, "kill_consumer")
    _balanced(s)
    assert_system_verdict(rc, s, "PASS")
    assert s["ledger"]["redelivered"] >= 1  # its unacked messages went to another instance


def test_connections_force_closed(tmp_path):
    rc, s, _ = _run(tmp_path, "close_connections")
    _balanced(s)
    assert s["publisher"]["reconnects"] >= 1
    assert_system_verdict(rc, s, "PASS")


@pytest.mark.exclusive
@pytest.mark.xdist_group("shared-broker")
def test_broker_application_restart(tmp_path):
    rc, s, _ = _run(tmp_path, "broker_restart", duration="15s")
    _balanced(s)  # durable quorum queues kept every confirmed message
    assert s["ledger"]["completed"] > 0
    # publishes that failed while the broker was down were retried for 10 s, then reported
    assert s["ledger"]["failed_at_publish"] == s["publisher"]["failed"]
    assert s["ledger"]["order_violations"] == 0  # retries never overtake a later update


@pytest.mark.exclusive
@pytest.mark.xdist_group("shared-broker")
def test_memory_alarm_blocks_then_resumes(tmp_path):
    rc, s, out = _run(tmp_path, "memory_alarm", duration="15s")
    _balanced(s)
    assert s["publisher"]["blocked_events"] >= 1 and s["publisher"]["blocked_s"] > 0
    alarm = next(c for c in s["checks"] if c["name"] == "memory_alarm")
    assert alarm["verdict"] == "FAIL"  # visible in the run, as it should be
    assert "True" in (out / "broker_node.csv").read_text()
    # during the alarm the watermark itself is tiny, so memory "exceeds" it too: both expected
    assert {c["name"] for c in s["checks"] if c["verdict"] == "FAIL"} <= {
        "memory_alarm", "peak_memory_fraction_of_watermark"}
    assert s["ledger"]["order_violations"] == 0  # blocked publishes resume in order


def test_reject_publish_overflow(tmp_path):
    rc, s, _ = _run(tmp_path, "overflow", scenario="webhook_burst", duration="12s")
    _balanced(s)
    assert s["ledger"]["rejected_at_publish"] >= 1  # nacked, counted, answered 503
    assert s["publisher"]["rejected"] == s["ledger"]["rejected_at_publish"]


def test_webhook_target_failing_20_percent(tmp_path):
    rc, s, out = _run(tmp_path, "webhook_failures", scenario="webhook_burst", duration="15s")
    _balanced(s)
    led = s["ledger"]
    assert led["completed_after_retry"] >= 1  # retries rescued some deliveries
    assert led["faults_by_reason"].get("CircuitBreakerOpenError", 0) >= 1  # it tripped
    stopped = [part.split("=") for line in (out / "stack.log").read_text().splitlines()
               if "stopped" in line for part in line.split() if "=" in part]
    assert sum(int(v) for k, v in stopped if k == "breaker_trips") >= 1
    # it reset: a half-open trial succeeded and closed it again (a sink failing 20% of calls
    # can keep it open for several reset intervals in a row, so the last seconds of a 15 s run
    # may see no delivery: the count of resets is the evidence, not the arrival times)
    assert sum(int(v) for k, v in stopped if k == "breaker_resets") >= 1
    rows = [line.split(",") for line in (out / "throughput.csv").read_text().splitlines()[1:]]
    assert any(q == "webhook-sink" for _, q, _ in rows)


def test_poison_message_goes_to_error_with_fault_headers(tmp_path, vhost_settings):
    rc, s, _ = _run(tmp_path, "poison", "--vhost", vhost_settings.vhost)
    _balanced(s)
    assert s["ledger"]["faults_by_reason"] == {"HandlerError": 5}

    async def error_queue() -> list[dict]:
        conn = await aio_pika.connect(vhost_settings.amqp_url)
        q = await (await conn.channel()).declare_queue("spend-update-events_error",
                                                       passive=True)
        out = []
        while (m := await q.get(fail=False)) is not None:
            out.append(dict(m.headers))
            await m.ack()
        await conn.close()
        return out

    import asyncio

    faults = asyncio.run(error_queue())
    assert len(faults) == 5
    assert all(h["MT-Fault-RetryCount"] == 3 and "HandlerError" in h["MT-Fault-ExceptionType"]
               for h in faults)


def test_spend_order_survives_single_active_consumer_failover(tmp_path):
    rc, s, _ = _run(tmp_path, "sac_failover", "--task-mix", "spend=1", "--task-rate", "20/s")
    _balanced(s)
    assert s["ledger"]["order_violations"] == 0
    assert_system_verdict(rc, s, "PASS")
