"""`rabbitscale sweep` on an endpoint setup no other test uses (a payment endpoint of the
orders example doing exponential 80 ms work, concurrency 2, prefetch 2, two instances, Poisson
arrivals): the predicted p99 queue wait within 25% (or 10 ms) of the measured one from
utilisation 0.5 to 0.9, with the knee and the headroom at an SLO, sweep.json and sweep.html."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from rabbitscale.capacity import queueing
from rabbitscale.experiments import sweep
from rabbitscale.topology.policy import parse_service_time
from tests.support import rabbitscale

# with the other latency comparisons, one at a time: a sweep measures latency, not its
# neighbours
pytestmark = pytest.mark.xdist_group("latency")

ROOT = Path(__file__).resolve().parents[2]
SETUP = f"""extends = "{ROOT / 'examples' / 'orders.toml'}"
name = "orders-sweep"

[endpoints.payment-capture]
arguments = {{}}  # no single active consumer: both instances consume
concurrency = 2
prefetch = 2
service_time = "exponential:80ms"
retry = "none"
failure_probability = 0.0
"""


def test_sweep_curve_on_an_unseen_endpoint(tmp_path):
    profile = tmp_path / "sweep.toml"
    profile.write_text(SETUP)
    out = tmp_path / "sweep"
    done = rabbitscale("sweep", "sustained_tasks", "--profile-file", str(profile), "--task-mix",
                       "payment=1", "--instances", "2", "--from", "50%", "--to", "90%",
                       "--steps", "3", "--step-duration", "15s", "--slo",
                       "queue_wait.p99<400ms", "--out", str(out), timeout=900)
    print(done.stdout[-3000:], done.stderr[-2000:])
    doc = json.loads((out / "sweep.json").read_text())
    assert doc["queue"] == "payment-capture" and doc["capacity_per_s"] == pytest.approx(50)
    points = doc["points"]
    assert [round(p["utilisation"], 2) for p in points] == [0.5, 0.7, 0.9]
    for p in points:
        for side in ("measured", "predicted"):
            assert {"queue_wait_p50_ms", "queue_wait_p99_ms", "e2e_p99_ms"} <= set(p[side])
        assert p["measured"]["count"] > 250
        assert p["replayed"]["messages"] == p["measured"]["count"]
        assert p["replayed"]["hold_after_work_ms"] >= 0
        lo, hi = p["predicted"]["queue_wait_p99_band_ms"]
        assert lo <= p["predicted"]["queue_wait_p99_ms"] * 1.2 and hi > lo
    # the long-run curve rises with load
    waits = [p["predicted"]["queue_wait_p99_ms"] for p in points]
    assert waits == sorted(waits), waits
    model = doc["model"]
    if model["within"] is None:  # every point made on a stalled machine, three times each
        pytest.skip("inconclusive: " + "; ".join(p["stalled"] for p in points))
    assert model["points_judged"] + model["points_stalled"] == 3 and model["within"], [
        (p["utilisation"], p["measured"]["queue_wait_p99_ms"],
         p["replayed"]["queue_wait_p99_ms"], p["stalled"]) for p in points]
    # a wrong model (each slot a queue of its own, M/M/1 each) fails the same test
    wrong = [sweep.within(sweep.replayed(sweep.per_slot_queues(_load(doc, p)), Path(p["run"]),
                                         doc["queue"], real=_load(doc, p))["queue_wait_p99_ms"],
                          p["measured"]["queue_wait_p99_ms"]) for p in points]
    assert not all(wrong), wrong
    assert doc["knee_per_s"]["predicted"] and doc["knee_per_s"]["definition"]
    head = doc["slo"]["headroom_per_s"]
    assert head["predicted"] and 0 < head["predicted"] < doc["capacity_per_s"]
    assert (out / "sweep.html").read_text().count("<tr>") == 4
    assert done.returncode == 0, done.stdout[-2000:]
    judged = [p for p in points if not p["stalled"]]
    assert all(p["within"] for p in judged)


def _load(doc: dict, point: dict) -> queueing.EndpointLoad:
    e = doc["endpoint"]
    return queueing.EndpointLoad(point["rate_per_s"], parse_service_time(doc["service_time"]),
                                 e["instances"], e["slots"], e["prefetch"],
                                 arrivals=doc["arrivals"])
