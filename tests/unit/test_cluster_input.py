"""A local 3-node cluster from this machine's RabbitMQ: up, status, a run whose busiest node is
stopped mid-run (lost 0), down leaving nothing behind; and the bad inputs. The cluster lives in
a directory and on ports of its own (offset 200), so it never meets a developer's cluster."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
from pathlib import Path

from rabbitscale.broker import cluster
from tests import support

ROOT = Path(__file__).resolve().parents[2]
def rabbitscale(base: Path, *args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    """The command against the cluster living in ``base``."""
    return support.rabbitscale(*args, timeout=timeout, environ={cluster.BASE_ENV: str(base)})


def _base() -> Path:
    parent = Path(tempfile.mkdtemp(prefix="rs-cluster-test-"))
    os.chmod(parent, 0o755)  # the server runs as the rabbitmq user
    return parent / "cluster"


def test_cluster_bad_input(tmp_path):
    base = _base()
    no_cluster = rabbitscale(base, "run", "sustained_tasks", "--cluster")
    assert no_cluster.returncode == 2 and "no local cluster is running" in no_cluster.stderr
    no_flag = rabbitscale(base, "run", "sustained_tasks", "--fault", "node_loss")
    assert no_flag.returncode == 2 and "run it with --cluster" in no_flag.stderr
    assert rabbitscale(base, "cluster", "up", "--nodes", "0").returncode == 2
    with socket.socket() as taken:
        taken.bind((cluster.node_address(1, 900), cluster.PORT_BASE["amqp"] + 900 + 1))
        taken.listen()
        busy = rabbitscale(base, "cluster", "up", "--nodes", "1", "--port-offset", "900")
    assert busy.returncode == 2 and "already in use" in busy.stderr
    assert "\n" not in busy.stderr.strip() and "Traceback" not in busy.stderr
    assert not (base / cluster.STATE).exists()
    shutil.rmtree(base.parent, ignore_errors=True)


