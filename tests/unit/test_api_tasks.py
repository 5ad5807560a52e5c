"""The stack's HTTP API on a real server and a real broker: auth, validation, enqueue,
task status, /health."""

from __future__ import annotations

import aio_pika
import aiohttp
import pytest
from aiohttp import web

from rabbitscale.broker.declare import declare
from rabbitscale.broker.management import Management
from rabbitscale.broker.publisher import Publisher
from rabbitscale.harness.api import ApiState, create_app
from rabbitscale.harness.auth import VirtualKeys
from rabbitscale.harness.health import DepthThresholds
from rabbitscale.topology.profile_file import apply_overrides, get_profile

CONDUIT = get_profile("conduit")


@pytest.fixture
async def api(vhost_settings):
    profile = apply_overrides(CONDUIT, {"webhook-delivery": {"queue_arguments": {
        "x-max-length": 3, "x-overflow": "reject-publish"}}})
    conn = await aio_pika.connect_robust(vhost_settings.amqp_url)
    await declare(await conn.channel(), profile, vhost_settings)
    pub = await Publisher(vhost_settings, profile).start()
    keys = VirtualKeys("test-secret", {"explicit-key": 5})
    mgmt = Management(vhost_settings)
    state = ApiState(pub, keys, mgmt, DepthThresholds(warning=1, critical=2))
    runner = web.AppRunner(create_app(state))
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]
    async with aiohttp.ClientSession(f"http://127.0.0.1:{port}") as http:
        yield http, keys, state
    await runner.cleanup()
    await pub.close()
    await mgmt.close()
    await conn.close()


def test_task_store_is_bounded_by_count_and_age(monkeypatch):
    """A long run must not grow the stack: finished or not, a task leaves the status store
    after retention_s, or when max_tasks newer ones came after it."""
    import rabbitscale.harness.api as api_mod

    clock = [1000.0]
    monkeypatch.setattr(api_mod.time, "time", lambda: clock[0])
    state = ApiState(None, None, None, max_tasks=3, retention_s=60.0)  # type: ignore[arg-type]
    for i in range(5):
        state.new_task(f"t{i}", "pending", "video")
    assert list(state.tasks) == ["t2", "t3", "t4"]  # count bound
    state.new_task("t2", "queued", "webhook")  # a reused id is the newest, not the oldest
    assert list(state.tasks) == ["t3", "t4", "t2"]
    clock[0] += 61.0
    state.new_task("t5", "pending", "image")
    assert list(state.tasks) == ["t5"]  # the age bound took every older one
