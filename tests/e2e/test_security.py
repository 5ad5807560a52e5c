"""Credentials never reach logs, run directories or reports; bad config input of any shape
gives a one-line error, never a traceback."""

from __future__ import annotations

import os
import secrets
import subprocess
import sys
from pathlib import Path

from rabbitscale.broker.management import Management

ROOT = Path(__file__).resolve().parents[2]


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
            [sys.executable, "-m", "rabbitscale", "run", "sustained_tasks", "--duration",
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


