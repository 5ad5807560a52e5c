"""A MassTransit-style system the project never saw (tests/outsider/freight.py: Acme Freight,
its own processes, vhost, names, namespace and policy, no rabbitscale code), run as two
instances with a known capacity and MassTransit's meters as the OpenTelemetry Prometheus
exporter writes them:

- discovered, planned (of that system only) and audited by doctor (exit 0 on itself);
- loaded through its broker past its capacity: the run fails and names the endpoint that fell
  behind with the rate it kept up with; at half its capacity it passes, MassTransit's meters
  per endpoint agreeing with the broker's counters; the report is about that system;
- find-max finds its capacity within 15%; plan --from-run predicts it within 15% at the
  instances it ran and at a third instance, which a bracket of two runs confirms;
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
import sys
import tomllib
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import tomli_w

from rabbitscale.topology.profile_file import builtin_names, get_profile
from tests.support import (
    ROOT,
    amqp_url,
    broker,
    consumers_ready,
    management,
    one_line_error,
    own_vhost,
    plan_exit,
    rabbitscale,
    wait_until,
)

OUTSIDER = ROOT / "tests" / "outsider" / "freight.py"
QUEUES = ("shipment-booking", "rate-quotes", "customs-clearance")
CAPACITY = 80.0  # shipment-booking: 2 instances x 2 slots / 50 ms
MIX = "shipment_booked=1"
THRESHOLDS = ROOT / "tests" / "outsider" / "thresholds.toml"  # its customs faults 2%

# one system for the module, on one xdist worker: its capacity is what the tests measure
pytestmark = pytest.mark.xdist_group("outsider")


@dataclass
class Freight:
    vhost: str
    truth: Path
    metrics: list[str] = field(default_factory=list)
    procs: list[subprocess.Popen[str]] = field(default_factory=list)

    @property
    def url(self) -> str:
        return amqp_url(self.vhost)

    def start(self, instance: int, *extra: str) -> None:
        proc = subprocess.Popen(
            [sys.executable, str(OUTSIDER), "--amqp", self.url, "--management",
             broker().management_base_url, "--instance", str(instance), "--fixed", "--truth",
             str(self.truth), *extra], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
            text=True)
        line = proc.stdout.readline() if proc.stdout else ""
        assert line.startswith("ready"), (line, proc.stderr.read() if proc.stderr else "")
        self.procs.append(proc)
        self.metrics.append(re.search(r"metrics=(\S+)", line).group(1))

    def stop(self, proc: subprocess.Popen[str]) -> None:
        """Stop an instance; its meters leave with it."""
        i = self.procs.index(proc)
        proc.terminate()
        proc.wait(timeout=20)
        del self.procs[i], self.metrics[i]

    def meters(self) -> list[str]:
        return [a for url in self.metrics for a in ("--app-metrics", url)]


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
    truth = tmp_path_factory.mktemp("truth")
    with own_vhost("rs-acme") as vhost:
        system = Freight(vhost, truth)
        try:
            system.start(1, "--declare")
            system.start(2)
            consumers_ready(vhost, list(QUEUES))
            wait_until(lambda: _policy_shown(vhost), "the policy on customs-clearance")
            yield system
        finally:
            for proc in list(system.procs):
                if proc.poll() is None:
                    system.stop(proc)


@pytest.fixture(scope="module")
def profile(freight: Freight, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The discovered profile, with what only the system's code knows added: each endpoint's
    consumer class (its meters' label) and concurrency limit."""
    out = tmp_path_factory.mktemp("acme") / "acme.toml"
    done = rabbitscale("discover", "--vhost", freight.vhost, "--window", "0s", "--out", str(out))
    assert done.returncode == 0, done.stderr
    data = tomllib.loads(out.read_text())
    for queue, (consumer, concurrency) in {"shipment-booking": ("BookShipmentConsumer", 2),
                                           "customs-clearance": ("ClearCustomsConsumer", 4),
                                           "rate-quotes": ("QuoteRatesConsumer", 8)}.items():
        data["endpoints"][queue].update(consumer_types=[consumer], concurrency=concurrency)
        data["estimates"].pop(f"endpoints.{queue}.concurrency", None)
    edited = out.with_name("acme-edited.toml")
    edited.write_text(tomli_w.dumps(data))
    return edited


@pytest.fixture(scope="module")
def half(freight: Freight, profile: Path, tmp_path_factory: pytest.TempPathFactory
         ) -> tuple[subprocess.CompletedProcess[str], dict, Path]:
    """A run at half its capacity with its meters read from both instances."""
    out = tmp_path_factory.mktemp("half") / "run"
    done, s = _run(freight, profile, out, f"{0.5 * CAPACITY:g}/s", *freight.meters(),
                   "--threshold", "e2e.p99<1s")
    return done, s, out


def _policy_shown(vhost: str) -> bool:
    """The management API shows a queue's policy with its statistics, seconds late."""
    with management() as mgmt:
        q = mgmt("GET", f"/queues/{vhost}/customs-clearance", None)
    return bool(q.get("effective_policy_definition"))


def _run(freight: Freight, profile: Path, out: Path, rate: str, *extra: str,
         duration: str = "12s") -> tuple[subprocess.CompletedProcess[str], dict]:
    done = rabbitscale("run", "sustained_tasks", "--target", freight.url, "--profile-file",
                       str(profile), "--task-mix", MIX, "--task-rate", rate, "--duration", duration,
                       "--drain-timeout", "40s", "--thresholds", str(THRESHOLDS), "--out",
                       str(out), *extra, timeout=300)
    summary = out / "summary.json"
    assert summary.exists(), done.stdout[-3000:] + done.stderr[-2000:]
    return done, json.loads(summary.read_text())


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
    done, s = _run(freight, profile, tmp_path / "over", f"{1.5 * CAPACITY:g}/s",
                   *freight.meters())
    assert done.returncode == 1, done.stdout[-3000:]
    keep = {c["name"]: c for c in s["checks"] if c["name"].startswith("keep_up ")}
    booking = keep["keep_up shipment-booking"]
    assert booking["verdict"] == "FAIL" and "shipment-booking fell behind" in booking["detail"]
    kept = float(re.search(r"kept up with ([\d.]+)/s", booking["detail"]).group(1))
    assert kept == pytest.approx(CAPACITY, rel=0.15), booking["detail"]
    assert keep["keep_up customs-clearance"]["verdict"] == "PASS"

    done, s, out = half
    assert done.returncode in (0, 5), done.stdout[-3000:]  # 5: only the generator's checks
    system = [c for c in s["checks"] if not c["name"].startswith(("generator_", "worker_"))]
    assert all(c["verdict"] in ("PASS", "SKIP") for c in system), system
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


def test_find_max_finds_its_capacity(freight, profile, tmp_path):
    out = tmp_path / "fm"
    done = rabbitscale("find-max", "sustained_tasks", "--target", freight.url,
                       "--profile-file", str(profile), "--task-mix", MIX, "--start",
                       f"{0.9 * CAPACITY:g}/s", "--step-duration", "12s", "--drain-timeout",
                       "30s", "--resolution", "10%", "--thresholds", str(THRESHOLDS), "--out",
                       str(out), timeout=900)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-2000:]
    doc = json.loads((out / "find_max.json").read_text())
    assert doc["system"].startswith("the system at amqp://")
    assert doc["measured_max_per_s"] == pytest.approx(CAPACITY, rel=0.15), doc["steps"]


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
        low, s_low = _run(freight, profile, tmp_path / "low", f"{predicted / 1.15:.1f}/s",
                          duration="25s")
        high, s_high = _run(freight, profile, tmp_path / "high", f"{predicted / 0.85:.1f}/s",
                            duration="25s")
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
