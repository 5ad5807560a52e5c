"""docker-compose.yml checked statically (no Docker engine here) and deploy/rabbitmq.conf
booted on a real, separate RabbitMQ node with its own name, ports and data directory."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import tempfile
import time
import urllib.request
from base64 import b64encode
from pathlib import Path

from tests.support import require_tool

ROOT = Path(__file__).resolve().parents[2]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_rabbitmq_conf_boots_a_real_node():
    server = require_tool("rabbitmq-server")
    amqp, http, dist = _free_port(), _free_port(), _free_port()
    conf = (ROOT / "deploy" / "rabbitmq.conf").read_text()
    # only the listeners move, so this node does not collide with the shared broker
    conf = conf.replace("listeners.tcp.default = 5672", f"listeners.tcp.default = 127.0.0.1:{amqp}")
    conf = conf.replace("management.tcp.port = 15672", f"management.tcp.port = {http}")
    assert f":{amqp}" in conf and f"= {http}" in conf
    # not pytest's tmp_path: its parents are 0700 and the server runs as the rabbitmq user
    base = Path(tempfile.mkdtemp(prefix="rs-conf-"))
    (base / "rabbitmq.conf").write_text(conf)
    (base / "enabled_plugins").write_text("[rabbitmq_management].\n")
    os.chmod(base, 0o777)  # rabbitmq-server drops root privileges to the rabbitmq user
    node = f"rsconf{os.getpid()}@localhost"
    env = {**os.environ, "RABBITMQ_NODENAME": node,
           "RABBITMQ_CONFIG_FILE": str(base / "rabbitmq.conf"),
           "RABBITMQ_MNESIA_BASE": str(base / "mnesia"), "RABBITMQ_LOG_BASE": str(base / "log"),
           "RABBITMQ_ENABLED_PLUGINS_FILE": str(base / "enabled_plugins"),
           "RABBITMQ_DIST_PORT": str(dist), "RABBITMQ_PID_FILE": str(base / "pid")}
    subprocess.run([server, "-detached"], env=env, check=True, timeout=60)
    auth = "Basic " + b64encode(b"guest:guest").decode()
    nodes = None
    try:
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            try:
                req = urllib.request.Request(f"http://127.0.0.1:{http}/api/nodes",
                                             headers={"Authorization": auth})
                with urllib.request.urlopen(req, timeout=2) as resp:
                    nodes = json.loads(resp.read())
                if nodes and "mem_limit" in nodes[0]:  # node stats arrive a moment later
                    break
            except OSError:
                pass
            time.sleep(0.5)
        logs = "".join(p.read_text(errors="replace") for p in (base / "log").glob("*.log")) \
            if (base / "log").exists() else ""
        assert nodes, f"node did not boot with deploy/rabbitmq.conf:\n{logs[-3000:]}"
        # total_memory_available_override_value = 4GiB, relative 0.6 -> 2.4 GiB watermark
        assert nodes[0]["mem_limit"] == int(0.6 * 4 * 2**30)
        assert "unknown variable" not in logs
    finally:
        subprocess.run(["rabbitmqctl", "-n", node, "stop"], capture_output=True, timeout=60)
        shutil.rmtree(base, ignore_errors=True)


