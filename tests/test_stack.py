"""`rabbitscale stack --instances 3` as a user runs it: start, POST a webhook that reaches
the sink, Ctrl-C, and the stop summary reports 0 messages lost."""

from __future__ import annotations

import asyncio
import os
import re
import signal
import sys

import aiohttp
import pytest

from rabbitscale.harness.auth import VirtualKeys

pytestmark = [pytest.mark.broker, pytest.mark.slow]


async def test_stack_delivers_webhooks_and_stops_with_nothing_lost(vhost_settings):
    env = {**os.environ, "CONDUITLLM__RABBITMQ__VHOST": vhost_settings.vhost,
           "CONDUITLLM__RABBITMQ__HOST": vhost_settings.host,
           "RABBITSCALE_API_SECRET": "stack-test"}
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "rabbitscale.cli", "stack", "--instances", "3",
        "--api-port", "0", "--sink-port", "0", "--sink-latency", "20ms",
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT, env=env)
    out: list[str] = []
    try:
        while not any(line.startswith("ready") for line in out):
            line = await asyncio.wait_for(proc.stdout.readline(), 60)
            assert line, "stack exited early:\n" + "".join(out)
            out.append(line.decode())
        text = "".join(out)
        api = re.search(r"api:\s+(http://\S+)", text).group(1)
        sink = re.search(r"sink:\s+(http://\S+)", text).group(1)
        assert "condt_" not in text  # no credential in the stack's output
        key = VirtualKeys("stack-test").key_for(1)
        async with aiohttp.ClientSession() as http:
            for i in range(30):
                async with http.post(f"{api}/v1/webhook",
                                     headers={"Authorization": f"Bearer {key}"},
                                     json={"url": f"{sink}/hook", "event": "TaskCompleted",
                                           "task_id": f"t{i}"}) as r:
                    assert r.status == 202
            # the guide's own script posts to example.com: it is redirected to the sink
            async with http.post(f"{api}/v1/webhook", headers={"Authorization": f"Bearer {key}"},
                                 json={"url": "https://example.com/hook", "event": "test"}) as r:
                assert r.status == 202
            for _ in range(200):
                async with http.get(f"{sink}/_sink/stats") as r:
                    stats = await r.json()
                if stats["received"] >= 31:
                    break
                await asyncio.sleep(0.05)
        assert stats["received"] == 31 and stats["duplicates"] == 0
    finally:
        proc.send_signal(signal.SIGINT)
        rest = await asyncio.wait_for(proc.stdout.read(), 60)
        await proc.wait()
    text = "".join(out) + rest.decode()
    summary = re.search(r"stopped: (.*)", text).group(1)
    fields = dict(kv.split("=") for kv in summary.split())
    assert fields["published"] == "31" and fields["completed"] == "31", text
    assert fields["lost"] == "0"
    assert proc.returncode == 0
    assert len(re.findall(r"consumer-\d: stopped", text)) == 3


def test_consumers_stop_when_the_stack_is_killed(vhost_settings):
    """A stack killed with SIGKILL cannot stop its consumers (they run in sessions of their
    own); each notices its parent is gone and stops within seconds instead of running on."""
    import os
    import signal
    import subprocess
    import sys
    import time

    env = {**os.environ, "CONDUITLLM__RABBITMQ__HOST": vhost_settings.host,
           "CONDUITLLM__RABBITMQ__VHOST": vhost_settings.vhost}
    stack = subprocess.Popen([sys.executable, "-m", "rabbitscale", "stack", "--instances", "2",
                              "--api-port", "0", "--sink-port", "0"], env=env,
                             stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        assert stack.stdout is not None
        for line in stack.stdout:  # the stack says "ready" once both consumers consume
            if line.startswith("ready"):
                break
        children = subprocess.run(["pgrep", "-f", "rabbitscale.harness.consumer"],
                                  capture_output=True, text=True).stdout.split()
        mine = [pid for pid in children if f"{stack.pid}" == subprocess.run(
            ["ps", "-o", "ppid=", "-p", pid], capture_output=True, text=True).stdout.strip()]
        assert len(mine) == 2
    finally:
        stack.send_signal(signal.SIGKILL)
        stack.wait()
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline and any(os.path.exists(f"/proc/{p}") for p in mine):
        time.sleep(0.2)
    assert not any(os.path.exists(f"/proc/{p}") for p in mine), "orphaned consumers run on"
