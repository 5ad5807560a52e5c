"""`rabbitscale doctor` on the real broker: deliberate deviations are reported with the right
verdicts, a vhost the reference stack declared comes out with no FAIL, and nothing changes on
the broker (objects, arguments, message counts)."""

from __future__ import annotations

import json
from pathlib import Path

from rabbitscale.topology.profile_file import get_profile
from tests.support import consumers_ready, rabbitscale, stats_ready

CONDUIT = get_profile("conduit")

ROOT = Path(__file__).resolve().parents[2]


def test_a_vhost_the_reference_stack_runs_in_has_no_fail(running_stack):
    stack = running_stack(secret="doc")
    stats_ready(stack.vhost, [ep.queue for ep in CONDUIT.endpoints])
    consumers_ready(stack.vhost, [ep.queue for ep in CONDUIT.endpoints])
    done = rabbitscale("doctor", "--vhost", stack.vhost, "--json", "--container-memory", "64GiB")
    doc = json.loads(done.stdout)
    fails = [f for f in doc["findings"] if f["verdict"] == "FAIL"]
    assert done.returncode == 0 and not fails, fails
    checks = {(f["subject"], f["check"]) for f in doc["findings"]}
    assert ("spend-update-events", "single active consumer") in checks
    assert ("consumers", "client prefetch memory per instance (peak)") in checks
