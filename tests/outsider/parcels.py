"""A MassTransit-style system rabbitscale never saw: the tests' outsider.

It stands in for "a deployed system someone else wrote": its own vhost, queue names, message
types and namespace; it imports nothing from rabbitscale and reads nothing rabbitscale writes
(no RS-* headers, no task ids of ours). It declares the topology a MassTransit bus would
(message-type exchanges -> endpoint exchanges -> queues, ``_error`` side queues), plus a policy
of its own; consumes with a prefetch per endpoint; faults a share of one endpoint's messages
into its ``_error`` queue as MassTransit does (publish there, then ack); and serves the
OpenTelemetry meters MassTransit records, under the names the Prometheus exporter gives them.

    python tests/outsider/parcels.py --amqp amqp://guest:guest@127.0.0.1:5672/VHOST \
        --management http://127.0.0.1:15672 --metrics-port 0

It prints ``ready metrics=http://127.0.0.1:PORT/metrics`` once it consumes, and runs until
SIGTERM/SIGINT.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import random
import signal
import sys
import time
import urllib.request
from urllib.parse import quote, unquote, urlsplit

import aio_pika
from prometheus_client import CollectorRegistry, Counter, Histogram, start_http_server

NAMESPACE = "Acme.Parcels.Contracts"
# endpoint -> (queue type, prefetch, message types consumed, fault share, service time s)
ENDPOINTS = {
    "parcel-booking": ("quorum", 20, ["ParcelBooked"], 0.0, 0.004),
    "tracking-feed": ("classic", 50, ["ParcelBooked", "ParcelDelivered"], 0.0, 0.001),
    "customs-screening": ("quorum", 8, ["CustomsCheckRequested"], 0.05, 0.006),
}
POLICY = ("acme-limits", "^customs-screening$",
          {"max-length": 200000, "overflow": "reject-publish", "delivery-limit": 10})
BUCKETS_MS = (1, 2, 5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000)


def management_call(base: str, user: str, password: str, method: str, path: str,
                    body: object = None) -> None:
    req = urllib.request.Request(base.rstrip("/") + path, method=method,
                                 data=None if body is None else json.dumps(body).encode())
    token = base64.b64encode(f"{user}:{password}".encode()).decode()
    req.add_header("Authorization", f"Basic {token}")
    req.add_header("content-type", "application/json")
    urllib.request.urlopen(req, timeout=10).read()


class Meters:
    """MassTransit's meters (messaging.masstransit.*), as the OpenTelemetry Prometheus
    exporter names them: dots to underscores, ``_total`` on counters, the unit on
    histograms."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        labels = ["messaging_masstransit_destination", "messaging_masstransit_message_type",
                  "messaging_masstransit_consumer_type"]
        self.receive = Counter("messaging_masstransit_receive", "received", labels[:1],
                               registry=self.registry)
        self.consume = Counter("messaging_masstransit_consume", "consumed", labels,
                               registry=self.registry)
        self.consume_errors = Counter("messaging_masstransit_consume_errors", "faulted",
                                      labels + ["messaging_masstransit_exception_type"],
                                      registry=self.registry)
        self.consume_duration = Histogram(
            "messaging_masstransit_consume_duration_milliseconds", "consume time", labels,
            buckets=BUCKETS_MS, registry=self.registry)
        self.delivery_duration = Histogram(
            "messaging_masstransit_delivery_duration_milliseconds", "sent to consumed",
            labels, buckets=BUCKETS_MS, registry=self.registry)


async def declare(channel: aio_pika.abc.AbstractChannel) -> None:
    types = {t for _, _, ts, _, _ in ENDPOINTS.values() for t in ts}
    for t in sorted(types):
        await channel.declare_exchange(f"{NAMESPACE}:{t}", aio_pika.ExchangeType.FANOUT,
                                       durable=True)
    for queue, (qtype, _, consumes, _, _) in ENDPOINTS.items():
        ex = await channel.declare_exchange(queue, aio_pika.ExchangeType.FANOUT, durable=True)
        q = await channel.declare_queue(queue, durable=True, arguments={"x-queue-type": qtype})
        await q.bind(ex)
        for t in consumes:
            await ex.bind(f"{NAMESPACE}:{t}")
        err_ex = await channel.declare_exchange(f"{queue}_error", aio_pika.ExchangeType.FANOUT,
                                                durable=True)
        err_q = await channel.declare_queue(f"{queue}_error", durable=True)
        await err_q.bind(err_ex)


async def consume(url: str, queue: str, meters: Meters, stop: asyncio.Event,
                  started: asyncio.Event) -> None:
    _, prefetch, _, fault_share, service_s = ENDPOINTS[queue]
    conn = await aio_pika.connect_robust(url, client_properties={
        "connection_name": f"acme-parcels {queue}"})
    channel = await conn.channel(publisher_confirms=True)
    await channel.set_qos(prefetch_count=prefetch)
    q = await channel.get_queue(queue, ensure=False)
    error_ex = await channel.get_exchange(f"{queue}_error", ensure=False)
    rng = random.Random(queue)

    async def handle(message: aio_pika.abc.AbstractIncomingMessage) -> None:
        meters.receive.labels(queue).inc()
        t0 = time.perf_counter()
        try:
            envelope = json.loads(message.body)
            urn = envelope["messageType"][0]
            type_name = urn.rsplit(":", 1)[-1]
            sent = envelope.get("sentTime")
        except (ValueError, KeyError, IndexError, TypeError):
            type_name, sent = "unknown", None
        labels = (queue, type_name, f"Acme.Parcels.{type_name}Consumer")
        await asyncio.sleep(rng.expovariate(1 / service_s))
        faulted = type_name == "unknown" or rng.random() < fault_share
        if faulted:
            meters.consume_errors.labels(*labels, "System.InvalidOperationException").inc()
            await error_ex.publish(aio_pika.Message(
                message.body, content_type=message.content_type, message_id=message.message_id,
                headers={"MT-Fault-ExceptionType": "System.InvalidOperationException",
                         "MT-Fault-Message": "customs rules rejected the parcel",
                         "MT-Reason": "fault"}, delivery_mode=aio_pika.DeliveryMode.PERSISTENT),
                routing_key="")
        meters.consume.labels(*labels).inc()
        meters.consume_duration.labels(*labels).observe((time.perf_counter() - t0) * 1000)
        if sent:
            try:
                from datetime import datetime
                at = datetime.fromisoformat(sent.replace("Z", "+00:00")).timestamp()
                meters.delivery_duration.labels(*labels).observe(
                    max(0.0, time.time() - at) * 1000)
            except ValueError:
                pass
        await message.ack()

    await q.consume(handle)
    started.set()
    await stop.wait()
    await conn.close()


async def main(argv: list[str]) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--amqp", required=True)
    ap.add_argument("--management", default="http://127.0.0.1:15672")
    ap.add_argument("--metrics-port", type=int, default=0)
    a = ap.parse_args(argv)
    parts = urlsplit(a.amqp)
    user, password = unquote(parts.username or "guest"), unquote(parts.password or "guest")
    vhost = unquote(parts.path[1:]) or "/"
    name, pattern, definition = POLICY
    management_call(a.management, user, password, "PUT",
                    f"/api/policies/{quote(vhost, safe='')}/{name}",
                    {"pattern": pattern, "definition": definition, "apply-to": "queues"})
    conn = await aio_pika.connect_robust(a.amqp)
    await declare(await conn.channel())
    await conn.close()
    meters = Meters()
    server, _ = start_http_server(a.metrics_port, addr="127.0.0.1", registry=meters.registry)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    started = {q: asyncio.Event() for q in ENDPOINTS}
    tasks = [asyncio.create_task(consume(a.amqp, q, meters, stop, started[q]))
             for q in ENDPOINTS]
    for event in started.values():
        await event.wait()
    print(f"ready metrics=http://127.0.0.1:{server.server_port}/metrics", flush=True)
    await asyncio.gather(*tasks)
    server.shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main(sys.argv[1:])))
