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


def _auth(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


async def test_auth_is_required(api):
    http, keys, _ = api
    for headers in ({}, _auth("condt_1_wrong"), _auth("nonsense"),
                    {"Authorization": keys.key_for(1)}):
        async with http.post("/v1/webhook", json={"url": "http://127.0.0.1/h"},
                             headers=headers) as r:
            assert r.status == 401
            assert (await r.json())["error"]["type"] == "authentication_error"
    async with http.get("/v1/tasks/x", headers=_auth("explicit-key")) as r:
        assert r.status == 404


@pytest.mark.parametrize("path,body,status", [
    ("/v1/webhook", b"{not json", 400),
    ("/v1/webhook", b"[1, 2]", 400),
    ("/v1/webhook", b"{}", 422),
    ("/v1/webhook", b'{"url": "ftp://x/y"}', 422),
    ("/v1/webhook", b'{"url": 5}', 422),
    ("/v1/webhook", b'{"url": "http://127.0.0.1/h", "headers": {"a": 1}}', 422),
    ("/v1/videos/generations/async", b'{"prompt": ""}', 422),
    ("/v1/videos/generations/async", b'{"prompt": "x", "duration": "long"}', 422),
    ("/v1/videos/generations/async", b'{"prompt": "x", "duration": true}', 422),
    ("/v1/images/generations/async", b'{"prompt": "x", "n": 99}', 422),
    ("/v1/spend", b'{"amount": "1"}', 422),
])
async def test_bad_bodies_get_a_json_error(api, path, body, status):
    http, keys, _ = api
    async with http.post(path, data=body, headers=_auth(keys.key_for(3))) as r:
        assert r.status == status
        assert (await r.json())["error"]["message"]


async def test_enqueue_and_task_status(api):
    http, keys, state = api
    async with http.post("/v1/videos/generations/async", json={"prompt": "a cat"},
                         headers=_auth(keys.key_for(3))) as r:
        assert r.status == 202
        video = await r.json()
    assert video["status"] == "pending"
    assert video["check_status_url"] == f"/v1/tasks/{video['task_id']}"
    async with http.get(video["check_status_url"], headers=_auth(keys.key_for(3))) as r:
        assert (await r.json())["status"] == "pending"
    async with http.post("/v1/images/generations/async", json={"prompt": "a dog", "n": 2},
                         headers=_auth(keys.key_for(3))) as r:
        assert r.status == 202 and (await r.json())["status"] == "queued"
    async with http.post("/v1/spend", json={"amount": 0.5},
                         headers=_auth(keys.key_for(3))) as r:
        assert r.status == 202
    assert state.publisher.stats.outcomes["confirmed"] == 3


async def test_full_queue_is_503_not_a_silent_loss(api):
    http, keys, state = api
    statuses = []
    for _i in range(6):
        async with http.post("/v1/webhook", json={"url": "http://127.0.0.1:9/h",
                                                  "event": "TaskCompleted"},
                             headers=_auth(keys.key_for(1))) as r:
            statuses.append(r.status)
            if r.status == 503:
                assert "queue full" in (await r.json())["error"]["message"]
    assert statuses.count(202) == state.publisher.stats.outcomes["confirmed"]
    assert statuses.count(503) == state.publisher.stats.outcomes["rejected"] >= 2


async def test_health_reports_rabbitmq_comprehensive(api):
    http, keys, _ = api
    async with http.get("/health") as r:
        doc = await r.json()
        assert r.status in (200, 503)
    assert set(doc) == {"status", "checks", "totalDuration"}
    check = doc["checks"][0]
    assert check["name"] == "rabbitmq_comprehensive"
    assert set(check) == {"name", "status", "description", "duration", "data"}
    data = check["data"]
    for k in ("bus_connected", "total_messages", "total_connections", "memory_used_mb",
              "memory_alarm", "queue_metrics"):
        assert k in data
    assert set(data["queue_metrics"]) == {ep.queue for ep in CONDUIT.endpoints}
    assert set(data["queue_metrics"]["webhook-delivery"]) == {
        "messages", "messages_ready", "messages_unacked", "consumers", "message_rate"}
    assert data["bus_connected"] is True and data["memory_alarm"] is False


async def test_health_is_503_when_a_queue_is_missing(api, vhost_settings):
    http, _, _ = api
    conn = await aio_pika.connect_robust(vhost_settings.amqp_url)
    await (await conn.channel()).queue_delete("media-cleanup-schedule")
    await conn.close()
    async with http.get("/health") as r:
        assert r.status == 503
        doc = await r.json()
    assert doc["status"] == "Unhealthy"
    assert "media-cleanup-schedule missing" in doc["checks"][0]["description"]


