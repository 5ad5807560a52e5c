"""`rabbitscale run --target`: load-test a system rabbitscale did not start, as it will be used.

The "deployed system" is `rabbitscale stack` started as a separate process in a vhost of its
own; the run talks to it only as an outsider would (its HTTP API, callbacks, the broker's
management API or rabbitmq_prometheus, read-only) and must leave its vhost as it found it."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.support import (
    assert_system_verdict,
    broker_objects,
    env,
    free_port,
    rabbitscale,
    wait_until,
)

# one deployed stack for the module, on one xdist worker
pytestmark = pytest.mark.xdist_group("blackbox")

SECRET = "blackbox-secret"


@pytest.fixture(scope="module")
def deployed(module_stack) -> dict[str, str]:
    """A stack in its own vhost, started like a deployment: `rabbitscale stack`, allowed to
    call back the runs' callback receiver (one port for the module's runs, one at a time)."""
    receiver = f"127.0.0.1:{free_port()}"
    stack = module_stack("--webhook-allow", receiver, secret=SECRET)
    return {"url": stack.api, "vhost": stack.vhost, "key": stack.key(3),
            "callbacks": f"http://{receiver}"}


def blackbox(tmp_path: Path, deployed: dict[str, str], *args: str, key: str | None = None,
             timeout: float = 240) -> tuple[int, dict, str]:
    out = tmp_path / "run"
    done = rabbitscale("run", *args, "--target", deployed["url"], "--out", str(out),
                       "--callback-url", deployed["callbacks"], "--drain-timeout", "30s",
                       timeout=timeout, cwd=tmp_path,
                       CONDUITLLM__RABBITMQ__VHOST=deployed["vhost"],
                       RABBITSCALE_TARGET_API_KEYS=key or deployed["key"])
    summary = json.loads((out / "summary.json").read_text()) \
        if (out / "summary.json").exists() else {}
    return done.returncode, summary, done.stdout + done.stderr


def assert_kept_schedule(s: dict) -> None:
    scheduled = s["targets"]["scheduled_arrivals"]
    assert abs(s["measured"]["arrivals"] - scheduled) <= max(2, 0.01 * scheduled)
    led = s["ledger"]
    assert led["mode"] == "black-box" and led["lost"] == 0
    assert led["callbacks_received"] == led["tracked"] == led["accepted"]
    assert led["unknown_callbacks"] == 0 and led["order_violations"] == "not measured"


def test_webhook_burst_against_a_deployed_stack_leaves_it_untouched(tmp_path, deployed):
    before = broker_objects(deployed["vhost"])
    rc, s, out = blackbox(tmp_path, deployed, "webhook_burst", "--duration", "15s")
    after = broker_objects(deployed["vhost"])
    assert_system_verdict(rc, s, "PASS", out)
    assert_kept_schedule(s)
    assert all(c["verdict"] == "PASS" for c in s["checks"] if c["name"].startswith("burst_"))
    assert s["broker_source"] == "management" and s["mode"] == "black-box"
    assert before == after  # nothing declared, deleted, bound or left consumed
    assert (tmp_path / "run" / "report.html").exists()
    lat = s["measured"]["latency_ms"]["callback-webhook"]["e2e"]
    assert lat["count"] == s["ledger"]["callbacks_received"] and lat["p99_ms"] > 0
    for f in (tmp_path / "run").rglob("*"):  # the key is never written
        if f.is_file():
            assert deployed["key"] not in f.read_text(errors="replace"), f


def test_tasks_with_callbacks_through_rabbitmq_prometheus(tmp_path, deployed):
    """Video and image tasks carry callback URLs: the stack calls them when each starts and
    completes, as ConduitLLM does; the broker is read from rabbitmq_prometheus."""
    rc, s, out = blackbox(tmp_path, deployed, "sustained_tasks", "--duration", "12s",
                          "--task-mix", "video=1,image=1", "--task-rate", "600/min",
                          "--prometheus", "http://127.0.0.1:15692")
    assert_system_verdict(rc, s, "PASS", out)
    assert_kept_schedule(s)
    assert s["broker_source"] == "prometheus"
    assert s["ledger"]["progress_callbacks"] == s["ledger"]["callbacks_received"]  # started
    assert set(s["ledger"]["callbacks_by_kind"]) == {"video", "image"}
    rows = (tmp_path / "run" / "broker_queues.csv").read_text().splitlines()
    assert any(",video-generation-events," in r for r in rows[1:])


def test_two_workers_from_other_processes(tmp_path, deployed):
    """`--expect-workers 2` and two `rabbitscale worker` processes: one schedule between
    them, the same checks."""
    port = 25000 + os.getpid() % 1000
    run_env = env(CONDUITLLM__RABBITMQ__VHOST=deployed["vhost"],
               RABBITSCALE_TARGET_API_KEYS=deployed["key"])
    out = tmp_path / "run"
    run = subprocess.Popen([sys.executable, "-m", "rabbitscale", "run", "webhook_burst",
                            "--duration", "12s", "--target", deployed["url"], "--out", str(out),
                            "--expect-workers", "2", "--master-port", str(port),
                            "--callback-url", deployed["callbacks"],
                            "--drain-timeout", "30s"], env=run_env, cwd=tmp_path,
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    tmp = tmp_path / "tmp"  # the workers' temp dir: what Locust writes there, and is it gone
    tmp.mkdir()
    worker_env = env(TMPDIR=str(tmp))  # nothing but the master's address: no key, no vhost
    workers = [subprocess.Popen([sys.executable, "-m", "rabbitscale", "worker", "--master",
                                 f"127.0.0.1:{port}"], env=worker_env, cwd=tmp_path,
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
               for _ in range(2)]
    text = run.communicate(timeout=240)[0]
    for w in workers:
        w.wait(60)
    # 5 (INVALID) is possible on a busy 2-core machine: three Locust processes beside the
    # other tests send late; what this test is about (the schedule split and merged) still is
    assert run.returncode in (0, 5), text[-3000:]
    s = json.loads((out / "summary.json").read_text())
    assert_kept_schedule(s)
    hdr = s["measured"]["locust_hdr"]["webhooks_send_delay"]
    assert hdr["count"] == s["measured"]["arrivals"]  # both workers' histograms merged
    assert len(json.loads((out / "locust_workers.json").read_text())) == 2
    # each worker downloaded the locustfile into a directory of its own (Locust writes it to
    # <temp>/<name>.py: two workers on one machine would rewrite one file), removed at the end
    assert not list(tmp.iterdir())


def test_a_worker_that_dies_is_named_in_the_verdict(tmp_path, deployed):
    port = 26000 + os.getpid() % 1000
    run_env = env(CONDUITLLM__RABBITMQ__VHOST=deployed["vhost"],
               RABBITSCALE_TARGET_API_KEYS=deployed["key"])
    out = tmp_path / "run"
    run = subprocess.Popen([sys.executable, "-m", "rabbitscale", "run", "sustained_tasks",
                            "--duration", "14s", "--task-mix", "video=1", "--target",
                            deployed["url"], "--out", str(out), "--expect-workers", "2",
                            "--master-port", str(port), "--drain-timeout", "10s",
                            "--callback-url", deployed["callbacks"]],
                           env=run_env, cwd=tmp_path, stdout=subprocess.PIPE,
                           stderr=subprocess.STDOUT, text=True, start_new_session=True)
    logs = [tmp_path / f"worker-{i}.log" for i in range(2)]
    workers = [subprocess.Popen([sys.executable, "-m", "rabbitscale", "worker", "--master",
                                 f"127.0.0.1:{port}"], env=env(TMPDIR=str(tmp_path)),
                                cwd=tmp_path, stdout=log.open("w"), stderr=subprocess.STDOUT,
                                start_new_session=True) for log in logs]
    try:
        deadline = time.monotonic() + 90
        while not (out / "locust_start.json").exists():
            assert time.monotonic() < deadline, "the two workers never joined: " + " | ".join(
                f"worker {i} rc={w.poll()}: {log.read_text()[-500:]}"
                for i, (w, log) in enumerate(zip(workers, logs, strict=True)))
            time.sleep(0.2)
        start = json.loads((out / "locust_start.json").read_text())["start_at"]
        wait_until(lambda: time.time() >= start + 6, "mid-run")
        os.killpg(workers[0].pid, signal.SIGKILL)
        text = run.communicate(timeout=240)[0]
        workers[1].wait(60)
    finally:  # nothing left running if the test failed: the run and its Locust, the workers
        for p in (run, *workers):
            if p.poll() is None:
                os.killpg(p.pid, signal.SIGKILL)
    s = json.loads((out / "summary.json").read_text())
    assert_system_verdict(run.returncode, s, "FAIL", text)
    check = next(c for c in s["checks"] if c["name"] == "workers")
    assert check["verdict"] == "FAIL" and "missing: worker" in check["detail"]


def test_workers_that_never_join_end_the_run_with_exit_3(tmp_path, deployed):
    """Locust's master would wait for them forever; the run gives up after the wait given
    (without it this would end in the subprocess timeout)."""
    done = rabbitscale("run", "sustained_tasks", "--duration", "10s", "--target",
                       deployed["url"], "--out", str(tmp_path / "run"), "--expect-workers", "2",
                       "--master-port", str(27000 + os.getpid() % 1000),
                       "--expect-workers-max-wait", "3s", cwd=tmp_path,
                       CONDUITLLM__RABBITMQ__VHOST=deployed["vhost"],
                       RABBITSCALE_TARGET_API_KEYS=deployed["key"])
    assert done.returncode == 3, done.stdout[-2000:] + done.stderr[-2000:]
    assert "did not all join within 3s" in done.stderr and "Traceback" not in done.stderr


def test_a_wrong_key_is_counted_and_named_not_retried(tmp_path, deployed):
    t0 = time.monotonic()
    rc, s, out = blackbox(tmp_path, deployed, "webhook_burst", "--duration", "6s",
                          key="condt_3_" + "0" * 24)
    assert_system_verdict(rc, s, "FAIL", out)
    check = next(c for c in s["checks"] if c["name"] == "unauthorised")
    assert check["verdict"] == "FAIL" and check["measured"] == s["measured"]["arrivals"] > 0
    assert s["ledger"]["accepted"] == 0
    assert time.monotonic() - t0 < 90  # the run ends on schedule


