"""docker-compose.yml checked statically (no Docker engine here) and deploy/rabbitmq.conf
booted on a real, separate RabbitMQ node with its own name, ports and data directory."""

from __future__ import annotations

import re
from pathlib import Path

import yaml

from rabbitscale.topology.settings import ENV_PREFIX, FIELDS, WEBHOOK_PREFETCH_ENV, load_settings

ROOT = Path(__file__).resolve().parents[2]


def _compose() -> dict:
    return yaml.safe_load((ROOT / "docker-compose.yml").read_text())


def test_compose_services_and_images():
    doc = _compose()
    assert set(doc["services"]) == {"rabbitmq", "stack", "prometheus", "grafana", "loadgen",
                                    "worker"}
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


def test_cluster_compose_file():
    """docker-compose.cluster.yml, checked statically: three clustered nodes that find each
    other, no default secret, the stack given every node."""
    from rabbitscale.topology.settings import CLUSTER_ENV, parse_nodes

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
    from rabbitscale.inspect.audit import ERROR, audit, load_schema

    findings = audit((ROOT / "deploy" / "cluster.conf").read_text(), schema=load_schema())
    assert not [f for f in findings if f.severity == ERROR], findings


def test_dockerfile_copies_the_one_package():
    copies = [line.split()[1:-1] for line in (ROOT / "Dockerfile").read_text().splitlines()
              if line.startswith("COPY")]
    sources = [s for srcs in copies for s in srcs]
    assert "rabbitscale" in sources and all((ROOT / s).exists() for s in sources)


def test_make_demo_starts_the_compose_broker_with_secrets_of_its_own(tmp_path):
    """No broker answers and no rabbitmq-server: ensure_broker.sh starts the compose file's
    broker, which refuses to start without RABBITMQ_PASSWORD and RABBITSCALE_API_SECRET, so
    it gives both, and writes AMQP_URL (user conduit, the compose file's) for the make targets.
    Docker is a stand-in here that records what it was asked."""
    import os
    import subprocess
    import sys

    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    calls = tmp_path / "calls"
    docker = bin_dir / "docker"
    docker.write_text("#!/bin/sh\n"
                      f"echo \"$* RABBITMQ_PASSWORD=$RABBITMQ_PASSWORD "
                      f"SECRET=$RABBITSCALE_API_SECRET\" >> {calls}\n")
    docker.chmod(0o755)
    path = os.pathsep.join([str(bin_dir), str(Path(sys.executable).parent), "/usr/bin", "/bin"])
    done = subprocess.run(["bash", str(ROOT / "scripts" / "ensure_broker.sh")], cwd=tmp_path,
                          env={"PATH": path, "AMQP_URL": "amqp://guest:guest@127.0.0.1:1/",
                               "RABBITSCALE_BROKER_WAIT_S": "1", "HOME": str(tmp_path)},
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 1 and "did not come up" in done.stdout, done.stdout
    up = [c for c in calls.read_text().splitlines() if c.startswith("compose up -d rabbitmq")]
    assert len(up) == 1
    fields = dict(kv.split("=", 1) for kv in up[0].split()[4:])
    assert len(fields["RABBITMQ_PASSWORD"]) >= 16 and len(fields["SECRET"]) >= 16
    env_file = tmp_path / ".rabbitscale-broker.env"
    assert env_file.read_text().strip() == \
        f"AMQP_URL=amqp://conduit:{fields['RABBITMQ_PASSWORD']}@127.0.0.1:5672/"
    assert env_file.stat().st_mode & 0o077 == 0


def test_compose_load_generators_scale_and_parse():
    """The load profile: a master that waits for RABBITSCALE_WORKERS workers and a worker
    service that scales (no host ports, no container name); both command lines parse with
    rabbitscale's own parsers, so a renamed flag fails here, not in a user's compose up."""
    import importlib

    from rabbitscale.cli.main import COMMANDS

    doc = _compose()
    master, worker = doc["services"]["loadgen"], doc["services"]["worker"]
    assert master["profiles"] == worker["profiles"] == ["load"]
    for svc in (master, worker):
        assert "ports" not in svc and "container_name" not in svc
    assert worker["command"][:4] == ["rabbitscale", "worker", "--master", "loadgen:5557"]
    assert "5557" in master["expose"] and "--expect-workers" in master["command"]
    env = {"RABBITSCALE_SCENARIO": "sustained_tasks", "RABBITSCALE_DURATION": "5m",
           "RABBITSCALE_TASK_RATE": "1000/min", "RABBITSCALE_WORKERS": "2"}

    def expand(word: str) -> str:
        return re.sub(r"\$\{(\w+):-[^}]*\}", lambda m: env[m.group(1)], word)

    for svc in (master, worker):
        name, *argv = [expand(w) for w in svc["command"][1:]]
        module = importlib.import_module(f"rabbitscale.cli.commands.{COMMANDS[name].module}")
        args = module.parser(argv).parse_args(argv)
        assert args is not None
    stack_env = doc["services"]["stack"]["environment"]
    assert stack_env["RABBITSCALE_API_KEYS"] == "${RABBITSCALE_TARGET_API_KEYS:-}"
    assert master["environment"]["RABBITSCALE_TARGET_API_KEYS"].startswith(
        "${RABBITSCALE_TARGET_API_KEYS:?")
