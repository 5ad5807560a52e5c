"""Every dependency failure ends in one line and its exit code (core/errors.py): a wrong
password, the broker down, the management API down and a port in use, for `run`, `stack` and
`find-max`, and a bad directory for `plan --calibrate`. Each command runs as a user runs it:
a process of its own, from another directory, its whole stderr inspected."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from rabbitscale.core.errors import (
    EXIT_BAD_INPUT,
    EXIT_UNAVAILABLE,
)
from tests import support

COMMANDS = {
    "run": ["run", "sustained_tasks", "--duration", "5s", "--drain-timeout", "5s"],
    "stack": ["stack", "--api-port", "0", "--sink-port", "0", "--instances", "1"],
    "find-max": ["find-max", "sustained_tasks", "--step-duration", "5s", "--start", "5/s"],
}
FAILURES = {
    "wrong password": ({"CONDUITLLM__RABBITMQ__PASSWORD": "not-the-password"}, "refused user"),
    "broker down": ({"CONDUITLLM__RABBITMQ__PORT": "1"}, "cannot reach RabbitMQ at"),
    "management down": ({"CONDUITLLM__RABBITMQ__MANAGEMENTPORT": "1"},
                        "cannot reach the RabbitMQ management API"),
}


def rabbitscale(args: list[str], tmp_path: Path, env: dict[str, str] | None = None,
                timeout: float = 90) -> subprocess.CompletedProcess[str]:
    return support.rabbitscale(*args, cwd=tmp_path, timeout=timeout, environ=env)


def assert_one_line(done: subprocess.CompletedProcess[str], code: int, needle: str) -> None:
    err = done.stderr.strip()
    assert done.returncode == code, (done.returncode, err, done.stdout[-1000:])
    assert err.startswith("error: ") and "\n" not in err, err
    assert needle in err, err
    assert "Traceback" not in done.stderr + done.stdout
    assert "Unclosed" not in done.stderr + done.stdout


@pytest.mark.parametrize("failure", sorted(FAILURES))
@pytest.mark.parametrize("command", ["run", "find-max"])
def test_dependency_failures_of_runs(command, failure, tmp_path):
    env, needle = FAILURES[failure]
    assert_one_line(rabbitscale(COMMANDS[command], tmp_path, env), EXIT_UNAVAILABLE, needle)


@pytest.mark.parametrize("failure", ["wrong password", "broker down"])
def test_dependency_failures_of_the_stack(failure, tmp_path):
    env, needle = FAILURES[failure]
    assert_one_line(rabbitscale(COMMANDS["stack"], tmp_path, env), EXIT_UNAVAILABLE, needle)


def test_stack_without_management_api_runs_and_says_health_is_unhealthy(tmp_path):
    """The stack needs the management API only for /health: it starts, warns in one line,
    and stops cleanly."""
    env = {**os.environ, "CONDUITLLM__RABBITMQ__HOST": "127.0.0.1",
           "CONDUITLLM__RABBITMQ__MANAGEMENTPORT": "1"}
    proc = subprocess.Popen([sys.executable, "-m", "rabbitscale", *COMMANDS["stack"]],
                            cwd=tmp_path, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    lines = []
    assert proc.stdout is not None
    for line in proc.stdout:
        lines.append(line)
        if line.startswith("ready"):
            break
    proc.terminate()
    out, err = proc.communicate(timeout=60)
    text = "".join(lines) + out
    assert "warning: cannot reach the RabbitMQ management API" in text
    assert "/health reports Unhealthy" in text
    assert proc.returncode == 0 and "Traceback" not in err and "Unclosed" not in err


def test_port_in_use(tmp_path):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        done = rabbitscale(["stack", "--api-port", str(port), "--sink-port", "0"], tmp_path)
    assert_one_line(done, EXIT_BAD_INPUT, f"port {port} on 127.0.0.1 is already in use")
    assert "consumer-1" not in done.stdout  # nothing was started before the port was checked


