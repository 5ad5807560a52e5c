"""A system the project never saw (tests/outsider/parcels.py: its own process, vhost, names,
namespace and policy, no rabbitscale code) is discovered, planned, audited by doctor (exit 0
on itself) and loaded over AMQP with nothing lost, with no name of a shipped profile in any
output."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import time
import tomllib
from collections.abc import Iterator

import pytest

from rabbitscale.topology.profile_file import builtin_names, get_profile
from tests.support import (
    HOST,
    ROOT,
    assert_system_verdict,
    management,
    one_line_error,
    own_vhost,
    plan_exit,
    rabbitscale,
)

OUTSIDER = ROOT / "tests" / "outsider" / "parcels.py"
QUEUES = ("parcel-booking", "tracking-feed", "customs-screening")


def shipped_names() -> re.Pattern[str]:
    names = {"conduit", "ConduitLLM"}
    for ref in builtin_names():
        p = get_profile(ref)
        names |= {ep.queue for ep in p.endpoints} | set(p.messages)
        names |= {k.route.path for k in p.tasks.values() if k.route is not None}
    return re.compile("|".join(re.escape(n) for n in sorted(names, key=len, reverse=True)),
                      re.IGNORECASE)


@pytest.fixture(scope="module")
def outsider() -> Iterator[tuple[str, str]]:
    """(vhost, metrics URL) of the outsider, consuming; its consumers visible to the
    management API (whose statistics lag)."""
    with own_vhost("rs-acme") as vhost:
        proc = subprocess.Popen(
            [sys.executable, str(OUTSIDER), "--amqp",
             f"amqp://guest:guest@{HOST}:5672/{vhost}"],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        try:
            line = proc.stdout.readline() if proc.stdout else ""
            assert line.startswith("ready"), (line, proc.stderr.read() if proc.stderr else "")
            deadline = time.monotonic() + 40
            while time.monotonic() < deadline:
                with management() as mgmt:
                    qs = {q["name"]: q for q in mgmt("GET", f"/queues/{vhost}", None)}
                if all((qs.get(q) or {}).get("consumers") for q in QUEUES):
                    break
                time.sleep(1)
            else:
                raise AssertionError("the outsider's consumers never showed")
            yield vhost, line.split("metrics=", 1)[1].strip()
        finally:
            proc.terminate()
            proc.wait(timeout=20)


def test_discover_plan_doctor_and_an_amqp_run(outsider, tmp_path):
    vhost, metrics = outsider
    leak = shipped_names()
    profile = tmp_path / "acme.toml"
    done = rabbitscale("discover", "--vhost", vhost, "--out", str(profile))
    assert done.returncode == 0, done.stderr
    data = tomllib.loads(profile.read_text())
    assert sorted(data["endpoints"]) == sorted(QUEUES)
    assert data["namespace"] == "Acme.Parcels.Contracts"
    assert data["endpoints"]["tracking-feed"] == {
        "consumes": ["ParcelBooked", "ParcelDelivered"], "queue_type": "classic",
        "prefetch": 50, "concurrency": 50}
    customs = data["endpoints"]["customs-screening"]
    # the policy's limits, as the broker applies them
    assert customs["arguments"] == {"x-delivery-limit": 10, "x-max-length": 200000,
                                    "x-overflow": "reject-publish"}
    assert "endpoints.customs-screening.concurrency" in data["estimates"]
    outputs = [done.stdout, profile.read_text()]

    plan = rabbitscale("plan", "--profile-file", str(profile), "--json")
    assert plan.returncode == plan_exit(plan.stdout), plan.stderr
    planned = json.loads(plan.stdout)
    assert set(QUEUES) <= {f["section"] for f in planned["figures"]}
    assert planned["estimates"] == data["estimates"]
    outputs.append(plan.stdout)

    doctor = rabbitscale("doctor", "--vhost", vhost, "--profile-file", str(profile))
    assert doctor.returncode == 0, doctor.stdout
    outputs.append(doctor.stdout)

    thresholds = tmp_path / "thresholds.toml"
    thresholds.write_text("error_rate_max = 0.2\n")  # the outsider faults 5% of customs
    out = tmp_path / "run"
    run = rabbitscale("run", "sustained_tasks", "--target",
                      f"amqp://guest:guest@{HOST}:5672/{vhost}", "--profile-file",
                      str(profile), "--task-rate", "20/s", "--duration", "10s",
                      "--app-metrics", metrics, "--thresholds", str(thresholds),
                      "--out", str(out), timeout=300)
    s = json.loads((out / "summary.json").read_text())
    assert_system_verdict(run.returncode, s, "PASS", run.stdout + run.stderr)
    led = s["ledger"]
    assert led["mode"] == "black-box amqp"
    # every message type at an equal share; ParcelBooked reaches two queues
    assert set(led["confirmed_by_kind"]) == {"parcel_booked", "parcel_delivered",
                                             "customs_check_requested"}
    owed = led["confirmed"] + led["confirmed_by_kind"]["parcel_booked"]
    assert led["owed_deliveries"] == owed == led["consumed"]
    assert led["lost"] == 0 and led["still_queued"] == 0 and led["foreign_deliveries"] == 0
    assert 0 < led["faulted"] < led["confirmed_by_kind"]["customs_check_requested"]
    # the application's own meters agree with the broker's counters
    assert led["app_consumed"] == led["consumed"]
    assert led["app_consume_errors"] == led["faulted"]
    app = s["latency"]["application"]
    assert app["messaging_masstransit_consume_duration_milliseconds"]["count"] == owed
    assert app["messaging_masstransit_delivery_duration_milliseconds"]["p99_ms"] > 0
    assert "queue wait (derived from depth / ack rate)" in run.stdout
    outputs += [run.stdout, (out / "summary.json").read_text(),
                (out / "report.html").read_text()]
    for text in outputs:
        assert not leak.search(text), leak.search(text)


def test_amqp_runs_refuse_what_they_cannot_do(outsider, tmp_path):
    vhost, _ = outsider
    profile = tmp_path / "acme.toml"
    assert rabbitscale("discover", "--vhost", vhost, "--out", str(profile)).returncode == 0
    url = f"amqp://guest:guest@{HOST}:5672/{vhost}"
    wrong = rabbitscale("run", "sustained_tasks", "--target", url, "--duration", "5s")
    assert wrong.returncode == 2 and "has no exchange" in one_line_error(wrong)
    for extra, said in ((["--api-key", "k"], "--api-key does not apply"),
                        (["--fault", "kill_consumer"], "--fault"),
                        (["--target", "amqp://guest:guest@127.0.0.1:1/x"], "")):
        done = rabbitscale("run", "sustained_tasks", "--target", url, "--profile-file",
                           str(profile), "--duration", "5s", *extra)
        assert done.returncode in (2, 3), done.stdout
        assert said in one_line_error(done)
