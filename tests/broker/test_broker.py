"""Broker behaviour on the real RabbitMQ: topology, round trip, rejections, faults, order,
circuit breaker. Each test runs in its own vhost (conftest.vhost_settings)."""

from __future__ import annotations

import asyncio
import time

import aio_pika
import pytest

from rabbitscale.broker.declare import declare
from rabbitscale.broker.management import Management
from rabbitscale.broker.publisher import Outcome, Publisher
from rabbitscale.core.errors import ConfigError
from rabbitscale.core.headers import RS_FAIL as H_FAIL
from rabbitscale.harness.completions import Completion, listen
from rabbitscale.harness.consumer import ConsumerInstance, ConsumerOptions
from rabbitscale.topology import messages
from rabbitscale.topology.envelope import CONTENT_TYPE, build_envelope
from rabbitscale.topology.profile_file import apply_overrides, get_profile

CONDUIT = get_profile("conduit")


def spend(key_id: int, amount: float, request_id: str) -> dict:
    """A SpendUpdateRequested as conduit's template writes it."""
    return messages.build(CONDUIT, "SpendUpdateRequested", key_id=key_id, task_id=request_id,
                          request={"amount": amount})
GUIDE = get_profile("guide")


async def _declared(settings, profile):
    conn = await aio_pika.connect_robust(settings.amqp_url)
    await declare(await conn.channel(), profile, settings)
    return conn


async def _wait_for(predicate, timeout=20.0):
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached in time")
        await asyncio.sleep(0.02)


async def test_declared_topology_equals_profile(vhost_settings):
    conn = await _declared(vhost_settings, CONDUIT)
    await declare(await conn.channel(), CONDUIT, vhost_settings)  # idempotent
    async with Management(vhost_settings) as mgmt:
        queues = {q["name"]: q for q in await mgmt.queues()}
        exchanges = {e["name"]: e for e in await mgmt.exchanges()}
        bindings = {(b["source"], b["destination"], b["destination_type"])
                    for b in await mgmt.bindings()}
    for ep in CONDUIT.endpoints:
        q = queues[ep.queue]
        assert q["type"] == "quorum" and q["durable"]
        assert q["arguments"] == ep.declared_arguments()
        assert queues[ep.error_queue]["type"] == "quorum"
        assert exchanges[ep.queue]["type"] == "fanout"
        assert exchanges[CONDUIT.message(ep.message_type).exchange]["type"] == "fanout"
        assert (ep.queue, ep.queue, "queue") in bindings
        assert (CONDUIT.message(ep.message_type).exchange, ep.queue, "exchange") in bindings
        assert (ep.error_queue, ep.error_queue, "queue") in bindings
    # a conflicting re-declaration is a one-line error, not a broken channel traceback
    changed = apply_overrides(CONDUIT, {"spend-update-events": {
        "queue_arguments": {"x-max-length": 5}}})
    with pytest.raises(ConfigError, match="other arguments"):
        await declare(await conn.channel(), changed, vhost_settings)
    await conn.close()


async def test_confirmed_publish_consume_round_trip(vhost_settings):
    conn = await _declared(vhost_settings, CONDUIT)
    records: list[Completion] = []
    await listen(await conn.channel(), records.append)
    inst = await ConsumerInstance(vhost_settings, CONDUIT,
                                  queues=["spend-update-events"]).start()
    async with Publisher(vhost_settings, CONDUIT, run_id="t") as pub:
        results = [await pub.publish("SpendUpdateRequested",
                                     spend(7, 1.5, f"r{i}"))
                   for i in range(20)]
        assert all(r.outcome is Outcome.CONFIRMED for r in results)
        # ConduitLLM reads neither MinConnections nor MaxConnections: one connection, as
        # MassTransit keeps one per bus
        assert pub.stats.connections == 1
        await _wait_for(lambda: len(records) == 20)
    await inst.stop()
    assert {r.message_id for r in records} == {r.message_id for r in results}
    assert all(r.status == "completed" and r.run == "t" and r.key == "7" for r in records)
    assert all(r.intended <= r.sent <= r.started <= r.finished for r in records)
    await conn.close()


async def test_guide_profile_pools_publisher_connections(vhost_settings):
    """The guide's "Connection pooling: 5 connections": MinConnections at start, a key's
    connection opened when it is first used, each key on one connection."""
    await (await _declared(vhost_settings, GUIDE)).close()
    async with Publisher(vhost_settings, GUIDE) as pub:
        assert pub.stats.connections == vhost_settings.min_connections
        for key in range(40):
            assert (await pub.publish("SpendUpdateRequested",
                                      spend(key, 1.0, f"r{key}"))).ok
        assert vhost_settings.min_connections < pub.stats.connections <= \
            vhost_settings.max_connections


async def test_full_reject_publish_queue_counts_rejections(vhost_settings):
    profile = apply_overrides(CONDUIT, {"webhook-delivery": {"queue_arguments": {
        "x-max-length": 5, "x-overflow": "reject-publish"}}})
    conn = await _declared(vhost_settings, profile)
    async with Publisher(vhost_settings, profile) as pub:
        results = [await pub.publish("WebhookDeliveryRequested", messages.build(
            CONDUIT, "WebhookDeliveryRequested", task_id=f"t{i}",
            request={"url": "http://127.0.0.1:9/hook"})) for i in range(8)]
    outcomes = [r.outcome for r in results]
    confirmed, rejected = outcomes.count(Outcome.CONFIRMED), outcomes.count(Outcome.REJECTED)
    # a quorum queue checks the limit after enqueueing, so it may accept one over x-max-length
    assert confirmed + rejected == 8 and 5 <= confirmed <= 6 and rejected >= 2
    assert pub.stats.outcomes["rejected"] == rejected
    assert all("nacked" in r.error for r in results if r.outcome is Outcome.REJECTED)
    q = await (await conn.channel()).declare_queue("webhook-delivery", passive=True)
    assert q.declaration_result.message_count == confirmed  # none lost
    await conn.close()


async def _raw_publish(pub: Publisher, type_name: str, message: dict | None, *,
                       message_id: str, headers: dict, raw: bytes | None = None) -> None:
    """Publish with AMQP headers of our choosing (RS-Fail) or a raw, non-envelope body."""
    mt = CONDUIT.message(type_name)
    body = raw if raw is not None else build_envelope(
        mt.urns, message or {}, message_id=message_id, sent_time=0.0, destination="",
        headers={})
    ex = await pub._pool[0].channel.get_exchange(mt.exchange, ensure=False)
    await ex.publish(aio_pika.Message(body, content_type=CONTENT_TYPE, message_id=message_id,
                                      headers=headers), routing_key="")


async def test_failing_handler_retries_then_succeeds_or_lands_in_error(vhost_settings):
    profile = apply_overrides(CONDUIT, {"spend-update-events": {"retry": "immediate:3"}})
    conn = await _declared(vhost_settings, profile)
    inst = await ConsumerInstance(vhost_settings, profile, ConsumerOptions(time_scale=0.01),
                                  queues=["spend-update-events"]).start()
    done: list[Completion] = []
    inst.completed.add_listener(lambda record: done.append(record))
    async with Publisher(vhost_settings, profile) as pub:
        await _raw_publish(pub, "SpendUpdateRequested", spend(1, 1, "a"),
                           message_id="flaky", headers={H_FAIL: 2})
        await _raw_publish(pub, "SpendUpdateRequested", None, message_id="garbage",
                           headers={}, raw=b'{"not": "an envelope"')
        await _raw_publish(pub, "SpendUpdateRequested", spend(1, 1, "b"),
                           message_id="poison", headers={H_FAIL: "always"})
        await _wait_for(lambda: len(done) == 3)
    await inst.stop()
    by_id = {r.message_id: r for r in done}
    assert (by_id["flaky"].status, by_id["flaky"].attempts) == ("completed", 3)
    assert (by_id["garbage"].status, by_id["garbage"].attempts) == ("faulted", 0)
    assert (by_id["poison"].status, by_id["poison"].attempts) == ("faulted", 4)
    assert inst.counts()["spend-update-events"]["retries"] == 2 + 3
    errq = await (await conn.channel()).get_queue("spend-update-events_error")
    faults = {}
    for _ in range(2):
        m = await errq.get(timeout=5)
        faults[m.message_id] = m.headers
    assert "EnvelopeError" in faults["garbage"]["MT-Fault-ExceptionType"]
    h = faults["poison"]
    for name in ("MT-Reason", "MT-Fault-ExceptionType", "MT-Fault-Message",
                 "MT-Fault-Timestamp", "MT-Fault-RetryCount", "MT-Fault-InputAddress",
                 "MT-Fault-ConsumerType"):
        assert name in h, name
    assert h["MT-Reason"] == "fault" and h["MT-Fault-RetryCount"] == 3
    assert h["MT-Fault-InputAddress"].endswith("/spend-update-events")
    assert "HandlerError" in h["MT-Fault-ExceptionType"]
    await conn.close()


async def test_single_active_consumer_keeps_per_key_order(vhost_settings):
    conn = await _declared(vhost_settings, CONDUIT)
    instances = [await ConsumerInstance(vhost_settings, CONDUIT,
                                        ConsumerOptions(instance=f"c{i}"),
                                        queues=["spend-update-events"]).start()
                 for i in range(2)]
    done: list[Completion] = []
    for inst in instances:
        inst.completed.add_listener(lambda record: done.append(record))
    async with Publisher(vhost_settings, CONDUIT) as pub:
        async def key_stream(k: int) -> None:  # like a client: in order per key, keys parallel
            for i in range(40):
                await pub.publish("SpendUpdateRequested", spend(k, 1, f"{k}-{i}"))

        await asyncio.gather(*[key_stream(k) for k in range(5)])
        await _wait_for(lambda: len(done) == 200)
    for inst in instances:
        await inst.stop()
    assert len({r.instance for r in done}) == 1  # single active consumer
    for k in range(5):
        seqs = [r.seq for r in done if r.key == str(k)]
        assert seqs == sorted(seqs) and len(seqs) == 40
    await conn.close()


async def test_circuit_breaker_trips_at_its_ratio(vhost_settings):
    # concurrency 1 makes the order of outcomes deterministic. MassTransit's closed breaker:
    # 5 ok + 1 fault = 16% of 6 (active after more than 5); the next fault, 2 of 7 = 28%, trips
    profile = apply_overrides(CONDUIT, {"video-generation-events": {
        "concurrency": 1, "retry": "none", "breaker": "1m:20:5:1m"}})
    conn = await _declared(vhost_settings, profile)
    inst = await ConsumerInstance(vhost_settings, profile,
                                  queues=["video-generation-events"]).start()
    done: list[Completion] = []
    inst.completed.add_listener(lambda record: done.append(record))
    async with Publisher(vhost_settings, profile) as pub:
        for i in range(10):
            await _raw_publish(pub, "VideoGenerationRequested",
                               messages.build(CONDUIT, "VideoGenerationRequested",
                                              task_id=f"r{i}"), message_id=f"m{i}",
                               headers={H_FAIL: "always"} if i in (5, 6) else {})
    await _wait_for(lambda: len(done) == 10)
    await inst.stop()
    by_id = {r.message_id: r for r in done}
    assert [by_id[f"m{i}"].status for i in range(10)] == ["completed"] * 5 + ["faulted"] * 5
    assert all("CircuitBreakerOpen" in by_id[f"m{i}"].reason for i in range(7, 10))
    breaker = inst.endpoints[0].breaker
    assert breaker.trips == 1 and breaker.rejected == 3
    await conn.close()
