"""`rabbitscale doctor` on the real broker: deliberate deviations are reported with the right
verdicts, a vhost the reference stack declared comes out with no FAIL, and nothing changes on
the broker (objects, arguments, message counts)."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import aio_pika

from rabbitscale.broker.declare import declare
from rabbitscale.topology.profile_file import apply_overrides, get_profile
from tests.support import (
    amqp_url,
    broker,
    broker_objects,
    management,
    rabbitscale,
    stats_ready,
)

CONDUIT = get_profile("conduit")

ROOT = Path(__file__).resolve().parents[2]


def global_totals() -> dict:
    with management() as mgmt:
        ov = mgmt("GET", "/overview", None)
    return {k: ov["object_totals"].get(k) for k in ("connections", "channels", "queues",
                                                     "exchanges", "consumers")}


def test_deviations_are_reported_and_nothing_changes(vhost_settings):
    s = vhost_settings
    vhost = s.vhost
    # the conduit topology, then: webhook-delivery classic without its length limit, spend
    # without single-active-consumer, a policy capping media-retention-checks at 10, a
    # consumer with prefetch 500 on image-generation-events, 200 messages in an _error queue
    others = apply_overrides(CONDUIT, {"webhook-delivery": {"remove": True},
                                       "spend-update-events": {"queue_arguments": {
                                           "x-max-length": 10000}}})

    async def arrange() -> tuple[aio_pika.abc.AbstractConnection, int]:
        conn = await aio_pika.connect(s.amqp_url)
        ch = await conn.channel()
        await declare(ch, others, s)
        wd = await ch.declare_queue("webhook-delivery", durable=True)  # classic, no limit
        ex = await ch.declare_exchange("webhook-delivery", aio_pika.ExchangeType.FANOUT,
                                       durable=True)
        await wd.bind(ex)
        tx = await ch.declare_exchange(CONDUIT.message("WebhookDeliveryRequested").exchange,
                                       aio_pika.ExchangeType.FANOUT, durable=True)
        await ex.bind(tx)
        errx = await ch.get_exchange("media-cleanup-batches_error")
        for _ in range(200):
            await errx.publish(aio_pika.Message(b"{}", delivery_mode=2), routing_key="")
        greedy = await conn.channel()
        await greedy.set_qos(prefetch_count=500)
        q = await greedy.get_queue("image-generation-events")
        await q.consume(lambda m: None)
        return conn, 0

    loop = asyncio.new_event_loop()
    conn, _ = loop.run_until_complete(arrange())
    try:
        with management() as mgmt:
            mgmt("PUT", f"/policies/{vhost}/cap10", {"pattern": "^media-retention-checks$",
                                                      "definition": {"max-length": 10},
                                                      "apply-to": "queues"})
        stats_ready(vhost, [ep.queue for ep in CONDUIT.endpoints],
                    {"media-cleanup-batches_error": 200})
        before, totals = broker_objects(vhost), global_totals()
        done = rabbitscale("doctor", "--vhost", vhost, "--json")
        after, totals_after = broker_objects(vhost), global_totals()
    finally:
        loop.run_until_complete(conn.close())
        loop.close()
    assert done.returncode == 1, done.stdout[-2000:] + done.stderr
    assert before == after and totals == totals_after  # read-only
    doc = json.loads(done.stdout)
    by = {(f["subject"], f["check"]): f for f in doc["findings"]}
    assert by[("webhook-delivery", "queue type")]["verdict"] == "FAIL"
    assert by[("webhook-delivery", "queue type")]["observed"] == "classic"
    limit = by[("webhook-delivery", "x-max-length")]
    assert (limit["verdict"], limit["observed"], limit["expected"]) == ("FAIL", "not set", 50000)
    sac = by[("spend-update-events", "x-single-active-consumer")]
    assert sac["verdict"] == "FAIL" and sac["observed"] == "not set"
    capped = by[("media-retention-checks", "x-max-length")]
    assert (capped["verdict"], capped["observed"], capped["expected"]) == ("FAIL", 10, 1000)
    assert "policy 'cap10'" in capped["detail"]
    greedy = by[("image-generation-events", "prefetch")]
    assert (greedy["verdict"], greedy["observed"], greedy["expected"]) == ("FAIL", 500, 25)
    errors = by[("media-cleanup-batches_error", "messages")]
    assert (errors["verdict"], errors["observed"]) == ("WARN", 200)
    assert doc["verdict"] == "FAIL"
    verdicts = [f["verdict"] for f in doc["findings"]]
    assert verdicts == sorted(verdicts, key=["FAIL", "WARN", "OK", "INFO"].index)  # FAILs first
    text = rabbitscale("doctor", "--vhost", vhost).stdout
    assert text.splitlines()[2].startswith("FAIL") and "verdict: FAIL" in text


def test_bad_input_and_unreachable_broker():
    for args, env, code, needle in [
        (["--vhost", "no-such-vhost"], {}, 2, "has no vhost 'no-such-vhost'"),
        (["--profile", "nope"], {}, 2, "invalid choice"),
        (["--container-memory", "lots"], {}, 2, "not a size"),
        ([], {"CONDUITLLM__RABBITMQ__PASSWORD": "wrong"}, 3, "refused user 'guest'"),
        ([], {"CONDUITLLM__RABBITMQ__MANAGEMENTPORT": "1"}, 3, "cannot reach the RabbitMQ "
                                                             "management API"),
        # rabbitmq_prometheus's port answers 404 for /api/...: not a missing vhost
        ([], {"CONDUITLLM__RABBITMQ__MANAGEMENTPORT": "15692"}, 3,
         "not a RabbitMQ management API at http://127.0.0.1:15692"),
        # AMQP's port answers HTTP with an AMQP header
        ([], {"CONDUITLLM__RABBITMQ__MANAGEMENTPORT": "5672"}, 3,
         "not a RabbitMQ management API at http://127.0.0.1:5672"),
        (["--prometheus", "notaurl"], {}, 2, "must be an http(s) URL"),
    ]:
        done = rabbitscale("doctor", *args, **env)
        err = done.stderr.strip()
        assert done.returncode == code, (args, done.returncode, err)
        assert needle in err and "\n" not in err and "Traceback" not in err, (args, err)




def test_a_monitoring_user_discovers_and_doctors_and_a_dead_amqp_port_is_named(
        vhost_settings, tmp_path):
    """The README's least privilege: the monitoring tag and '^$' permissions on the vhost (no
    access to any of its resources) are enough for discover and doctor; and doctor says so
    when nothing answers on the AMQP port clients use."""
    import uuid

    vhost = vhost_settings.vhost
    asyncio.run(_declare_conduit(vhost_settings))
    user, password = f"rs-mon-{uuid.uuid4().hex[:6]}", uuid.uuid4().hex
    with management() as mgmt:
        mgmt("PUT", f"/users/{user}", {"password": password, "tags": "monitoring"})
        mgmt("PUT", f"/permissions/{vhost}/{user}",
             {"configure": "^$", "write": "^$", "read": "^$"})
    try:
        s = broker()
        as_monitor = {"AMQP_URL": f"amqp://{user}:{password}@{s.host}:{s.port}/"}
        found = rabbitscale("discover", "--vhost", vhost, "--window", "0s", "--out",
                            str(tmp_path / "found.toml"), **as_monitor)
        assert found.returncode == 0, found.stderr
        doctor = rabbitscale("doctor", "--vhost", vhost, "--json", **as_monitor)
        assert doctor.returncode in (0, 1), doctor.stderr  # the vhost's own verdict
        port = {f["check"]: f for f in json.loads(doctor.stdout)["findings"]}["AMQP port"]
        assert port["verdict"] == "OK"
        dead = rabbitscale("doctor", "--vhost", vhost, "--json", AMQP_URL=amqp_url(port=1),
                           CONDUITLLM__RABBITMQ__MANAGEMENTPORT=str(s.management_port))
        port = {f["check"]: f for f in json.loads(dead.stdout)["findings"]}["AMQP port"]
        assert dead.returncode == 1 and port["verdict"] == "FAIL", dead.stdout[-1500:]
        assert str(s.port) in port["detail"]  # where the node does listen
    finally:
        with management() as mgmt:
            mgmt("DELETE", f"/users/{user}")


async def _declare_conduit(settings) -> None:
    conn = await aio_pika.connect(settings.amqp_url)
    try:
        await declare(await conn.channel(), CONDUIT, settings)
    finally:
        await conn.close()
