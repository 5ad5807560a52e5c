"""Acme Freight: a MassTransit-style system rabbitscale never saw, for the tests that need "a
deployed system".

It imports nothing of rabbitscale and reads nothing rabbitscale writes (no RS-* headers, no
task ids of ours): its own vhost, namespace, queue names and message types; the topology a
MassTransit bus declares (message-type exchanges -> endpoint exchanges -> queues, `_error`
side queues); consumers with a prefetch and a concurrency limit per endpoint (MassTransit's
PrefetchCount and ConcurrentMessageLimit); and the OpenTelemetry meters MassTransit records
(src/MassTransit/Monitoring/Instrumentation.cs, names and labels from
ConfigureDefaultInstrumentationOptions.cs) as the OpenTelemetry .NET Prometheus exporter
writes them: dots to underscores, the unit appended (`ea` on counters, `milliseconds` on the
`ms` histograms), `_total` on counters, the SDK's default histogram buckets, an
`otel_scope_name` label.

One process is one instance. Several instances (several processes) consume the same queues, as
replicas of a service do; each serves its meters on a port of its own and, with --http-port,
an API (`POST /api/shipments`, bearer key) that publishes a booking whose consumer calls back
the request's `callbackUrl` when the work is done. Its capacity is known: per endpoint,
instances x concurrency / mean work. With --truth DIR each instance writes every message it
consumed (endpoint, type, sent, finished, work) to a CSV: what the tests compare measurements
with.

    python tests/outsider/freight.py --amqp amqp://USER:PASS@HOST:5672/VHOST --declare \
        --management http://HOST:15672 --instance 1 --metrics-port 0 [--http-port 0]

It prints `ready instance=N metrics=URL [api=URL]` once it consumes, and runs until
SIGTERM/SIGINT.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import csv
import json
import random
import signal
import sys
import time
import urllib.request
import uuid
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import quote, unquote, urlsplit

import aio_pika
from aiohttp import ClientSession, ClientTimeout, web
from prometheus_client import (
    CollectorRegistry,
    Counter,
    Histogram,
    disable_created_metrics,
    start_http_server,
)

NAMESPACE = "Acme.Freight.Contracts"
SERVICE = "Acme.Freight.Worker"
API_KEY = "freight-test-key"
# endpoint -> queue type, prefetch, concurrency, the types it consumes, fault share, mean work
# (MassTransit labels a consume with its consumer's class: each endpoint has its own)
ENDPOINTS: dict[str, dict] = {
    "shipment-booking": {"type": "quorum", "prefetch": 4, "concurrency": 2,
                         "consumes": ["ShipmentBooked"], "faults": 0.0, "work_ms": 50.0,
                         "consumer": "BookShipmentConsumer"},
    "rate-quotes": {"type": "classic", "prefetch": 16, "concurrency": 8,
                    "consumes": ["QuoteRequested"], "faults": 0.0, "work_ms": 5.0,
                    "consumer": "QuoteRatesConsumer"},
    "customs-clearance": {"type": "quorum", "prefetch": 8, "concurrency": 4,
                          "consumes": ["ShipmentBooked", "CustomsDeclared"], "faults": 0.02,
                          "work_ms": 10.0, "consumer": "ClearCustomsConsumer"},
}
POLICY = ("freight-limits", "^customs-clearance$",
          {"max-length": 500000, "overflow": "reject-publish", "delivery-limit": 5})
# the OpenTelemetry .NET SDK's default explicit bucket boundaries (milliseconds here)
BUCKETS_MS = (0, 5, 10, 25, 50, 75, 100, 250, 500, 750, 1000, 2500, 5000, 7500, 10000)


def management_call(base: str, user: str, password: str, method: str, path: str,
                    body: object = None) -> None:
    req = urllib.request.Request(base.rstrip("/") + path, method=method,
                                 data=None if body is None else json.dumps(body).encode())
    token = base64.b64encode(f"{user}:{password}".encode()).decode()
    req.add_header("Authorization", f"Basic {token}")
    req.add_header("content-type", "application/json")
    urllib.request.urlopen(req, timeout=10).read()


class Meters:
    """MassTransit's instruments under the names the OpenTelemetry Prometheus exporter gives
    them, labelled as MassTransit labels them."""

    def __init__(self) -> None:
        disable_created_metrics()  # the OpenTelemetry exporter writes no _created series
        r = self.registry = CollectorRegistry()
        scope = ["otel_scope_name"]
        receive = ["messaging_masstransit_service", "messaging_masstransit_destination"]
        consume = ["messaging_masstransit_service", "messaging_masstransit_message_type",
                   "messaging_masstransit_consumer_type"]
        error = ["messaging_masstransit_exception_type"]
        self.receive = Counter("messaging_masstransit_receive_ea", "Number of messages "
                               "received", receive + scope, registry=r)
        self.receive_errors = Counter("messaging_masstransit_receive_errors_ea", "Number of "
                                      "messages receive faults", receive + error + scope,
                                      registry=r)
        self.receive_duration = Histogram(
            "messaging_masstransit_receive_duration_milliseconds", "Elapsed time spent "
            "receiving a message, in seconds", receive + scope, buckets=BUCKETS_MS, registry=r)
        self.consume = Counter("messaging_masstransit_consume_ea", "Number of messages "
                               "consumed", consume + scope, registry=r)
        self.consume_errors = Counter("messaging_masstransit_consume_errors_ea", "Number of "
                                      "message consume faults", consume + error + scope,
                                      registry=r)
        self.consume_duration = Histogram(
            "messaging_masstransit_consume_duration_milliseconds", "Elapsed time spent "
            "consuming a message, in seconds", consume + scope, buckets=BUCKETS_MS, registry=r)
        self.delivery_duration = Histogram(
            "messaging_masstransit_delivery_duration_milliseconds", "Elapsed time between "
            "when the message was sent and when it was consumed, in seconds",
            consume + scope, buckets=BUCKETS_MS, registry=r)


def envelope(type_name: str, message: dict) -> bytes:
    """A MassTransit JSON envelope, as a .NET publisher writes it."""
    mid = str(uuid.uuid4())
    return json.dumps({
        "messageId": mid, "conversationId": str(uuid.uuid4()),
        "sourceAddress": "rabbitmq://localhost/acme_freight_api",
        "destinationAddress": f"rabbitmq://localhost/{NAMESPACE}:{type_name}",
        "messageType": [f"urn:message:{NAMESPACE}:{type_name}"],
        "message": message, "sentTime": datetime.now(UTC).isoformat().replace("+00:00", "Z"),
        "headers": {}, "host": {"machineName": "freight", "processName": SERVICE}}).encode()


async def declare(channel: aio_pika.abc.AbstractChannel) -> None:
    types = {t for spec in ENDPOINTS.values() for t in spec["consumes"]}
    for t in sorted(types):
        await channel.declare_exchange(f"{NAMESPACE}:{t}", aio_pika.ExchangeType.FANOUT,
                                       durable=True)
    for queue, spec in ENDPOINTS.items():
        ex = await channel.declare_exchange(queue, aio_pika.ExchangeType.FANOUT, durable=True)
        q = await channel.declare_queue(queue, durable=True,
                                        arguments={"x-queue-type": spec["type"]})
        await q.bind(ex)
        for t in spec["consumes"]:
            await ex.bind(f"{NAMESPACE}:{t}")
        err_ex = await channel.declare_exchange(f"{queue}_error", aio_pika.ExchangeType.FANOUT,
                                                durable=True)
        err_q = await channel.declare_queue(f"{queue}_error", durable=True)
        await err_q.bind(err_ex)


class Instance:
    def __init__(self, a: argparse.Namespace, meters: Meters) -> None:
        self.a, self.meters = a, meters
        self.rng = random.Random(a.instance)
        self.truth = None
        if a.truth:
            path = Path(a.truth) / f"instance-{a.instance}.csv"
            self.truth_file = path.open("w", newline="", buffering=1)  # each row as it is written
            self.truth = csv.writer(self.truth_file)
            self.truth.writerow(["endpoint", "type", "sent", "finished", "work_s"])
        self.http: ClientSession | None = None

    def work_s(self, queue: str) -> float:
        mean = self.a.work.get(queue, ENDPOINTS[queue]["work_ms"]) / 1000
        return mean if self.a.fixed else self.rng.expovariate(1 / mean)

    async def consume(self, conn: aio_pika.abc.AbstractConnection, queue: str) -> None:
        spec = ENDPOINTS[queue]
        channel = await conn.channel()
        await channel.set_qos(prefetch_count=self.a.prefetch.get(queue, spec["prefetch"]))
        slots = asyncio.Semaphore(self.a.concurrency.get(queue, spec["concurrency"]))
        error_ex = await channel.get_exchange(f"{queue}_error", ensure=False)
        q = await channel.get_queue(queue, ensure=False)
        received = (SERVICE, queue, "MassTransit")

        async def handle(message: aio_pika.abc.AbstractIncomingMessage) -> None:
            t_receive = time.perf_counter()
            try:
                doc = json.loads(message.body)
                type_name = doc["messageType"][0].rsplit(":", 1)[-1]
                sent = datetime.fromisoformat(doc["sentTime"].replace("Z", "+00:00"))
            except (ValueError, KeyError, IndexError, TypeError):
                doc, type_name, sent = {}, "Unknown", None
            labels = (SERVICE, type_name, spec["consumer"], "MassTransit")
            async with slots:  # ConcurrentMessageLimit
                t0 = time.perf_counter()
                work = self.work_s(queue)
                await asyncio.sleep(work)
                faulted = type_name == "Unknown" or self.rng.random() < spec["faults"]
                consumed_ms = (time.perf_counter() - t0) * 1000
            self.meters.consume.labels(*labels).inc()
            self.meters.consume_duration.labels(*labels).observe(consumed_ms)
            finished = time.time()
            if sent is not None:
                self.meters.delivery_duration.labels(*labels).observe(
                    max(0.0, finished - sent.timestamp()) * 1000)
            if faulted:
                self.meters.consume_errors.labels(*labels[:3], "InvalidOperationException",
                                                  labels[3]).inc()
                await error_ex.publish(aio_pika.Message(
                    message.body, content_type=message.content_type,
                    message_id=message.message_id,
                    headers={"MT-Fault-ExceptionType": "System.InvalidOperationException",
                             "MT-Fault-Message": "the shipment was refused",
                             "MT-Reason": "fault"},
                    delivery_mode=aio_pika.DeliveryMode.PERSISTENT), routing_key="")
            elif queue == "shipment-booking":
                await self.call_back(doc.get("message") or {})
            if self.truth is not None and sent is not None:
                self.truth.writerow([queue, type_name, f"{sent.timestamp():.6f}",
                                     f"{finished:.6f}", f"{work:.6f}"])
            await message.ack()
            self.meters.receive.labels(*received).inc()
            self.meters.receive_duration.labels(*received).observe(
                (time.perf_counter() - t_receive) * 1000)

        await q.consume(handle)

    async def call_back(self, booking: dict) -> None:
        url = booking.get("callbackUrl")
        if not url or self.http is None:
            return
        try:
            async with self.http.post(url, json={"shipmentId": booking.get("shipmentId"),
                                                 "status": "Booked"}) as resp:
                await resp.read()
        except Exception:  # a callback that fails is the caller's problem, not ours
            pass

    async def api(self, port: int) -> str:
        """POST /api/shipments: a booking published as ShipmentBooked (202)."""
        conn = await aio_pika.connect_robust(self.a.amqp, client_properties={
            "connection_name": f"acme-freight-api {self.a.instance}"})
        channel = await conn.channel(publisher_confirms=True)
        exchange = await channel.get_exchange(f"{NAMESPACE}:ShipmentBooked", ensure=False)

        async def book(request: web.Request) -> web.Response:
            if request.headers.get("Authorization") != f"Bearer {API_KEY}":
                return web.json_response({"error": "unauthorized"}, status=401)
            try:
                body = await request.json()
            except ValueError:
                return web.json_response({"error": "not JSON"}, status=400)
            shipment = str(uuid.uuid4())
            message = {"shipmentId": shipment, "reference": str(body.get("reference", "")),
                       "callbackUrl": body.get("callbackUrl"), "weightKg": body.get("weightKg")}
            await exchange.publish(aio_pika.Message(
                envelope("ShipmentBooked", message), content_type="application/vnd.masstransit"
                "+json", delivery_mode=aio_pika.DeliveryMode.PERSISTENT), routing_key="")
            return web.json_response({"shipmentId": shipment}, status=202)

        app = web.Application()
        app.router.add_post("/api/shipments", book)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", port)
        await site.start()
        return f"http://127.0.0.1:{site._server.sockets[0].getsockname()[1]}"  # type: ignore


def _overrides(items: list[str], kind: type) -> dict:
    out = {}
    for item in items:
        queue, _, value = item.partition("=")
        out[queue] = kind(value)
    return out


async def main(argv: list[str]) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--amqp", required=True)
    ap.add_argument("--management", default="http://127.0.0.1:15672")
    ap.add_argument("--declare", action="store_true", help="declare the topology and policy")
    ap.add_argument("--instance", type=int, default=1)
    ap.add_argument("--metrics-port", type=int, default=0)
    ap.add_argument("--http-port", type=int, default=None)
    ap.add_argument("--work", action="append", default=[], metavar="QUEUE=MS")
    ap.add_argument("--concurrency", action="append", default=[], metavar="QUEUE=N")
    ap.add_argument("--prefetch", action="append", default=[], metavar="QUEUE=N")
    ap.add_argument("--fixed", action="store_true", help="fixed work instead of exponential")
    ap.add_argument("--truth", default=None, metavar="DIR")
    a = ap.parse_args(argv)
    a.work = _overrides(a.work, float)
    a.concurrency = _overrides(a.concurrency, int)
    a.prefetch = _overrides(a.prefetch, int)
    parts = urlsplit(a.amqp)
    user, password = unquote(parts.username or "guest"), unquote(parts.password or "guest")
    vhost = unquote(parts.path[1:]) or "/"
    if a.declare:
        name, pattern, definition = POLICY
        management_call(a.management, user, password, "PUT",
                        f"/api/policies/{quote(vhost, safe='')}/{name}",
                        {"pattern": pattern, "definition": definition, "apply-to": "queues"})
        conn = await aio_pika.connect_robust(a.amqp)
        await declare(await conn.channel())
        await conn.close()
    meters = Meters()
    server, _ = start_http_server(a.metrics_port, addr="127.0.0.1", registry=meters.registry)
    instance = Instance(a, meters)
    instance.http = ClientSession(timeout=ClientTimeout(total=10))
    conn = await aio_pika.connect_robust(a.amqp, client_properties={
        "connection_name": f"acme-freight-worker {a.instance}"})
    for queue in ENDPOINTS:
        await instance.consume(conn, queue)
    api = await instance.api(a.http_port) if a.http_port is not None else ""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    print(f"ready instance={a.instance} metrics=http://127.0.0.1:{server.server_port}/metrics"
          + (f" api={api}" if api else ""), flush=True)
    await stop.wait()
    await conn.close()
    await instance.http.close()
    if instance.truth is not None:
        instance.truth_file.close()
    server.shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main(sys.argv[1:])))
