"""The nemesis on a real 3-node cluster with real partitions (iptables on loopback): a safe
setup (quorum queues, confirms) loses nothing while the network is cut, and the total-queue
checker fails an unsafe one (classic queues, no publisher confirms) when their node is
killed. The cluster has a directory, ports and addresses of its own (offset 500), and
`cluster down` must leave no node and no firewall rule behind."""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from rabbitscale.broker import amqp, cluster
from rabbitscale.faults import nemesis, partition
from rabbitscale.topology.settings import RabbitSettings
from tests import support

# after the parallel e2e tests (make test-e2e): three more nodes and two runs would slow the
# timing of the tests beside them; it runs beside the other exclusive tests (the backlog on a
# fresh node of its own, and the faults of the shared broker, each group on a worker), whose
# ledgers and broker checks do not depend on timing, and it touches nothing but its own
# cluster's addresses and ports
pytestmark = [pytest.mark.exclusive, pytest.mark.xdist_group("nemesis")]

ROOT = Path(__file__).resolve().parents[2]
OFFSET = 500
why_not = partition.available()
if why_not:
    pytest.skip(f"no network partitions here: {why_not}", allow_module_level=True)


def rabbitscale(base: Path, *args: str, timeout: float = 400
                ) -> subprocess.CompletedProcess[str]:
    """The command against the cluster living in ``base``."""
    return support.rabbitscale(*args, timeout=timeout, environ={cluster.BASE_ENV: str(base)})


def _addresses() -> list[str]:
    return [n.ip for n in cluster.plan_nodes(3, Path("/nowhere"), OFFSET)]


@pytest.fixture(scope="module")
def nemesis_cluster() -> Iterator[Path]:
    parent = Path(tempfile.mkdtemp(prefix="rs-nemesis-test-"))
    os.chmod(parent, 0o755)  # the server runs as the rabbitmq user
    base = parent / "cluster"
    done = rabbitscale(base, "cluster", "up", "--nodes", "3", "--port-offset", str(OFFSET))
    assert done.returncode == 0, done.stdout + done.stderr
    try:
        yield base
    finally:
        down = rabbitscale(base, "cluster", "down")
        assert down.returncode == 0, down.stderr
        left = [r for r in partition.ours() if any(ip in r for ip in _addresses())]
        procs = subprocess.run(["pgrep", "-af", f"rs{OFFSET}n"], capture_output=True,
                               text=True).stdout
        assert not left and not base.exists(), left
        assert not [p for p in procs.splitlines() if "pgrep" not in p], procs
        parent.rmdir()


def _seed(kinds: tuple[str, ...], duration_s: float, interval_s: float, want: object) -> int:
    """The first seed whose schedule satisfies ``want`` (the schedule is a pure function)."""
    for seed in range(1000):
        if want(nemesis.schedule(kinds, 3, duration_s, interval_s, seed)):
            return seed
    raise AssertionError("no seed found")


UNSAFE = """extends = "guide"
name = "guide-unsafe"
queue_type = "classic"  # one copy, on the node that declared it

[rabbitmq]
PublisherConfirmation = false
"""


def _queue_node() -> int:
    """The node the stack declares its queues on (its connection's first node), where a
    classic queue lives."""
    nodes = cluster.plan_nodes(3, Path("/nowhere"), OFFSET)
    settings = dataclasses.replace(RabbitSettings(), host=nodes[0].ip, port=nodes[0].amqp,
                                   cluster_nodes=tuple(f"{n.ip}:{n.amqp}" for n in nodes))
    first = amqp.node_order(settings, "rabbitscale-stack")[0]
    return [f"{n.ip}:{n.amqp}" for n in nodes].index(first)


def test_partitions_lose_nothing_and_the_checker_fails_an_unsafe_setup(nemesis_cluster,
                                                                        tmp_path):
    """Both sides on one cluster (one test: the cluster is set up once, and the test runs
    alone, after the parallel ones, so its three nodes do not slow others' timing)."""
    # safe: quorum queues, confirms; one partition at 20 s held 20 s (longer than
    # net_ticktime, 10 s: pause_minority pauses the cut-off node), 10 s of load after it
    seed = _seed(nemesis.PARTITIONS, 50, 40, lambda evs: len(evs) == 1)
    out = tmp_path / "safe"
    done = rabbitscale(nemesis_cluster, "run", "sustained_tasks", "--cluster", "--nemesis",
                       "partitions", "--seed", str(seed), "--nemesis-interval", "40s",
                       "--duration", "50s", "--drain-timeout", "60s", "--out", str(out))
    s = json.loads((out / "summary.json").read_text())
    tq, events = s["total_queue"], s["fault"]["nemesis"]["events"]
    print(f"\n[nemesis safe] seed {seed} ledger {json.dumps(tq)}")
    for e in events:
        print(f"[nemesis safe] {e['kind']} at {e['applied_at_s']}s: {e['applied']} / "
              f"{e['healed']} / {e['effects']}")
    assert tq["lost"] == 0 and tq["unexpected"] == 0 and tq["valid"], tq
    assert tq["attempted"] > 700 and tq["ok"] >= tq["acknowledged"]
    assert any(e["kind"] in nemesis.PARTITIONS and "rules" in e["applied"] for e in events)
    assert all(e["healed"] and not e["healed"].startswith("failed") for e in events), events
    assert s["cluster"]["partition_handling"] == "pause_minority"
    assert {"total_queue_lost", "total_queue_unexpected"} <= {c["name"] for c in s["checks"]}
    # the faults are on the report's time charts, and in its nemesis table with the ledger
    assert [e["step"] for e in s["fault"]["events"]].count("inject") == len(events)
    page = (out / "report.html").read_text()
    assert "Total-queue ledger" in page and events[0]["kind"] in page
    # 5 (INVALID) is possible: while a node is paused or cut, the API's publishes wait for
    # their confirms and every Locust user can be waiting on one, so sends leave late; the
    # ledger is judged all the same
    assert done.returncode in (0, 1, 5), done.stdout[-3000:] + done.stderr[-2000:]
    failed = {c["name"] for c in s["checks"] if c["verdict"] == "FAIL"}
    assert not failed & {"total_queue_lost", "total_queue_unexpected", "lost"}, failed

    # unsafe: classic queues (one copy, on the node the stack declared them on) and no
    # publisher confirms; that node is killed at 10 s and booted again 10 s later: publishes
    # routed to its queues meanwhile are dropped unseen (what is lost never arrives: a short
    # drain)
    profile = tmp_path / "unsafe.toml"
    profile.write_text(UNSAFE)
    home = _queue_node()
    seed = _seed(("kill-node",), 30, 20, lambda evs: evs[0].nodes == (home,))
    out = tmp_path / "unsafe"
    done = rabbitscale(nemesis_cluster, "run", "sustained_tasks", "--cluster",
                       "--profile-file", str(profile), "--nemesis", "kill-node", "--seed",
                       str(seed), "--nemesis-interval", "20s", "--duration", "30s",
                       "--drain-timeout", "15s", "--out", str(out))
    s = json.loads((out / "summary.json").read_text())
    tq = s["total_queue"]
    print(f"\n[nemesis unsafe] seed {seed}, queues on node {home + 1}, ledger {json.dumps(tq)}")
    assert s["publisher"]["confirmed"] == 0 and s["publisher"]["sent"] > 0  # no confirms
    assert tq["lost"] > 0 and not tq["valid"], tq
    lost = next(c for c in s["checks"] if c["name"] == "total_queue_lost")
    assert lost["verdict"] == "FAIL"
    assert done.returncode in (1, 5), done.stdout[-2000:]
