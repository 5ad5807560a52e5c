"""The example system (examples/orders.toml), planned: no broker needed."""

from __future__ import annotations

import json

from tests.support import ROOT, plan_exit, rabbitscale

ORDERS = str(ROOT / "examples" / "orders.toml")
ENDPOINTS = {"order-processing", "stock-reservations", "payment-capture",
             "shipment-notifications"}


def test_the_plan_of_the_example_system():
    done = rabbitscale("plan", "--profile-file", ORDERS, "--json")
    plan = json.loads(done.stdout)
    assert done.returncode == plan_exit(done.stdout), done.stderr
    assert plan["profile"] == "orders"
    assert {f["section"] for f in plan["figures"]} >= ENDPOINTS
    text = rabbitscale("plan", "--profile-file", ORDERS).stdout
    assert "only one instance consumes" in text  # payment-capture: single active consumer
