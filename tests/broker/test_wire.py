"""MassTransit wire fidelity, both ways. Envelopes written exactly as a .NET MassTransit 8
publisher of ConduitLLM emits them (tests/fixtures/masstransit) go through the real broker to
the stack's consumers, and the test asserts what the content says should happen: the webhook
reaches the URL in the message with its payload and headers, a task's callbacks reach its
webhook URL, spend updates apply in order per keyId, a fault keeps the MT-Fault-* headers.
And what the stack writes is what MassTransit writes."""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import aio_pika
import pytest
from aiohttp import web

from rabbitscale.broker.declare import declare
from rabbitscale.core.headers import RS_FAIL
from rabbitscale.harness.completions import Completion
from rabbitscale.harness.consumer import ConsumerInstance, ConsumerOptions
from rabbitscale.topology import messages
from rabbitscale.topology.envelope import (
    CONTENT_TYPE,
    build_envelope,
    measurement_headers,
    parse_dotnet_time,
    parse_envelope,
    sent_time_text,
)
from rabbitscale.topology.profile_file import get_profile

CONDUIT = get_profile("conduit")

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "masstransit"


def fixture(name: str, **values: Any) -> bytes:
    text = (FIXTURES / f"{name}.json").read_text()
    for key, value in values.items():
        text = text.replace("{{" + key + "}}", str(value))
    json.loads(text)  # still the JSON a .NET publisher sends
    return text.encode()


class Receiver:
    """A webhook target of the test's own: records every request."""

    def __init__(self) -> None:
        self.calls: list[dict[str, Any]] = []
        self.runner: web.AppRunner | None = None
        self.url = ""

    async def handle(self, request: web.Request) -> web.Response:
        self.calls.append({"path": request.path, "headers": dict(request.headers),
                           "body": (await request.read()).decode()})
        return web.json_response({"ok": True})

    async def __aenter__(self) -> Receiver:
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self.handle)
        self.runner = web.AppRunner(app, access_log=None)
        await self.runner.setup()
        site = web.TCPSite(self.runner, "127.0.0.1", 0)
        await site.start()
        self.url = f"http://127.0.0.1:{site._server.sockets[0].getsockname()[1]}"  # type: ignore[union-attr]
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self.runner is not None
        await self.runner.cleanup()


async def publish_as_dotnet(settings, type_name: str, body: bytes, message_id: str,
                            headers: dict | None = None) -> None:
    """What MassTransit's RabbitMQ transport sends: the envelope bytes to the message type's
    exchange, content type, message id, persistent."""
    conn = await aio_pika.connect(settings.amqp_url)
    ch = await conn.channel(publisher_confirms=True)
    ex = await ch.get_exchange(CONDUIT.message(type_name).exchange, ensure=False)
    await ex.publish(aio_pika.Message(body, content_type=CONTENT_TYPE, message_id=message_id,
                                      delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
                                      headers=headers), routing_key="")
    await conn.close()


async def wait_for(predicate, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached in time")
        await asyncio.sleep(0.05)


async def consumers(settings, queues: list[str], instances: int = 1, allow: str = ""
                    ) -> tuple[list[ConsumerInstance], list[Completion]]:
    """Consumer instances of ``queues``; ``allow``: a receiver URL their webhooks may reach
    (every other URL has no sink here and faults)."""
    conn = await aio_pika.connect(settings.amqp_url)
    await declare(await conn.channel(), CONDUIT, settings)
    await conn.close()
    records: list[Completion] = []
    started = []
    for i in range(instances):
        inst = await ConsumerInstance(settings, CONDUIT, ConsumerOptions(
            instance=f"c{i + 1}", time_scale=0.01,
            webhook_allow=(urlsplit(allow).netloc,) if allow else ()), queues=queues).start()
        inst.completed.add_listener(lambda record: records.append(record))
        started.append(inst)
    return started, records


async def test_webhook_from_a_dotnet_publisher_reaches_its_url(vhost_settings):
    async with Receiver() as target:
        insts, records = await consumers(vhost_settings, ["webhook-delivery"],
                                         allow=target.url)
        await publish_as_dotnet(vhost_settings, "WebhookDeliveryRequested", fixture(
            "webhook_delivery_requested", WEBHOOK_URL=target.url + "/hooks/img"),
            "0a3c0000-ac11-0242-9c31-08ddc8e4a1f2")
        await wait_for(lambda: len(target.calls) == 1 and len(records) == 1)
    for inst in insts:
        await inst.stop()
    call = target.calls[0]
    doc = json.loads((FIXTURES / "webhook_delivery_requested.json").read_text())
    assert call["path"] == "/hooks/img"
    assert call["body"] == doc["message"]["payloadJson"]  # the payload, byte for byte
    h = call["headers"]
    assert h["X-Customer-Signature"] == "sha256=5f2b1c0e9d8a7b6c5d4e3f2a1b0c9d8e"
    assert h["X-Webhook-Type"] == "completion"  # eventType 2 = TaskCompleted
    assert h["X-Webhook-Timestamp"].isdigit()
    assert not [k for k in h if k.startswith("X-RS-")]  # nothing of ours on a foreign call
    r = records[0]
    assert (r.status, r.task_id, r.key) == (
        "completed", "img_9c1e64d2-52b4-4f0e-8d43-6f1b2a3c4d5e",
        "img_9c1e64d2-52b4-4f0e-8d43-6f1b2a3c4d5e")  # ordered by the message's taskId
    assert r.intended == pytest.approx(parse_dotnet_time(doc["sentTime"]))


@pytest.mark.parametrize("fixture_name,type_name,task", [
    ("video_generation_requested", "VideoGenerationRequested", "vid-41"),
    ("image_generation_requested", "ImageGenerationRequested", "img-42"),
])
async def test_a_task_with_a_webhook_url_is_called_back(vhost_settings, fixture_name,
                                                        type_name, task):
    """As ConduitLLM does: TaskStarted when the task starts, TaskCompleted when it is done,
    each a WebhookDeliveryRequested that webhook-delivery POSTs to the task's URL."""
    queue = CONDUIT.for_type(type_name).queue
    async with Receiver() as target:
        insts, records = await consumers(vhost_settings, [queue, "webhook-delivery"],
                                         allow=target.url)
        await publish_as_dotnet(vhost_settings, type_name, fixture(
            fixture_name, TASK_ID=task, WEBHOOK_URL=target.url + f"/tasks/{task}"), task)
        await wait_for(lambda: len(target.calls) == 2 and len(records) == 3)
    for inst in insts:
        await inst.stop()
    events = [json.loads(c["body"])["event"] for c in target.calls]
    assert events == ["TaskStarted", "TaskCompleted"]
    assert [c["headers"]["X-Webhook-Type"] for c in target.calls] == ["progress", "completion"]
    assert {c["path"] for c in target.calls} == {f"/tasks/{task}"}
    assert all(json.loads(c["body"])["task_id"] == task for c in target.calls)
    if type_name == "VideoGenerationRequested":  # its webhookHeaders go along, but for the
        # credentials: the reference stack never sends a message's Authorization anywhere
        assert all(c["headers"]["X-Customer-Trace"] == "t-17" for c in target.calls)
        assert not any("Authorization" in c["headers"] for c in target.calls)
    task_record = next(r for r in records if r.queue == queue)
    assert (task_record.status, task_record.spawned, task_record.task_id) == \
        ("completed", 2, task)


async def test_spend_updates_from_a_dotnet_publisher_apply_in_order_per_key(vhost_settings):
    insts, records = await consumers(vhost_settings, ["spend-update-events"], instances=2)
    sent = []
    for i in range(30):
        key = 7 if i % 3 else 8
        sent.append((str(key), f"req-{i}"))
        await publish_as_dotnet(vhost_settings, "SpendUpdateRequested", fixture(
            "spend_update_requested", MESSAGE_ID=f"m-{i}", KEY_ID=key, AMOUNT=0.01 * (i + 1),
            REQUEST_ID=f"req-{i}"), f"m-{i}")
    await wait_for(lambda: len(records) == 30)
    for inst in insts:
        await inst.stop()
    done = sorted(records, key=lambda r: r.started)
    for key in ("7", "8"):
        assert [r.task_id for r in done if r.key == key] == [q for k, q in sent if k == key]
    assert len({r.instance for r in records}) == 1  # single active consumer: one consumes


async def test_a_failing_dotnet_message_keeps_mt_fault_headers_and_its_body(vhost_settings):
    insts, records = await consumers(vhost_settings, ["spend-update-events"])
    body = fixture("spend_update_requested", MESSAGE_ID="m-x", KEY_ID=9, AMOUNT=1.5,
                   REQUEST_ID="req-x")
    await publish_as_dotnet(vhost_settings, "SpendUpdateRequested", body, "m-x",
                            headers={RS_FAIL: "always"})
    await wait_for(lambda: len(records) == 1)
    for inst in insts:
        await inst.stop()
    conn = await aio_pika.connect(vhost_settings.amqp_url)
    q = await (await conn.channel()).get_queue("spend-update-events_error")
    msg = await q.get(timeout=5)
    assert msg.body == body  # moved as it came, as MassTransit moves it
    assert msg.headers["MT-Fault-RetryCount"] == 3
    for name in ("MT-Reason", "MT-Fault-ExceptionType", "MT-Fault-Message",
                 "MT-Fault-Timestamp", "MT-Fault-InputAddress", "MT-Fault-ConsumerType"):
        assert name in msg.headers, name
    await conn.close()


async def test_a_subtype_listing_the_consumed_type_is_consumed_not_skipped(vhost_settings):
    """messageType lists the type, then its bases and interfaces: any one may match."""
    insts, records = await consumers(vhost_settings, ["webhook-delivery"])
    doc = json.loads(fixture("webhook_delivery_requested", WEBHOOK_URL="http://127.0.0.1:1/x"))
    doc["messageType"].insert(0, "urn:message:ConduitLLM.Core.Events:"
                                 "PriorityWebhookDeliveryRequested")
    await publish_as_dotnet(vhost_settings, "WebhookDeliveryRequested",
                            json.dumps(doc).encode(), "sub-1")
    await wait_for(lambda: len(records) == 1)
    for inst in insts:
        await inst.stop()
    assert records[0].status != "skipped"  # handled (the URL refuses: a fault, not a skip)


def test_reading_is_case_insensitive_and_tolerant():
    pascal = json.dumps({
        "MessageId": "m1",
        "MessageType": ["urn:message:ConduitLLM.Core.Events:SpendUpdateRequested"],
        "Message": {"KeyId": 3, "Amount": 1.0, "RequestId": None},
        "SentTime": "2025-08-15T12:30:45.1234567+02:00",
        "Headers": {"RS-Key": 3, "Nested": {"a": [1, None]}, "Flag": True}}).encode()
    env = parse_envelope(pascal)
    assert env.message_id == "m1" and env.message.get("keyId") == 3
    assert env.message.text("requestId") == ""  # null reads as missing
    assert env.sent_time == pytest.approx(parse_dotnet_time("2025-08-15T10:30:45.1234567Z"))
    assert env.header_text("rs-key") == "3"  # header values of any JSON type
    assert parse_dotnet_time("not a time") is None and parse_dotnet_time(None) is None


def test_what_the_stack_writes_is_what_masstransit_writes():
    body = messages.build(CONDUIT, "WebhookDeliveryRequested", task_id="t-1",
                          request={"url": "http://x/h", "event": "TaskCompleted"})
    env = json.loads(build_envelope(CONDUIT.message("WebhookDeliveryRequested").urns, body,
                                    message_id="m",
                                    sent_time=1_700_000_000.1234567, destination="q",
                                    headers=measurement_headers(1.0, 2.0, "k", 0, "r")))
    assert env["messageType"] == [
        "urn:message:ConduitLLM.Core.Events:WebhookDeliveryRequested",
        "urn:message:ConduitLLM.Core.Events:DomainEvent",
        "urn:message:ConduitLLM.Core.Events:IDomainEvent"]
    assert all(k[0].islower() for k in env) and all(k[0].islower() for k in env["message"])
    assert env["message"]["eventType"] == 2  # the enum's number, as MassTransit writes it
    assert env["message"]["partitionKey"] == "t-1" and "eventId" in env["message"]
    assert env["sentTime"] == sent_time_text(1_700_000_000.1234567)
    assert len(env["sentTime"].split(".")[1]) == 8  # 7 digits and the Z
    for kind in ("video", "image", "spend"):
        m = messages.build(CONDUIT, CONDUIT.task(kind).message, key_id=5)
        assert all(k[0].islower() for k in m), kind
