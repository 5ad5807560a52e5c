"""Local RabbitMQ nodes from this machine's installation, without Docker ("clustering on a
single machine"): a fresh node to measure on, or a cluster of N to run against.

Each node has its own name (``rs1@localhost``...), its own loopback address (127.0.0.11,
127.0.0.12, ...: AMQP, management and Prometheus listen there, and its connections to the other
nodes leave from there, so faults/partition.py can cut node-to-node traffic with iptables), its
own ports, data and log directories, config and enabled-plugins files, all under one base
directory; nodes 2..N join node 1. The partition handling mode and ``net_ticktime`` are
settings of the cluster, kept in its state file and recorded in every run against it.
The server drops root privileges to the ``rabbitmq`` user, so the directories are made
writable for it, and every node shares that user's Erlang cookie. ``down`` stops every node,
removes the base directory and any firewall rule of ours: nothing is left behind.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from rabbitscale.core.errors import BadInput, PortInUse, RunFailed, Unavailable

BASE_ENV = "RABBITSCALE_CLUSTER_DIR"  # where the nodes live (default: the temp dir's)


def default_base() -> Path:
    return Path(os.environ.get(BASE_ENV) or Path(tempfile.gettempdir()) / "rabbitscale-cluster")

STATE = "cluster.json"
# node i of a cluster at offset o listens on base + o + i: ranges 10,000 apart never meet
PORT_BASE = {"amqp": 5700, "management": 15700, "dist": 25700, "prometheus": 35700}
PLUGINS = "[rabbitmq_management,rabbitmq_prometheus]."
BOOT_TIMEOUT_S = 120
PARTITION_HANDLING = ("pause_minority", "autoheal")
NET_TICKTIME_S = 10  # Erlang's default is 60: a partition is noticed within a run's minutes
CONF = """listeners.tcp.default = {ip}:{amqp}
management.tcp.port = {management}
management.tcp.ip = {ip}
prometheus.tcp.port = {prometheus}
prometheus.tcp.ip = {ip}
collect_statistics_interval = 5000
cluster_name = rabbitscale-local
cluster_partition_handling = {partition_handling}
"""


def node_address(i: int, port_offset: int = 0) -> str:
    """Node i's loopback address: 127.A.B.(10+i), A.B from the offset, so two clusters at two
    offsets never share an address (and a partition of one never cuts the other)."""
    return f"127.{port_offset // 100 % 250}.{port_offset % 100}.{10 + i}"


class ClusterError(RunFailed):
    """A node did not boot or did not join (its log's last lines are in the message)."""

    exit_code = Unavailable.exit_code


@dataclass(frozen=True)
class Node:
    name: str  # rs1@localhost
    amqp: int
    management: int
    prometheus: int
    dist: int
    dir: str
    ip: str = "127.0.0.1"
    net_ticktime: int = NET_TICKTIME_S

    @property
    def short(self) -> str:
        return self.name.split("@")[0]

    @property
    def management_url(self) -> str:
        return f"http://{self.ip}:{self.management}"

    @property
    def prometheus_url(self) -> str:
        return f"http://{self.ip}:{self.prometheus}"

    def env(self) -> dict[str, str]:
        d = Path(self.dir)
        # distribution: outgoing connections leave from the node's own address (what a
        # partition matches); the listener stays reachable on 127.0.0.1, where epmd and the
        # CLI tools look for it
        ip = "{" + self.ip.replace(".", ",") + "}"
        erl = f"-kernel inet_dist_connect_options [{{ip,{ip}}}] " \
              f"-kernel net_ticktime {self.net_ticktime}"
        return {**os.environ, "RABBITMQ_NODENAME": self.name,
                "RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS": erl,
                "RABBITMQ_CONFIG_FILE": str(d / "rabbitmq.conf"),
                "RABBITMQ_MNESIA_BASE": str(d / "mnesia"), "RABBITMQ_LOG_BASE": str(d / "log"),
                "RABBITMQ_ENABLED_PLUGINS_FILE": str(d / "enabled_plugins"),
                "RABBITMQ_DIST_PORT": str(self.dist), "RABBITMQ_PID_FILE": str(d / "pid")}

    def log_tail(self, lines: int = 8) -> str:
        d = Path(self.dir)
        logs = sorted((d / "log").glob("*.log")) + [d / "startup.log"]
        text = "".join(p.read_text(errors="replace") for p in logs if p.exists())
        kept = [x.strip() for x in text.strip().splitlines() if x.strip()]
        causes = [x for x in kept if "Error during startup" in x or "unknown variable" in x
                  or "eaddrinuse" in x.lower()]
        return " | ".join(causes[:3] or kept[-lines:]) or "no log"


@dataclass(frozen=True)
class Cluster:
    base: str
    nodes: tuple[Node, ...]
    partition_handling: str = PARTITION_HANDLING[0]
    net_ticktime: int = NET_TICKTIME_S

    def node(self, short: str) -> Node:
        for n in self.nodes:
            if short in (n.name, n.short):
                return n
        raise BadInput(f"no node {short!r} in the local cluster (nodes: "
                       f"{', '.join(n.short for n in self.nodes)})")

    def amqp_nodes(self) -> tuple[str, ...]:
        return tuple(f"{n.ip}:{n.amqp}" for n in self.nodes)

    def settings(self) -> dict[str, Any]:
        """What a run records of the cluster it ran against."""
        return {"nodes": [n.name for n in self.nodes],
                "addresses": {n.name: n.ip for n in self.nodes},
                "partition_handling": self.partition_handling,
                "net_ticktime_s": self.net_ticktime}


def _tool(name: str) -> str:
    exe = shutil.which(name)
    if exe is None:
        raise BadInput(f"{name} not found: a local cluster needs RabbitMQ installed on this "
                       f"machine (Debian: apt-get install rabbitmq-server)")
    return exe


def ctl(node: Node, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run([_tool("rabbitmqctl"), "-n", node.name, *args], env=node.env(),
                          capture_output=True, text=True, timeout=timeout)


def _port_free(port: int, ip: str = "127.0.0.1") -> bool:
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((ip, port))
        except OSError:
            return False
    return True


def load(base: Path | None = None) -> Cluster | None:
    path = (base or default_base()) / STATE
    if not path.exists():
        return None
    doc = json.loads(path.read_text())
    return Cluster(doc["base"], tuple(Node(**n) for n in doc["nodes"]),
                   doc.get("partition_handling", PARTITION_HANDLING[0]),
                   int(doc.get("net_ticktime", NET_TICKTIME_S)))


def require(base: Path | None = None) -> Cluster:
    cluster = load(base)
    if cluster is None:
        raise BadInput("no local cluster is running: start one with `rabbitscale cluster up "
                       "--nodes 3`")
    return cluster


def plan_nodes(count: int, base: Path, port_offset: int = 0,
               net_ticktime: int = NET_TICKTIME_S) -> tuple[Node, ...]:
    def port(kind: str, i: int) -> int:
        return PORT_BASE[kind] + port_offset + i

    prefix = "rs" if not port_offset else f"rs{port_offset}n"  # unique names per cluster
    return tuple(Node(f"{prefix}{i}@localhost", amqp=port("amqp", i),
                      management=port("management", i), prometheus=port("prometheus", i),
                      dist=port("dist", i), dir=str(base / f"rs{i}"),
                      ip=node_address(i, port_offset), net_ticktime=net_ticktime)
                 for i in range(1, count + 1))


def up(count: int, base: Path | None = None, port_offset: int = 0,
       say: Any = lambda text: None, partition_handling: str = PARTITION_HANDLING[0],
       net_ticktime: int = NET_TICKTIME_S) -> Cluster:
    """Boot ``count`` nodes and join them; on any failure nothing is left running."""
    base = base or default_base()
    if not 1 <= count <= 9:
        raise BadInput(f"--nodes must be between 1 and 9, got {count}")
    if partition_handling not in PARTITION_HANDLING:
        raise BadInput(f"--partition-handling must be one of {', '.join(PARTITION_HANDLING)}, "
                       f"got {partition_handling!r}")
    if load(base) is not None:
        raise BadInput(f"a local cluster is already running (state in {base}): "
                       f"`rabbitscale cluster down` first")
    _tool("rabbitmq-server")
    nodes = plan_nodes(count, base, port_offset, net_ticktime)
    for n in nodes:
        for what, ip, port in (("AMQP", n.ip, n.amqp), ("management", n.ip, n.management),
                               ("Prometheus", n.ip, n.prometheus),
                               ("distribution", "0.0.0.0", n.dist)):
            if not _port_free(port, ip):
                raise PortInUse(f"{n.short} {what}", ip, port, "--port-offset",
                                hint="another offset")
    base.mkdir(parents=True, exist_ok=True)
    os.chmod(base, 0o777)  # the server runs as the rabbitmq user
    for parent in base.resolve().parents:
        if not os.stat(parent).st_mode & 0o001:
            raise BadInput(f"{base}: the rabbitmq user cannot reach it ({parent} is mode "
                           f"{os.stat(parent).st_mode & 0o777:o}); set {BASE_ENV} to a path "
                           f"under /tmp")
    cluster = Cluster(str(base), nodes, partition_handling, net_ticktime)
    (base / STATE).write_text(json.dumps({"base": str(base), "nodes": [asdict(n) for n in nodes],
                                          "partition_handling": partition_handling,
                                          "net_ticktime": net_ticktime}, indent=2))
    try:
        for n in nodes:
            d = Path(n.dir)
            d.mkdir(parents=True, exist_ok=True)
            (d / "rabbitmq.conf").write_text(CONF.format(**asdict(n),
                                                         partition_handling=partition_handling))
            (d / "enabled_plugins").write_text(PLUGINS + "\n")
            os.chmod(d, 0o777)
            say(f"  starting {n.name} on {n.ip} (AMQP {n.amqp}, management {n.management})")
            _boot(n)
        for n in nodes:
            _await_boot(n)
        for n in nodes[1:]:
            say(f"  joining {n.name} to {nodes[0].name}")
            for args in (("stop_app",), ("join_cluster", nodes[0].name), ("start_app",)):
                done = ctl(n, *args)
                if done.returncode != 0:
                    raise ClusterError(f"{n.name}: rabbitmqctl {' '.join(args)} failed: "
                                       f"{(done.stderr or done.stdout).strip()[-300:]}")
        _await_management(nodes[0], count)
    except BaseException:
        down(base, quiet=True)
        raise
    return cluster


def _boot(n: Node) -> None:
    """Start the node's server: in the foreground but a session of its own, so it outlives
    this command; what it says before its own log exists (a bad config) lands in
    startup.log."""
    with (Path(n.dir) / "startup.log").open("a") as out:
        subprocess.Popen([_tool("rabbitmq-server")], env=n.env(), stdout=out,
                         stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                         start_new_session=True)


def node_pid(n: Node) -> int | None:
    """The node's Erlang VM (its pid file), or None where it does not run."""
    try:
        pid = int((Path(n.dir) / "pid").read_text().strip())
        os.kill(pid, 0)
    except (OSError, ValueError):
        return None
    return pid


def _alive(n: Node) -> bool:
    return node_pid(n) is not None


def signal_node(n: Node, sig: int) -> int:
    """Send ``sig`` to the node's VM (SIGSTOP pauses it, SIGCONT resumes, SIGKILL kills);
    returns its pid."""
    pid = node_pid(n)
    if pid is None:
        raise ClusterError(f"{n.name} is not running")
    os.kill(pid, sig)
    return pid


def restart_node(n: Node) -> None:
    """Boot a killed node again from its own data directory; it rejoins its cluster."""
    (Path(n.dir) / "pid").unlink(missing_ok=True)
    _boot(n)
    _await_boot(n)


def _await_boot(n: Node) -> None:
    """Until the node has booted: await_startup fails at once while the node is not yet
    registered with epmd, so it is asked again until the deadline; a node whose process is
    gone (a bad config, a port taken meanwhile) fails at once with its log."""
    started = time.monotonic()
    while True:
        done = ctl(n, "await_startup", "--timeout", "30", timeout=60)
        if done.returncode == 0:
            return
        waited = time.monotonic() - started
        if waited >= BOOT_TIMEOUT_S or (waited > 10 and not _alive(n)):
            raise ClusterError(f"{n.name} did not come up: {n.log_tail()}")
        time.sleep(1)


def _await_management(n: Node, count: int) -> None:
    """Until node 1's management API lists every node as running (stats arrive later)."""
    import urllib.request
    from base64 import b64encode

    req = urllib.request.Request(f"{n.management_url}/api/nodes", headers={
        "Authorization": "Basic " + b64encode(b"guest:guest").decode()})
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError, ValueError):
            with urllib.request.urlopen(req, timeout=3) as resp:
                nodes = json.loads(resp.read())
            if sum(bool(x.get("running")) for x in nodes) >= count:
                return
        time.sleep(1)
    raise ClusterError(f"{n.name}: the management API does not list {count} running nodes: "
                       f"{n.log_tail()}")


def status(cluster: Cluster) -> list[dict[str, Any]]:
    """Each node with its ports and whether it runs (rabbitmqctl status)."""
    out = []
    for n in cluster.nodes:
        done = ctl(n, "status", "--formatter", "json", timeout=30)
        running = done.returncode == 0
        version = ""
        if running:
            with contextlib.suppress(ValueError):
                version = json.loads(done.stdout).get("rabbitmq_version", "")
        out.append({"node": n.name, "running": running, "amqp": n.amqp,
                    "management": n.management, "prometheus": n.prometheus,
                    "version": version})
    return out


def stop_node(n: Node) -> None:
    ctl(n, "stop_app", timeout=60)


def start_node(n: Node) -> None:
    done = ctl(n, "start_app", timeout=120)
    if done.returncode != 0:
        raise ClusterError(f"{n.name}: start_app failed: {n.log_tail()}")
    _await_boot(n)


def down(base: Path | None = None, quiet: bool = False) -> int:
    """Stop every node and remove the base directory; returns the nodes stopped. (A partition
    a killed run left behind is cleared by `cluster down` first: faults/partition.py.)"""
    base = base or default_base()
    cluster = load(base)
    stopped = 0
    if cluster is not None:
        for n in cluster.nodes:
            with contextlib.suppress(Exception):  # a node paused by a nemesis cannot stop
                signal_node(n, signal.SIGCONT)
        for n in cluster.nodes:
            with contextlib.suppress(Exception):
                ctl(n, "stop", timeout=60)
                stopped += 1
            pid_file = Path(n.dir) / "pid"
            with contextlib.suppress(Exception):  # a node that would not stop politely
                os.kill(int(pid_file.read_text().strip()), signal.SIGKILL)
    elif not quiet and not base.exists():
        raise BadInput("no local cluster is running")
    shutil.rmtree(base, ignore_errors=True)
    return stopped


def default_replicas(nodes: int) -> int:
    """Quorum queue members when none are asked for: one per node, at most three."""
    return min(3, nodes)


def on_local_cluster(settings: Any, profile: Any, replicas: int | None
                     ) -> tuple[Any, Any, int]:
    """Settings that reach every node of the running local cluster, the profile with its
    quorum queues' replica count, and that count."""
    import dataclasses

    from rabbitscale.topology.profile_file import with_replicas

    c = require()
    first = c.nodes[0]
    n = replicas or default_replicas(len(c.nodes))
    if n > len(c.nodes):
        raise BadInput(f"--replicas {n}: the local cluster has {len(c.nodes)} node(s)")
    settings = dataclasses.replace(settings, host=first.ip, port=first.amqp,
                                   management_port=first.management, management_url=None,
                                   cluster_nodes=c.amqp_nodes())
    return settings, with_replicas(profile, n), n
