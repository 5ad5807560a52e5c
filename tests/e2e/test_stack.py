"""`rabbitscale stack --instances 3` as a user runs it: start, POST a webhook that reaches
the sink, Ctrl-C, and the stop summary reports 0 messages lost."""

from __future__ import annotations

import asyncio
import base64
import os
import re
import signal
import subprocess
import time

import aiohttp

from tests.support import broker, management


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


async def test_webhooks_reach_only_the_sink_and_the_receivers_allowed(running_stack):
    """The SSRF a key holder had: a webhook URL of the management API with a Basic header made
    the broker publish; caller-chosen headers reached a local listener. Now a webhook goes to
    the sink unless its host:port was allowed (`--webhook-allow`), and a message never chooses
    Authorization, Cookie, Host or proxy headers."""
    from aiohttp import web

    seen: dict[str, list[dict[str, str]]] = {"allowed": [], "other": []}

    def listener(name: str) -> web.Application:
        async def hook(request: web.Request) -> web.Response:
            seen[name].append(dict(request.headers))
            return web.Response(status=204)

        app = web.Application()
        app.router.add_post("/{tail:.*}", hook)
        return app

    runners, ports = [], {}
    for name in seen:
        runner = web.AppRunner(listener(name))
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        runners.append(runner)
        ports[name] = site._server.sockets[0].getsockname()[1]
    try:
        stack = running_stack("--webhook-allow", f"127.0.0.1:{ports['allowed']}",
                              secret="ssrf", instances=1)
        with management() as mgmt:
            mgmt("PUT", f"/queues/{stack.vhost}/probe", {"durable": False})
            publish = (f"{broker().management_base_url}/api/exchanges/{stack.vhost}/"
                       f"amq.default/publish")
            basic = "Basic " + base64.b64encode(b"guest:guest").decode()
            hooks = [
                (publish, {"Authorization": basic, "Content-Type": "application/json"},
                 {"properties": {}, "routing_key": "probe", "payload": "owned",
                  "payload_encoding": "string"}),
                (f"http://127.0.0.1:{ports['other']}/x", {"X-Trace": "1"}, {}),
                (f"http://127.0.0.1:{ports['allowed']}/cb",
                 {"Authorization": "Bearer stolen", "Cookie": "s=1", "Host": "evil",
                  "Proxy-Authorization": "p", "X-Trace": "kept"}, {"ok": True}),
            ]
            async with aiohttp.ClientSession() as http:
                for url, headers, payload in hooks:
                    async with http.post(f"{stack.api}/v1/webhook", json={
                            "url": url, "event": "TaskCompleted", "task_id": url,
                            "headers": headers, "payload": payload},
                            headers={"Authorization": f"Bearer {stack.key(1)}"}) as r:
                        assert r.status == 202, await r.text()
                for _ in range(200):
                    async with http.get(f"{stack.sink}/_sink/stats") as r:
                        stats = await r.json()
                    if stats["received"] >= 2 and seen["allowed"]:
                        break
                    await asyncio.sleep(0.05)
            probe = mgmt("GET", f"/queues/{stack.vhost}/probe")
    finally:
        for runner in runners:
            await runner.cleanup()
    assert stats["received"] == 2  # the management API's URL and the listener not allowed
    assert probe.get("messages", 0) == 0  # the broker published nothing for anyone
    assert seen["other"] == []
    assert len(seen["allowed"]) == 1
    got = {k.lower(): v for k, v in seen["allowed"][0].items()}
    assert got["x-trace"] == "kept"
    assert "authorization" not in got and "cookie" not in got
    assert "proxy-authorization" not in got and got["host"] == f"127.0.0.1:{ports['allowed']}"
