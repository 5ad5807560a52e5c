"""`rabbitscale stack --instances 3` as a user runs it: start, POST a webhook that reaches
the sink, Ctrl-C, and the stop summary reports 0 messages lost."""

from __future__ import annotations

import asyncio
import os
import re
import signal
import subprocess
import time

import aiohttp


async def test_stack_delivers_webhooks_and_stops_with_nothing_lost(running_stack):
    stack = running_stack("--sink-latency", "20ms", secret="stack-test", instances=3)
    api, sink = stack.api, stack.sink
    assert "condt_" not in stack.text  # no credential in the stack's output
    key = stack.key(1)
    async with aiohttp.ClientSession() as http:
        for i in range(30):
            async with http.post(f"{api}/v1/webhook", headers={"Authorization": f"Bearer {key}"},
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
    fields = stack.stop()
    assert fields["published"] == "31" and fields["completed"] == "31", stack.text
    assert fields["lost"] == "0"
    assert stack.proc.returncode == 0
    assert len(re.findall(r"consumer-\d: stopped", stack.text)) == 3


def test_consumers_stop_when_the_stack_is_killed(running_stack):
    """A stack killed with SIGKILL cannot stop its consumers (they run in sessions of their
    own); each notices its parent is gone and stops within seconds instead of running on."""
    stack = running_stack()
    children = subprocess.run(["pgrep", "-f", "rabbitscale.harness.consumer"],
                              capture_output=True, text=True).stdout.split()
    mine = [pid for pid in children if f"{stack.proc.pid}" == subprocess.run(
        ["ps", "-o", "ppid=", "-p", pid], capture_output=True, text=True).stdout.strip()]
    assert len(mine) == 2
    stack.stop(signal.SIGKILL)
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline and any(os.path.exists(f"/proc/{p}") for p in mine):
        time.sleep(0.2)
    assert not any(os.path.exists(f"/proc/{p}") for p in mine), "orphaned consumers run on"
