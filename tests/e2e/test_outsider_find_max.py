"""find-max on Acme Freight (tests/outsider/system.py), a system of its own for this test so
that it runs beside the other outsider tests: the capacity it finds is within 15% of the known
one (shipment-booking: 2 instances x 2 slots / 50 ms = 80/s)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.outsider.system import CAPACITY, MIX, THRESHOLDS, Freight, discovered_profile, running
from tests.support import rabbitscale

pytestmark = pytest.mark.xdist_group("outsider-max")


@pytest.fixture(scope="module")
def freight(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Freight]:
    with running(tmp_path_factory.mktemp("truth")) as system:
        yield system


@pytest.fixture(scope="module")
def profile(freight: Freight, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return discovered_profile(freight, tmp_path_factory.mktemp("acme"))


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
