"""The example system that is not ConduitLLM (examples/orders.toml: four endpoints, one
single-active-consumer, one reject-publish with fan-out, one classic; a task kind that enters by
HTTP, one published by a gateway, webhooks) through plan, stack, run and validate."""

from __future__ import annotations

import json

import pytest

from tests.support import ROOT, assert_system_verdict, management, own_vhost, rabbitscale

ORDERS = str(ROOT / "examples" / "orders.toml")
ENDPOINTS = {"order-processing", "stock-reservations", "payment-capture",
             "shipment-notifications"}


def test_stack_and_a_mixed_run_of_the_example_system(tmp_path):
    with own_vhost("rs-orders") as vhost:
        out = tmp_path / "run"
        done = rabbitscale("run", "mixed_peak", "--profile-file", ORDERS, "--vhost", vhost,
                           "--duration", "12s", "--task-rate", "10/s",
                           "--burst-rates", "20/s,30/s", "--out", str(out), timeout=300)
        s = json.loads((out / "summary.json").read_text())
        assert_system_verdict(done.returncode, s, "PASS", done.stdout + done.stderr)
        assert s["ledger"]["lost"] == 0
        with management() as mgmt:
            queues = {q["name"]: q for q in mgmt("GET", f"/queues/{vhost}", None)}
    assert set(queues) >= ENDPOINTS
    assert queues["shipment-notifications"]["type"] == "classic"
    assert queues["payment-capture"]["arguments"]["x-single-active-consumer"] is True
    assert queues["stock-reservations"]["arguments"]["x-overflow"] == "reject-publish"


# with the other latency comparisons (the sweep), one at a time. Beside another e2e test its
# latency point at
# utilisation 0.87 had measured 43.4 and 43.9 ms against 25.5 and 13.8 predicted in two
# fresh-clone runs, while the replay took the trace's median credit hold; it replays each
# message's own hold since (a busy machine's long acks decide the p99 at that load)
@pytest.mark.xdist_group("latency")
def test_validate_holds_the_model_on_the_example_system(tmp_path):
    done = rabbitscale("validate", "--profile-file", ORDERS, "--case", "pooled",
                       "--out", str(tmp_path), timeout=300)
    if done.returncode == 5:  # its latency point made on a stalled machine, three times
        pytest.skip("latency inconclusive: " + done.stdout[-500:])
    assert done.returncode == 0, done.stdout + done.stderr
    assert "order-processing" in done.stdout or "pooled" in done.stdout
