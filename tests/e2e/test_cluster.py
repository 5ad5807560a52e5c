"""A local 3-node cluster from this machine's RabbitMQ: up, status, a run whose busiest node is
stopped mid-run (lost 0), down leaving nothing behind; and the bad inputs. The cluster lives in
a directory and on ports of its own (offset 200), so it never meets a developer's cluster."""

from __future__ import annotations

import json
import os
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from rabbitscale.broker import cluster
from tests import support

# one cluster for the module, on one xdist worker
pytestmark = pytest.mark.xdist_group("cluster")

ROOT = Path(__file__).resolve().parents[2]
OFFSET = 200


def rabbitscale(base: Path, *args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    """The command against the cluster living in ``base``."""
    return support.rabbitscale(*args, timeout=timeout, environ={cluster.BASE_ENV: str(base)})


def _base() -> Path:
    parent = Path(tempfile.mkdtemp(prefix="rs-cluster-test-"))
    os.chmod(parent, 0o755)  # the server runs as the rabbitmq user
    return parent / "cluster"


def _node_processes() -> list[str]:
    done = subprocess.run(["pgrep", "-af", f"rs{OFFSET}n"], capture_output=True, text=True)
    return [line for line in done.stdout.splitlines() if "pgrep" not in line]


@pytest.fixture(scope="module")
def local_cluster() -> Iterator[Path]:
    base = _base()
    done = rabbitscale(base, "cluster", "up", "--nodes", "3", "--port-offset", str(OFFSET))
    assert done.returncode == 0, done.stdout + done.stderr
    try:
        yield base
    finally:
        down = rabbitscale(base, "cluster", "down")
        assert down.returncode == 0, down.stderr
        assert not base.exists() and not _node_processes()  # nothing left behind
        base.parent.rmdir()


def test_status_refusals_and_losing_the_busiest_node_mid_run(local_cluster, tmp_path):
    """One test for the one cluster (pytest-xdist may run a module's tests on two workers,
    and two fixtures would start two clusters on the same addresses)."""
    status = rabbitscale(local_cluster, "cluster", "status")
    assert status.returncode == 0 and status.stdout.count("running") == 3, status.stdout
    again = rabbitscale(local_cluster, "cluster", "up", "--port-offset", str(OFFSET))
    assert again.returncode == 2 and "already running" in again.stderr
    unknown = rabbitscale(local_cluster, "cluster", "status", "--node", "rs9")
    assert unknown.returncode == 2 and "no node 'rs9'" in unknown.stderr
    out = tmp_path / "run"
    done = rabbitscale(local_cluster, "run", "sustained_tasks", "--cluster", "--fault",
                       "node_loss", "--duration", "20s", "--out", str(out),
                       "--drain-timeout", "40s")
    s = json.loads((out / "summary.json").read_text())
    print(f"\n[node_loss] events: {[e['what'] for e in s['fault']['events']]}")
    print(f"[node_loss] ledger: {json.dumps(s['ledger'])}")
    # 5 (INVALID) is possible: while the node is gone the API's publishes wait, and every
    # Locust user can be waiting on one, so sends leave late; the ledger is judged all the same
    assert done.returncode in (0, 5), done.stdout[-3000:] + done.stderr[-2000:]
    assert not [c["name"] for c in s["checks"] if c["verdict"] == "FAIL"], s["checks"]
    led = s["ledger"]
    assert led["lost"] == 0 and led["still_queued"] == 0
    assert led["completed"] + led["faulted"] == led["published"] + led["delivered_unconfirmed"]
    assert s["fault"]["events"][0]["what"].startswith(f"stopped rs{OFFSET}n")
    nodes = {row.split(",")[1] for row in
             (out / "broker_node.csv").read_text().splitlines()[1:]}
    assert len(nodes) == 3  # the sampler read every node
    spec = json.loads((out / "config.json").read_text())["profile_spec"]
    assert all(ep["queue_arguments"]["x-quorum-initial-group-size"] == 3
               for ep in spec["endpoints"].values())


def test_a_node_that_does_not_boot_reports_its_log(monkeypatch):
    monkeypatch.setattr(cluster, "CONF", cluster.CONF + "no.such.key = 1\n")
    base = _base()
    with pytest.raises(cluster.ClusterError) as err:
        cluster.up(1, base, port_offset=OFFSET + 100)
    assert err.value.exit_code == 3 and "unknown variable: no.such.key" in str(err.value)
    assert not base.exists()
    base.parent.rmdir()
