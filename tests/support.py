"""Helpers for tests that look at the broker and the tool from outside: the management API over
urllib, a snapshot of a vhost's objects (to prove a read-only command changed nothing), the
`rabbitscale` command as a subprocess, and a stack started the way a user starts one."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from base64 import b64encode
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest

ROOT = Path(__file__).resolve().parent.parent
FIXTURES = Path(__file__).resolve().parent / "fixtures"
HOST = os.environ.get("CONDUITLLM__RABBITMQ__HOST", "127.0.0.1")
Call = Callable[[str, str, Any], Any]

# what installs a tool a test needs (scripts/setup.sh installs them all)
INSTALL = {"chromium": "apt-get install chromium (or: make setup)",
           "prometheus": "apt-get install prometheus (or: make setup)",
           "wrk": "apt-get install wrk (or: make setup)",
           "rabbitmq-server": "apt-get install rabbitmq-server (or: make setup)"}


def require_tool(name: str) -> str:
    """The tool's path, or the test is skipped with one line naming how to install it: a
    missing tool is not a failure of the product."""
    path = shutil.which(name)
    if path is None:
        pytest.skip(f"{name} is not installed: {INSTALL.get(name, 'install it')}")
    return path


def broker() -> Any:
    """The test broker's settings (rabbitscale's own reading of AMQP_URL and the
    CONDUITLLM__RABBITMQ__* keys: `make test` sets AMQP_URL when it started a broker of its
    own, with a user and password of its own)."""
    from rabbitscale.topology.settings import load_settings

    environ = dict(os.environ)
    environ.setdefault("CONDUITLLM__RABBITMQ__HOST", HOST)
    return load_settings(environ=environ)


def amqp_url(vhost: str = "/", host: str | None = None, port: int | None = None) -> str:
    """An AMQP URL of the test broker with its credentials, for ``vhost``."""
    s = broker()
    return (f"amqp://{quote(s.username, safe='')}:{quote(s.password, safe='')}@"
            f"{host or s.host}:{port or s.port}/{quote(vhost, safe='')}")


def env(**extra: str) -> dict[str, str]:
    """The environment of a command a user runs against the test broker: none of our own
    RABBITSCALE_* settings from the calling shell leak in."""
    base = {k: v for k, v in os.environ.items() if not k.startswith("RABBITSCALE_")}
    base.setdefault("CONDUITLLM__RABBITMQ__HOST", HOST)
    return {**base, **extra}


def rabbitscale(*args: str, timeout: float = 120, cwd: Path | None = None,
                environ: dict[str, str] | None = None,
                **extra: str) -> subprocess.CompletedProcess[str]:
    """`rabbitscale ARGS` as a subprocess (python -m rabbitscale), output captured: the one
    way every test runs the command. ``environ`` and ``extra`` are added to ``env()``."""
    return subprocess.run([sys.executable, "-m", "rabbitscale", *args],
                          env=env(**{**(environ or {}), **extra}),
                          capture_output=True, text=True, timeout=timeout, cwd=cwd or ROOT)


def one_line_error(done: subprocess.CompletedProcess[str]) -> str:
    """The command's error, asserted to be one line without a traceback."""
    err = done.stderr.strip()
    assert err.count("\n") == 0 and "Traceback" not in err, err
    return err


EXIT_OF_VERDICT = {"PASS": 0, "FAIL": 1}
EXIT_INVALID = 5


def assert_system_verdict(rc: int, summary: dict[str, Any], expected: str,
                          output: str = "") -> None:
    """The run exited with ``expected``'s code (PASS 0, FAIL 1), or with INVALID's (5) when
    only the generator's validity checks failed and the system's own checks still say
    ``expected``. Beside another test on a 2-core machine the Locust process sends late (CI
    saw 7-8% of sends more than 10 ms late in a 12 s run): a user rightly gets INVALID, but
    what a test of the system checks is still measured. Tests of validity itself assert it."""
    assert rc in (EXIT_OF_VERDICT[expected], EXIT_INVALID) and summary, output[-3000:]
    validity = set(summary["validity"]["checks"])
    system = [c for c in summary["checks"] if c["name"] not in validity]
    assert not [c for c in system if c["verdict"] == "INVALID"], output[-3000:]
    failed = [c["name"] for c in system if c["verdict"] == "FAIL"]
    assert ("FAIL" if failed else "PASS") == expected, (failed, output[-3000:])
    if rc == EXIT_INVALID:
        print("INVALID:", [c for c in summary["checks"] if c["verdict"] == "INVALID"])


@contextmanager
def management(base: str | None = None) -> Iterator[Call]:
    s = broker()
    base = base or f"{s.management_base_url}/api"
    auth = "Basic " + b64encode(f"{s.username}:{s.password}".encode()).decode()

    def call(method: str, path: str, body: Any = None) -> Any:
        parts = path.split("/")
        path = "/".join(quote(p, safe="") if i >= 2 else p for i, p in enumerate(parts))
        data = json.dumps(body).encode() if body is not None else None
        req = urllib.request.Request(base + path, data=data, method=method, headers={
            "Authorization": auth, "Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(req, timeout=10) as resp:
                text = resp.read()
        except urllib.error.HTTPError as exc:
            if method == "DELETE" and exc.code == 404:
                return None
            raise
        return json.loads(text) if text else None

    yield call


@contextmanager
def own_vhost(prefix: str = "rs-test") -> Iterator[str]:
    """A vhost of the test's own (the test broker's user may use it), deleted at the end."""
    vhost = f"{prefix}-{uuid.uuid4().hex[:8]}"
    with management() as mgmt:
        mgmt("PUT", f"/vhosts/{vhost}", {})
        mgmt("PUT", f"/permissions/{vhost}/{broker().username}",
             {"configure": ".*", "write": ".*", "read": ".*"})
    try:
        yield vhost
    finally:
        with management() as mgmt:
            mgmt("DELETE", f"/vhosts/{vhost}", None)


def broker_objects(vhost: str) -> dict[str, Any]:
    """Everything a command could change in a vhost but its message and consumer counts (both
    come from statistics that lag): queues with their type, arguments and policy, exchanges,
    bindings, policies."""
    with management() as mgmt:
        queues = {q["name"]: (q.get("type"), q.get("durable"), q.get("auto_delete"),
                              json.dumps(q.get("arguments", {}), sort_keys=True),
                              q.get("policy"))
                  for q in mgmt("GET", f"/queues/{vhost}", None)}
        exchanges = {e["name"]: (e["type"], e["durable"], e["auto_delete"],
                                 json.dumps(e.get("arguments", {}), sort_keys=True))
                     for e in mgmt("GET", f"/exchanges/{vhost}", None)}
        bindings = sorted((b["source"], b["destination"], b["destination_type"],
                           b["routing_key"]) for b in mgmt("GET", f"/bindings/{vhost}", None))
        policies = sorted(json.dumps(p, sort_keys=True)
                          for p in mgmt("GET", f"/policies/{vhost}", None))
    return {"queues": queues, "exchanges": exchanges, "bindings": bindings,
            "policies": policies}


def stats_ready(vhost: str, queues: list[str], wanted: dict[str, int] | None = None,
                timeout: float = 40) -> None:
    """Wait until the management API has statistics for these queues (and message counts)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with management() as mgmt:
            got = {q["name"]: q for q in mgmt("GET", f"/queues/{vhost}", None)}
        if all(got.get(q, {}).get("messages") is not None for q in queues) and all(
                got.get(q, {}).get("messages") == n for q, n in (wanted or {}).items()):
            return
        time.sleep(1)
    raise AssertionError(f"no statistics for {queues} after {timeout}s")


def wait_until(condition: Callable[[], bool], what: str, timeout: float = 60,
               every: float = 0.5) -> None:
    """Poll ``condition`` until it holds (instead of sleeping a guess); fail naming ``what``."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not after {timeout:g}s")
        time.sleep(every)


def consumers_ready(vhost: str, queues: list[str], timeout: float = 40) -> None:
    """Wait until the management API's statistics show a consumer on each queue (with its
    prefetch: doctor and discover read them)."""
    def ready() -> bool:
        with management() as mgmt:
            got = {c["queue"]["name"] for c in mgmt("GET", f"/consumers/{vhost}", None)
                   if c.get("prefetch_count") is not None}
        return set(queues) <= got

    wait_until(ready, f"consumers on {queues}", timeout)


@dataclass
class RunningStack:
    """`rabbitscale stack` started as a separate process, as a deployment would run it."""

    vhost: str
    secret: str
    proc: subprocess.Popen[str]
    output: list[str] = field(default_factory=list)
    stopped: dict[str, str] | None = None

    def _match(self, label: str) -> str:
        m = re.search(rf"{label}:\s+(http://\S+)", "".join(self.output))
        assert m, "".join(self.output)
        return m.group(1)

    @property
    def api(self) -> str:
        return self._match("api")

    @property
    def sink(self) -> str:
        return self._match("sink")

    def key(self, key_id: int = 1) -> str:
        from rabbitscale.harness.auth import VirtualKeys

        return VirtualKeys(self.secret).key_for(key_id)

    def stop(self, sig: int = signal.SIGINT) -> dict[str, str]:
        """Stop it like Ctrl-C; the fields of its "stopped:" ledger line."""
        if self.stopped is None:
            self.proc.send_signal(sig)
            rest = self.proc.communicate(timeout=60)[0] or ""
            self.output.append(rest)
            m = re.search(r"stopped: (.*)", rest)
            self.stopped = dict(kv.split("=", 1) for kv in m.group(1).split()) if m else {}
        return self.stopped

    @property
    def text(self) -> str:
        return "".join(self.output)


def free_port() -> int:
    """A TCP port nothing listens on now, on 127.0.0.1."""
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def start_stack(vhost: str, *args: str, secret: str = "stack-secret",
                instances: int = 2) -> RunningStack:
    proc = subprocess.Popen(
        [sys.executable, "-m", "rabbitscale", "stack", "--instances", str(instances),
         "--api-port", "0", "--sink-port", "0", *args],
        env=env(CONDUITLLM__RABBITMQ__VHOST=vhost, RABBITSCALE_API_SECRET=secret),
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=ROOT)
    stack = RunningStack(vhost, secret, proc)
    assert proc.stdout is not None
    deadline = time.monotonic() + 90
    for line in proc.stdout:  # "ready" once every consumer consumes
        stack.output.append(line)
        if line.startswith("ready") or time.monotonic() > deadline:
            break
    if not stack.text.count("ready"):
        proc.kill()
        raise AssertionError("the stack did not start:\n" + stack.text)
    return stack


def summary_json(**fields: Any) -> str:
    """A complete summary.json (results/summary.py) with ``fields`` replacing its own: tests
    that need a run directory without making a run."""
    from rabbitscale.results.summary import Summary

    base: dict[str, Any] = {
        "run": "fixture", "scenario": "sustained_tasks", "verdict": "PASS", "started_at": 0.0,
        "load_ended_at": 10.0, "duration_s": 10.0, "instances": 1, "workers": 0,
        "transport": "http",
        "targets": {"task_rate_per_min": 60.0, "webhook_rate_per_s": 0.0,
                    "burst_rates_per_s": []},
        "measured": {"arrivals": 0, "achieved_rate_per_min": 0.0, "peak_queue_depth": 0},
        "ledger": {}, "checks": []}
    for key, value in fields.items():
        base[key] = {**base[key], **value} if isinstance(value, dict) and \
            isinstance(base.get(key), dict) else value
    return Summary.model_validate(base).to_json()


def plan_exit(output: str) -> int:
    """The exit code `rabbitscale plan` owes for what it printed (text or --json): 1 when its
    verdict is FAIL, else 0."""
    try:
        failed = json.loads(output)["verdict"] == "FAIL"
    except ValueError:
        failed = "\nverdict: FAIL" in output
    return 1 if failed else 0
