"""docker-compose.yml checked statically (no Docker engine here) and deploy/rabbitmq.conf
booted on a real, separate RabbitMQ node with its own name, ports and data directory."""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
import subprocess
import tempfile
import time
import urllib.request
from base64 import b64encode
from pathlib import Path

import pytest
import yaml

from rabbitscale.harness.config import ENV_PREFIX, FIELDS, WEBHOOK_PREFETCH_ENV, load_settings

ROOT = Path(__file__).resolve().parent.parent


def _compose() -> dict:
    return yaml.safe_load((ROOT / "docker-compose.yml").read_text())


def test_compose_services_and_images():
    doc = _compose()
    assert set(doc["services"]) == {"rabbitmq", "stack", "prometheus", "grafana"}
    for name in ("prometheus", "grafana"):  # only with --profile monitoring
        assert doc["services"][name]["profiles"] == ["monitoring"]
    rmq = doc["services"]["rabbitmq"]
    assert rmq["image"] == "rabbitmq:3.13-management"
    assert "./deploy/rabbitmq.conf:/etc/rabbitmq/rabbitmq.conf:ro" in rmq["volumes"]
    assert rmq["deploy"]["resources"]["limits"]["memory"] == "4G"
    assert "RABBITMQ_VM_MEMORY_HIGH_WATERMARK" not in rmq["environment"]
    stack = doc["services"]["stack"]
    assert stack["build"] == "." and (ROOT / "Dockerfile").exists()
    assert "ports" not in stack  # scalable: `--scale stack=N` must not collide on host ports


def test_compose_env_names_match_the_config_loader():
    env = _compose()["services"]["stack"]["environment"]
    for name in env:
        if name.startswith(ENV_PREFIX):
            assert name[len(ENV_PREFIX):] in FIELDS, name
        elif name.startswith("CONDUITLLM__"):
            assert name == WEBHOOK_PREFETCH_ENV, name
    values = {k: str(v) for k, v in env.items() if k.startswith("CONDUITLLM__")}
    values[ENV_PREFIX + "PASSWORD"] = "x"
    s = load_settings(environ=values)
    assert (s.host, s.prefetch_count, s.partition_count, s.webhook_prefetch_count) == (
        "rabbitmq", 25, 30, 100)


def test_compose_has_no_default_secret():
    text = (ROOT / "docker-compose.yml").read_text()
    assert "${RABBITMQ_PASSWORD:?" in text and "${RABBITMQ_PASSWORD:-" not in text
    for service in _compose()["services"].values():
        for key, value in service.get("environment", {}).items():
            if "PASS" in key or "SECRET" in key:
                assert str(value).startswith("${") and ":?" in str(value), key


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow
def test_rabbitmq_conf_boots_a_real_node():
    server = shutil.which("rabbitmq-server")
    if server is None:
        pytest.fail("rabbitmq-server is not installed (.ci/run installs it)")
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


def test_cluster_compose_file():
    """docker-compose.cluster.yml, checked statically: three clustered nodes that find each
    other, no default secret, the stack given every node."""
    from rabbitscale.harness.config import CLUSTER_ENV, parse_nodes

    doc = yaml.safe_load((ROOT / "docker-compose.cluster.yml").read_text())
    brokers = {k: v for k, v in doc["services"].items() if k.startswith("rabbitmq")}
    assert len(brokers) == 3 and {b["hostname"] for b in brokers.values()} == set(brokers)
    conf = (ROOT / "deploy" / "cluster.conf").read_text()
    listed = set(re.findall(r"classic_config\.nodes\.\d+ = rabbit@(\S+)", conf))
    assert listed == set(brokers)
    for b in brokers.values():
        assert b["image"] == "rabbitmq:3.13-management"
        assert "./deploy/cluster.conf:/etc/rabbitmq/conf.d/20-cluster.conf:ro" in b["volumes"]
        assert "./deploy/rabbitmq.conf:/etc/rabbitmq/rabbitmq.conf:ro" in b["volumes"]
        assert b["deploy"]["resources"]["limits"]["memory"] == "4G"
        for key in ("RABBITMQ_DEFAULT_PASS", "RABBITMQ_ERLANG_COOKIE"):
            assert ":?" in str(b["environment"][key]), key  # no default secret
    stack = doc["services"]["stack"]
    nodes = parse_nodes(CLUSTER_ENV, stack["environment"][CLUSTER_ENV])
    assert {n.split(":")[0] for n in nodes} == set(brokers)
    assert set(stack["depends_on"]) == set(brokers)
    text = (ROOT / "docker-compose.cluster.yml").read_text()
    assert ":-" not in text  # nothing secret falls back to a default


def test_cluster_conf_passes_the_audit():
    from rabbitscale.capacity.audit import ERROR, audit, load_schema

    findings = audit((ROOT / "deploy" / "cluster.conf").read_text(), schema=load_schema())
    assert not [f for f in findings if f.severity == ERROR], findings
