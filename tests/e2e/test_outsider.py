"""A MassTransit-style system the project never saw (tests/outsider/freight.py: Acme Freight,
its own processes, vhost, names, namespace and policy, no rabbitscale code), run as two
instances with a known capacity and MassTransit's meters as the OpenTelemetry Prometheus
exporter writes them:

- discovered, planned (of that system only) and audited by doctor (exit 0 on itself);
- loaded through its broker past its capacity: the run fails and names the endpoint that fell
  behind with the rate it kept up with; at half its capacity it passes, MassTransit's meters
  per endpoint agreeing with the broker's counters; the report is about that system;
- plan --from-run predicts it within 15% at the instances it ran and at a third instance,
  which a bracket of two runs confirms (find-max: test_outsider_find_max.py);
- sweep draws its curve from the meters, each step's e2e p99 within 25% (or the histogram
  bucket) of what its consumers recorded.

Capacity: shipment-booking works 50 ms (fixed) per message, 2 at a time, so 2 instances
consume 2 x 2 / 0.05 = 80/s; one more instance, 120/s. Every other endpoint is far above.
"""

from __future__ import annotations

import csv
import json
import re
import subprocess
import tomllib
from collections.abc import Iterator
from pathlib import Path

import pytest

from rabbitscale.topology.profile_file import builtin_names, get_profile
from tests.outsider.system import (
    CAPACITY,
    MIX,
    QUEUES,
    THRESHOLDS,
    Freight,
    discovered_profile,
    run_at,
    running,
)
from tests.support import amqp_url, consumers_ready, one_line_error, plan_exit, rabbitscale

# one system for the module, on one xdist worker: its capacity is what the tests measure
pytestmark = pytest.mark.xdist_group("outsider")


def shipped_names() -> re.Pattern[str]:
    names = {"conduit", "ConduitLLM"}
    for ref in builtin_names():
        p = get_profile(ref)
        names |= {ep.queue for ep in p.endpoints} | set(p.messages)
        names |= {k.route.path for k in p.tasks.values() if k.route is not None}
    return re.compile("|".join(re.escape(n) for n in sorted(names, key=len, reverse=True)),
                      re.IGNORECASE)


@pytest.fixture(scope="module")
def freight(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Freight]:
    with running(tmp_path_factory.mktemp("truth")) as system:
        yield system


@pytest.fixture(scope="module")
def profile(freight: Freight, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return discovered_profile(freight, tmp_path_factory.mktemp("acme"))


@pytest.fixture(scope="module")
def half(freight: Freight, profile: Path, tmp_path_factory: pytest.TempPathFactory
         ) -> tuple[subprocess.CompletedProcess[str], dict, Path]:
    """A run at half its capacity with its meters read from both instances."""
    out = tmp_path_factory.mktemp("half") / "run"
    return run_at(freight, profile, out, f"{0.5 * CAPACITY:g}/s", *freight.meters(),
                  "--threshold", "e2e.p99<1s")


def test_discovered_planned_and_audited_as_itself(freight, tmp_path):
    leak = shipped_names()
    found = tmp_path / "found.toml"
    done = rabbitscale("discover", "--vhost", freight.vhost, "--window", "0s", "--out",
                       str(found))
    assert done.returncode == 0, done.stderr
    data = tomllib.loads(found.read_text())
    assert sorted(data["endpoints"]) == sorted(QUEUES)
    assert data["namespace"] == "Acme.Freight.Contracts"
    assert data["plan"]["instances"] == 2  # two consuming connections
    customs = data["endpoints"]["customs-clearance"]
    assert customs["arguments"] == {"x-delivery-limit": 5, "x-max-length": 500000,
                                    "x-overflow": "reject-publish"}  # its policy, applied
    plan = rabbitscale("plan", "--profile-file", str(found))
    assert plan.returncode == plan_exit(plan.stdout), plan.stderr
    assert "guide:" not in plan.stdout and "webhook" not in plan.stdout.lower()
    assert "instances 2 (the profile's [plan]" in plan.stdout
    assert "work per message" in plan.stdout and "--service-time" in plan.stdout
    doctor = rabbitscale("doctor", "--vhost", freight.vhost, "--profile-file", str(found))
    assert doctor.returncode == 0, doctor.stdout
    for text in (done.stdout, found.read_text(), plan.stdout, doctor.stdout):
        assert not leak.search(text), leak.search(text)


def test_past_capacity_fails_naming_the_endpoint_and_half_passes(freight, profile, half,
                                                                  tmp_path):
    # 20 s: the rate is judged between refreshes of the broker's counters (every 5 s, seen
    # by a sampler every second), whose timing is off by up to a second or two at each end
    done, s, _ = run_at(freight, profile, tmp_path / "over", f"{1.5 * CAPACITY:g}/s",
                        *freight.meters(), duration="20s")
    assert done.returncode == 1, done.stdout[-3000:]
    keep = {c["name"]: c for c in s["checks"] if c["name"].startswith("keep_up ")}
    booking = keep["keep_up shipment-booking"]
    assert booking["verdict"] == "FAIL" and "shipment-booking fell behind" in booking["detail"]
    kept = float(re.search(r"kept up with ([\d.]+)/s", booking["detail"]).group(1))
    assert kept == pytest.approx(CAPACITY, rel=0.15), booking["detail"]
    assert keep["keep_up customs-clearance"]["verdict"] == "PASS"

    done, s, out = half
    assert done.returncode == 0, done.stdout[-3000:]  # INVALID runs were made again
    assert all(c["verdict"] in ("PASS", "SKIP") for c in s["checks"]), s["checks"]
    by = {e["queue"]: e for e in s["endpoints"]}
    booking = by["shipment-booking"]
    assert booking["kept_up"] and booking["instances"] == 2 and booking["prefetch"] == 8
    # MassTransit's meters of both instances, per endpoint, agree with the broker
    assert booking["meters"]["consumed"] == s["ledger"]["confirmed"]
    work = booking["meters"]["work"]
    assert work["mean_ms"] == pytest.approx(50, rel=0.2) and work["bounds_ms"]["p50"] == \
        [50.0, 75.0]
    e2e = next(c for c in s["checks"] if c["name"] == "latency e2e p99")
    assert e2e["verdict"] == "PASS" and "MassTransit's e2e meter" in e2e["detail"]
    page = (out / "report.html").read_text()
    assert "Endpoints of" in page and "shipment-booking" in page
    leak = shipped_names()
    for text in (page, done.stdout, (out / "config.json").read_text()):
        assert not leak.search(text), leak.search(text)


def test_plan_from_a_run_predicts_another_instance_count(freight, profile, half, tmp_path):
    run = half[2]
    plan = rabbitscale("plan", "--profile-file", str(profile), "--from-run", str(run), "--json",
                       "--target-rate", "200/s", "--slo", "queue_wait.p99<500ms")
    doc = json.loads(plan.stdout)
    booking = next(e for e in doc["endpoints"] if e["queue"] == "shipment-booking")
    assert booking["inputs"]["work_s"]["label"] == "measured"
    assert booking["inputs"]["instances"] == {"value": 2, "label": "measured", "source": booking[
        "inputs"]["instances"]["source"]}
    assert booking["capacity_per_s"] == pytest.approx(CAPACITY, rel=0.15)
    assert not booking["holds"] and booking["recommend"]["options"][0]["instances"] >= 4
    # at three instances the plan predicts 1.5x; a bracket of two runs holds it to that
    third = rabbitscale("plan", "--profile-file", str(profile), "--from-run", str(run),
                        "--json", "--endpoint-instances", "shipment-booking=3")
    predicted = next(e for e in json.loads(third.stdout)["endpoints"]
                     if e["queue"] == "shipment-booking")["capacity_per_s"]
    assert predicted == pytest.approx(1.5 * CAPACITY, rel=0.15)
    freight.start(3)
    try:
        consumers_ready(freight.vhost, ["shipment-booking"])
        # long enough that 15% too much outgrows what the consumers hold plus a second's
        # arrivals, with the management API's counters refreshed every 5 s
        low, s_low, _ = run_at(freight, profile, tmp_path / "low",
                               f"{predicted / 1.15:.1f}/s", duration="25s")
        high, s_high, _ = run_at(freight, profile, tmp_path / "high",
                                 f"{predicted / 0.85:.1f}/s", duration="25s")
    finally:
        freight.stop(freight.procs[-1])
    booking = {c["name"]: c["verdict"] for c in s_low["checks"]}
    assert booking["keep_up shipment-booking"] == "PASS", s_low["checks"]
    assert {c["name"]: c["verdict"] for c in s_high["checks"]}[
        "keep_up shipment-booking"] == "FAIL", s_high["checks"]


def test_sweep_draws_the_curve_from_its_meters(freight, profile, tmp_path):
    out = tmp_path / "sweep"
    done = rabbitscale("sweep", "sustained_tasks", "--target", freight.url, "--profile-file",
                       str(profile), "--task-mix", MIX, "--endpoint", "shipment-booking",
                       "--from", "20/s", "--to", "60/s", "--steps", "3", "--step-duration",
                       "12s", "--drain-timeout", "30s", "--thresholds", str(THRESHOLDS),
                       *freight.meters(), "--out", str(out), timeout=600)
    assert done.returncode in (0, 5), done.stdout[-3000:] + done.stderr[-2000:]
    doc = json.loads((out / "sweep.json").read_text())
    assert doc["mode"] == "black-box" and len(doc["points"]) == 3
    truth = _truth(freight.truth)
    for p in doc["points"]:
        s = json.loads((Path(p["run"]) / "summary.json").read_text())
        start, end = s["started_at"], s["load_ended_at"] + 1  # sent within its load
        recorded = sorted(f - t for q, t, f in truth if q == "shipment-booking"
                          and start <= t <= end)
        true_p99 = recorded[int(0.99 * (len(recorded) - 1))] * 1000
        m = p["measured"]
        lo, hi = m["e2e_bounds_ms"]["p99"]
        assert m["count"] == len(recorded), (m["count"], len(recorded))
        assert lo <= true_p99 <= (hi or float("inf")) or \
            m["e2e_p99_ms"] == pytest.approx(true_p99, rel=0.25), (m, true_p99)
    assert (out / "sweep.html").read_text().count("<tr>") == 4


def _truth(directory: Path) -> list[tuple[str, float, float]]:
    """(endpoint, sent, finished) of every message the instances consumed."""
    out = []
    for path in directory.glob("instance-*.csv"):
        with path.open() as f:
            for row in csv.DictReader(f):
                out.append((row["endpoint"], float(row["sent"]), float(row["finished"])))
    return out


def test_runs_refuse_what_they_cannot_do_before_any_load(freight, profile):
    wrong = rabbitscale("run", "sustained_tasks", "--target", freight.url, "--duration", "5s")
    assert wrong.returncode == 2 and "has no exchange" in one_line_error(wrong)
    for extra, code, said in (
            (["--api-key", "k"], 2, "--api-key does not apply"),
            (["--fault", "kill-consumer"], 2, "--fault"),
            (["--threshold", "queue_wait.p99<1s"], 2, "does not measure queue_wait"),
            (["--threshold", "e2e.p99<1s"], 2, "does not measure e2e"),
            (["--target", amqp_url("x", port=1)], 3, "cannot reach")):
        done = rabbitscale("run", "sustained_tasks", "--target", freight.url, "--profile-file",
                           str(profile), "--duration", "5s", *extra)
        assert done.returncode == code, (extra, done.stdout[-1000:], done.stderr)
        assert said in one_line_error(done)
