"""Credentials never reach logs, run directories or reports; bad config input of any shape
gives a one-line error, never a traceback."""

from __future__ import annotations

import os
import secrets
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rabbitscale.capacity.audit import AuditError, audit, load_schema
from rabbitscale.harness.config import ConfigError, load_settings, read_profile_file
from rabbitscale.harness.management import Management
from rabbitscale.harness.overrides import apply_overrides
from rabbitscale.harness.profiles import CONDUIT

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.broker
@pytest.mark.slow
async def test_no_credential_in_run_directory_or_output(vhost_settings, tmp_path):
    user, password = f"rs-user-{secrets.token_hex(4)}", f"pw-{secrets.token_hex(12)}"
    api_secret = f"sec-{secrets.token_hex(12)}"
    async with Management(vhost_settings) as mgmt:
        await mgmt.request("PUT", f"/users/{user}", json={"password": password,
                                                          "tags": "monitoring"})
        await mgmt.request("PUT", f"/permissions/{mgmt.q(vhost_settings.vhost)}/{user}",
                           json={"configure": ".*", "write": ".*", "read": ".*"})
    try:
        env = {**os.environ, "CONDUITLLM__RABBITMQ__HOST": vhost_settings.host,
               "CONDUITLLM__RABBITMQ__USERNAME": user, "CONDUITLLM__RABBITMQ__PASSWORD": password,
               "RABBITSCALE_API_SECRET": api_secret}
        out = tmp_path / "run"
        proc = subprocess.run(
            [sys.executable, "-m", "rabbitscale.cli", "run", "sustained_tasks", "--duration",
             "6s", "--vhost", vhost_settings.vhost, "--out", str(out), "--drain-timeout", "20s"],
            capture_output=True, text=True, env=env, timeout=180, cwd=ROOT)
        assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
        assert (out / "report.html").exists()
        leaks = []
        for f in out.rglob("*"):
            if f.is_file():
                text = f.read_bytes()
                for secret in (password, api_secret):
                    if secret.encode() in text:
                        leaks.append((f.name, secret[:3]))
        assert not leaks, leaks
        assert password not in proc.stdout + proc.stderr
        assert api_secret not in proc.stdout + proc.stderr
        assert "condt_" not in proc.stdout + proc.stderr
    finally:
        async with Management(vhost_settings) as mgmt:
            await mgmt.request("DELETE", f"/users/{user}", ok=(200, 204, 404))


TEXT = st.text(max_size=300)


@settings(max_examples=200, deadline=None)
@given(TEXT)
def test_garbage_profile_files_are_one_line_errors(tmp_path_factory, text):
    f = tmp_path_factory.mktemp("p") / "p.toml"
    f.write_text(text)
    try:
        pf = read_profile_file(f)
        load_settings(pf, environ={})
        apply_overrides(CONDUIT, pf.endpoints, str(f))
    except ConfigError as exc:
        assert "\n" not in str(exc)


@settings(max_examples=200, deadline=None)
@given(st.dictionaries(st.sampled_from(["prefetch", "concurrency", "partitions", "retry",
                                        "breaker", "rate_limit", "service_time",
                                        "failure_probability", "queue_arguments", "x"]),
                       st.one_of(st.integers(-5, 70000), st.text(max_size=20), st.floats(),
                                 st.booleans(), st.none()), max_size=4))
def test_garbage_endpoint_settings_are_config_errors(table):
    try:
        apply_overrides(CONDUIT, {"spend-update-events": table})
    except ConfigError as exc:
        assert "\n" not in str(exc)


@settings(max_examples=200, deadline=None)
@given(st.dictionaries(st.sampled_from([
    "CONDUITLLM__RABBITMQ__PORT", "CONDUITLLM__RABBITMQ__PREFETCHCOUNT",
    "CONDUITLLM__RABBITMQ__MAXCONNECTIONS", "CONDUITLLM__RABBITMQ__MINCONNECTIONS",
    "CONDUITLLM__RABBITMQ__PUBLISHERCONFIRMATION", "CONDUITLLM__WEBHOOKPREFETCHCOUNT",
    "AMQP_URL"]), st.text(max_size=30), max_size=4))
def test_garbage_environment_is_config_errors(environ):
    try:
        load_settings(environ=environ)
    except ConfigError as exc:
        assert "\n" not in str(exc)


SCHEMA = load_schema()


@settings(max_examples=200, deadline=None)
@given(st.lists(st.one_of(TEXT, st.builds(lambda k, v: f"{k} = {v}", st.sampled_from(
    ["channel_max", "vm_memory_high_watermark.relative", "vm_memory_high_watermark.absolute",
     "disk_free_limit.relative", "total_memory_available_override_value", "heartbeat",
     "listeners.tcp.default", "x.y"]), TEXT)), max_size=8))
def test_garbage_rabbitmq_conf_never_crashes_the_audit(lines):
    try:
        findings = audit("\n".join(lines), schema=SCHEMA, container_memory_bytes=4 * 2**30,
                         disk_bytes=10**10)
    except AuditError:
        return
    assert all("\n" not in f.message for f in findings)
