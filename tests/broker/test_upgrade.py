"""`doctor --upgrade-to` on the 3.10 broker: each blocker declared in a vhost of the test's own
(a mirroring policy, a lazy queue, a v1 queue, a transient non-exclusive queue, a channel with
global QoS, a quorum queue without a dead-letter target) is named with the version it breaks
in and its fix, the exit is 1, and the vhost is as it was; the conduit topology the stack
declares is reported as the profile declares it; without the blockers, a target they do not
reach exits 0."""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import Iterator

import aio_pika
import pytest

from rabbitscale.broker.declare import declare
from rabbitscale.inspect import upgrade
from rabbitscale.topology.profile_file import get_profile
from tests.support import (
    amqp_url,
    broker,
    broker_objects,
    management,
    own_vhost,
    rabbitscale,
    wait_until,
)

CONDUIT = get_profile("conduit")
BLOCKERS = {  # queue (or policy) -> the change doctor must name
    "mirrored-orders": "classic-mirroring",
    "lazy-orders": "queue-mode",
    "v1-orders": "queue-version-1",
    "transient-orders": "transient-nonexclusive",
    "quorum-orders": "quorum-delivery-limit",
}


class HeldChannel:
    """A connection with a global-QoS channel, open while doctor reads the broker (the
    management API lists only open channels)."""

    def __init__(self, url: str) -> None:
        self.url, self.ready, self.stop = url, threading.Event(), threading.Event()
        self.thread = threading.Thread(target=lambda: asyncio.run(self._hold()), daemon=True)

    async def _hold(self) -> None:
        conn = await aio_pika.connect(self.url)
        channel = await conn.channel()
        await channel.set_qos(prefetch_count=5, global_=True)
        self.ready.set()
        while not self.stop.is_set():
            await asyncio.sleep(0.1)
        await conn.close()

    def __enter__(self) -> HeldChannel:
        self.thread.start()
        assert self.ready.wait(30), "no channel"
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        self.thread.join(30)


async def _declare_blockers(url: str) -> None:
    conn = await aio_pika.connect(url)
    try:
        ch = await conn.channel()
        await ch.declare_queue("mirrored-orders", durable=True)
        await ch.declare_queue("lazy-orders", durable=True, arguments={"x-queue-mode": "lazy"})
        await ch.declare_queue("v1-orders", durable=True, arguments={"x-queue-version": 1})
        await ch.declare_queue("transient-orders", durable=False, exclusive=False,
                               auto_delete=False)
        await ch.declare_queue("quorum-orders", durable=True,
                               arguments={"x-queue-type": "quorum"})
    finally:
        await conn.close()


@pytest.fixture
def blocked() -> Iterator[str]:
    with own_vhost("rs-upgrade") as vhost:
        asyncio.run(_declare_blockers(amqp_url(vhost)))
        with management() as mgmt:
            mgmt("PUT", f"/policies/{vhost}/ha-orders",
                 {"pattern": "^mirrored-", "definition": {"ha-mode": "all"},
                  "apply-to": "queues"})
        yield vhost


def _channel_shown(vhost: str) -> bool:
    with management() as mgmt:
        channels = mgmt("GET", "/channels?columns=vhost,global_prefetch_count", None)
    return any(c.get("vhost") == vhost and c.get("global_prefetch_count") for c in channels)


def _policy_shown(vhost: str) -> bool:
    """The management API shows a queue's policy with its statistics, seconds late."""
    with management() as mgmt:
        return mgmt("GET", f"/queues/{vhost}/mirrored-orders", None).get("policy") == "ha-orders"


def test_each_blocker_named_with_its_version_and_fix_and_nothing_changed(blocked):
    with HeldChannel(amqp_url(blocked)):
        wait_until(lambda: _channel_shown(blocked), "the global-QoS channel in the stats")
        wait_until(lambda: _policy_shown(blocked), "the ha policy on mirrored-orders")
        before = broker_objects(blocked)
        done = rabbitscale("doctor", "--vhost", blocked, "--upgrade-to", "4.3", "--json")
        text = rabbitscale("doctor", "--vhost", blocked, "--upgrade-to", "4.3")
        after = broker_objects(blocked)
    assert done.returncode == 1 and text.returncode == 1, done.stdout[-2000:] + done.stderr
    assert before == after  # read-only
    findings = json.loads(done.stdout)["findings"]
    by_subject = {f["subject"]: f for f in findings}
    for subject, change_id in {**BLOCKERS, "policy ha-orders": "classic-mirroring"}.items():
        if subject == "mirrored-orders":
            continue  # the policy is the subject of mirroring, not the queue
        change = upgrade.CHANGES[change_id]
        f = by_subject[subject]
        assert f["check"] == change.title and f["verdict"] == "FAIL", f
        assert f"from {change.version}" in f["detail"] and "fix:" in f["detail"], f
        assert change.source == f["source"]
    qos = next(f for f in findings if f["subject"].startswith("channel "))
    assert qos["check"] == upgrade.CHANGES["global-qos"].title and qos["verdict"] == "FAIL"
    way = next(f for f in findings if f["check"] == "the way there")
    assert way["observed"].endswith("-> 3.13 -> 4.2 -> 4.3"), way
    assert "lazy-orders" in text.stdout and "verdict: FAIL" in text.stdout


def test_a_target_before_the_blockers_bite_passes(blocked):
    """3.13 refuses none of them (the feature flags aside, which are WARN): exit 0."""
    done = rabbitscale("doctor", "--vhost", blocked, "--upgrade-to", "3.13", "--json")
    findings = json.loads(done.stdout)["findings"]
    assert done.returncode == 0, [f for f in findings if f["verdict"] == "FAIL"]
    later = {f["subject"]: f for f in findings}["lazy-orders"]
    assert later["verdict"] == "INFO" and "from 4.3" in later["detail"]


def test_the_conduit_topology_is_reported_as_the_profile_declares_it():
    """Live and from the profile, the same queues come out: the quorum endpoints without a
    dead-letter target or delivery limit, nothing else."""
    with own_vhost("rs-upgrade") as vhost:
        settings = broker().with_vhost(vhost)

        async def arrange() -> None:
            conn = await aio_pika.connect(amqp_url(vhost))
            try:
                await declare(await conn.channel(), CONDUIT, settings)
            finally:
                await conn.close()

        asyncio.run(arrange())
        done = rabbitscale("doctor", "--vhost", vhost, "--upgrade-to", "4.3", "--json")
    flagged = {f["subject"] for f in json.loads(done.stdout)["findings"]
               if f["check"] == upgrade.CHANGES["quorum-delivery-limit"].title}
    declared = {h.subject for h in upgrade.profile_hits(CONDUIT, settings)
                if h.change == "quorum-delivery-limit"}
    assert flagged == declared and flagged, (flagged, declared)
    assert "webhook-delivery" not in flagged  # it declares x-delivery-limit

