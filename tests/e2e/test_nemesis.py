"""The nemesis on a real 3-node cluster with real partitions (iptables on loopback): a safe
setup (quorum queues, confirms) loses nothing while the network is cut, and the total-queue
checker fails an unsafe one (classic queues, no publisher confirms) under the same kind of
nemesis. The cluster has a directory, ports and addresses of its own (offset 500), and
`cluster down` must leave no node and no firewall rule behind."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from rabbitscale.broker import cluster, partition
from rabbitscale.runner import nemesis

pytestmark = [pytest.mark.xdist_group("cluster")]

ROOT = Path(__file__).resolve().parents[2]
OFFSET = 500
why_not = partition.available()
if why_not:
    pytest.skip(f"no network partitions here: {why_not}", allow_module_level=True)


def rabbitscale(base: Path, *args: str, timeout: float = 400
                ) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, cluster.BASE_ENV: str(base)}
    return subprocess.run([sys.executable, "-m", "rabbitscale", *args], env=env,
                          capture_output=True, text=True, timeout=timeout, cwd=ROOT)


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


def test_a_safe_setup_loses_nothing_under_partitions(nemesis_cluster, tmp_path):
    kinds = nemesis.PARTITIONS
    # one partition at 20 s, held 20 s: longer than net_ticktime (10 s), so the nodes notice
    # and pause_minority pauses the minority; healed at 40 s, 25 s of load after it
    seed = _seed(kinds, 65, 40, lambda evs: len(evs) == 1)
    out = tmp_path / "safe"
    done = rabbitscale(nemesis_cluster, "run", "sustained_tasks", "--cluster", "--nemesis",
                       "partitions", "--seed", str(seed), "--nemesis-interval", "40s",
                       "--duration", "65s", "--drain-timeout", "60s", "--out", str(out))
    s = json.loads((out / "summary.json").read_text())
    tq, events = s["total_queue"], s["fault"]["nemesis"]["events"]
    print(f"\n[nemesis safe] seed {seed} ledger {json.dumps(tq)}")
    for e in events:
        print(f"[nemesis safe] {e['kind']} at {e['applied_at_s']}s: {e['applied']} / "
              f"{e['healed']} / {e['effects']}")
    assert tq["lost"] == 0 and tq["unexpected"] == 0 and tq["valid"], tq
    assert tq["attempted"] > 900 and tq["ok"] >= tq["acknowledged"]
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


UNSAFE = """extends = "guide"
name = "guide-unsafe"
queue_type = "classic"  # one copy, on the node that declared it

[rabbitmq]
PublisherConfirmation = false
"""


def test_the_checker_fails_an_unsafe_setup(nemesis_cluster, tmp_path):
    """Classic queues live on one node (the one the stack declared them on) and nothing is
    confirmed: while that node is down, publishes through the others are dropped unseen, and
    a killed node loses what it had not yet written. Every node is killed once, so whichever
    holds the queues goes down (the drain is short: what is lost never arrives)."""
    profile = tmp_path / "unsafe.toml"
    profile.write_text(UNSAFE)
    seed = _seed(("kill-node",), 40, 12, lambda evs: {e.nodes[0] for e in evs} == {0, 1, 2})
    out = tmp_path / "unsafe"
    done = rabbitscale(nemesis_cluster, "run", "sustained_tasks", "--cluster",
                       "--profile-file", str(profile), "--nemesis", "kill-node", "--seed",
                       str(seed), "--nemesis-interval", "12s", "--duration", "40s",
                       "--drain-timeout", "15s", "--out", str(out))
    s = json.loads((out / "summary.json").read_text())
    tq = s["total_queue"]
    print(f"\n[nemesis unsafe] seed {seed} ledger {json.dumps(tq)}")
    assert s["publisher"]["confirmed"] == 0 and s["publisher"]["sent"] > 0  # no confirms
    assert tq["lost"] > 0 and not tq["valid"], tq
    lost = next(c for c in s["checks"] if c["name"] == "total_queue_lost")
    assert lost["verdict"] == "FAIL"
    assert done.returncode in (1, 5), done.stdout[-2000:]
