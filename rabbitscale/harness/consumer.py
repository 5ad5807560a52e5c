"""Consumer instance: one process's receive endpoints, with MassTransit's middleware order.

Per message: concurrency limit -> partition lock -> rate limit -> in-memory retry around
(circuit breaker -> handler) -> ack, or fault to ``<queue>_error`` with MT-Fault-* headers
then ack.
Completion records are confirmed before the ack (see completions.py). On stop, consumption is
cancelled, in-flight work gets a grace period, and anything unfinished is nacked back to its
queue: nothing is lost by stopping an instance.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import os
import random
import signal
import sys
import time
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import aio_pika
import aiohttp

from rabbitscale.broker import amqp
from rabbitscale.broker.publisher import Publisher
from rabbitscale.core.errors import RabbitscaleError
from rabbitscale.core.events import hook
from rabbitscale.core.headers import (
    RS_FAIL,
    RS_INTENDED,
    RS_RUN,
    WEBHOOK_TIMESTAMP,
    WEBHOOK_TYPE,
    X_INTENDED,
    X_MESSAGE_ID,
    X_ORIGINAL_URL,
    X_RUN,
)
from rabbitscale.harness.completions import (
    COMPLETED,
    FAULTED,
    SKIPPED,
    Acks,
    Completion,
    CompletionReporter,
)
from rabbitscale.harness.middleware import CircuitBreaker, Dedup, Partitioner, RateLimiter
from rabbitscale.topology import messages, naming
from rabbitscale.topology.envelope import (
    CaseInsensitive,
    Envelope,
    EnvelopeError,
    new_id,
    parse_envelope,
)
from rabbitscale.topology.profile_file import profile_from_env
from rabbitscale.topology.profiles import Endpoint, MessageType, Profile
from rabbitscale.topology.settings import RabbitSettings, load_settings

log = logging.getLogger("rabbitscale.consumer")

# the task status each callback moment reports
CALLBACK_STATUS = {"started": "processing", "completed": "completed", "failed": "failed"}


def _header_value(value: Any) -> str:
    """An HTTP header value from a JSON value of any type (a .NET publisher's headers)."""
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    return "" if value is None else json.dumps(value) if isinstance(value, dict | list) \
        else str(value)


class HandlerError(Exception):
    """The simulated work (or the webhook target) failed."""


class CircuitBreakerOpenError(Exception):
    """Named like MassTransit's CircuitBreakerOpenException for the fault headers."""


@dataclass(frozen=True)
class ConsumerOptions:
    instance: str = "consumer-1"
    time_scale: float = 1.0  # multiplies retry delays and breaker windows (tests, quick runs)
    # where a webhook URL that is not allowed is sent instead (the stack's sink)
    webhook_redirect_url: str | None = None
    # HOST:PORT the webhooks may reach besides the sink (the callback receivers of runs)
    webhook_allow: tuple[str, ...] = ()
    webhook_timeout_s: float = 10.0
    stop_grace_s: float = 10.0
    seed: int | None = None


# headers a message may not choose for its webhook: credentials, routing and framing
FORBIDDEN_HEADERS = frozenset({
    "authorization", "cookie", "host", "connection", "content-length", "transfer-encoding",
    "te", "upgrade", "forwarded", "x-forwarded-for", "x-forwarded-host", "x-forwarded-proto",
    "x-real-ip"})


def forbidden_header(name: str) -> bool:
    n = name.strip().lower()
    return n in FORBIDDEN_HEADERS or n.startswith("proxy-")


def address(url: str) -> str:
    """``host:port`` of an http(s) URL, the port made explicit; "" for anything else."""
    try:
        parts = urlsplit(url)
        port = parts.port or {"http": 80, "https": 443}.get(parts.scheme)
    except ValueError:
        return ""
    if parts.scheme not in ("http", "https") or not parts.hostname or port is None:
        return ""
    host = parts.hostname.lower()
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def allowed_addresses(opts: ConsumerOptions) -> frozenset[str]:
    """Where webhooks may go: the sink, and what the stack was told to allow."""
    own = {address(opts.webhook_redirect_url)} if opts.webhook_redirect_url else set()
    return frozenset({*own, *(a.lower() for a in opts.webhook_allow)} - {""})


class EndpointConsumer:
    """One receive endpoint in one instance: its channel, limits and middleware state."""

    def __init__(self, ep: Endpoint, instance: ConsumerInstance) -> None:
        self.ep = ep
        self.instance = instance
        self.opts = instance.opts
        self.allowed = allowed_addresses(self.opts)
        self.semaphore = asyncio.Semaphore(ep.concurrency or 1)
        self.partitioner = Partitioner(ep.partitions) if ep.partitioned and ep.partitions \
            else None
        self.breaker = CircuitBreaker(ep.breaker, time_scale=self.opts.time_scale) \
            if ep.breaker else None
        self.limiter = RateLimiter(ep.rate_limit, time_scale=self.opts.time_scale) \
            if ep.rate_limit else None
        profile = instance.profile
        self.types = {t: profile.message(t) for t in ep.consumes}
        self.urns = frozenset(mt.urn for mt in self.types.values())
        self.dedup = Dedup() if ep.delivery else None
        self.delays = ep.retry.delays_s()
        self.channel: aio_pika.abc.AbstractChannel | None = None
        self.queue: aio_pika.abc.AbstractQueue | None = None
        self.consumer_tag: str | None = None
        self.error_exchange: aio_pika.abc.AbstractExchange | None = None
        self.skipped_exchange: aio_pika.abc.AbstractExchange | None = None
        self.in_flight = 0
        self.counts = {"completed": 0, "faulted": 0, "skipped": 0, "retries": 0,
                       "requeued": 0, "duplicates": 0}

    async def start(self, conn: aio_pika.abc.AbstractRobustConnection) -> None:
        self.channel = await conn.channel(publisher_confirms=True)
        await self.channel.set_qos(prefetch_count=self.ep.prefetch or 1)
        self.queue = await self.channel.get_queue(self.ep.queue, ensure=True)
        self.error_exchange = await self.channel.get_exchange(self.ep.error_queue, ensure=False)
        self.skipped_exchange = await self.channel.get_exchange(self.ep.skipped_queue,
                                                                ensure=False)
        self.consumer_tag = await self.queue.consume(self.on_message)

    async def cancel(self) -> None:
        if self.queue and self.consumer_tag:
            with contextlib.suppress(Exception):
                await self.queue.cancel(self.consumer_tag)
            self.consumer_tag = None

    async def on_message(self, msg: aio_pika.abc.AbstractIncomingMessage) -> None:
        delivered = time.time()  # before it waits for a slot: transit ends here
        self.instance.acks.delivered(msg)
        if self.instance.stopping:
            await self._requeue(msg)
            return
        self.in_flight += 1
        try:
            async with self.semaphore:
                if self.instance.stopping:
                    await self._requeue(msg)
                    return
                await self._process(msg, delivered)
        except asyncio.CancelledError:
            await self._requeue(msg)
            raise
        finally:
            self.in_flight -= 1

    async def _requeue(self, msg: aio_pika.abc.AbstractIncomingMessage) -> None:
        self.counts["requeued"] += 1
        self.instance.acks.settled(msg)
        with contextlib.suppress(Exception):
            await msg.nack(requeue=True)

    async def _process(self, msg: aio_pika.abc.AbstractIncomingMessage,
                       delivered: float = 0.0) -> None:
        try:
            env = parse_envelope(msg.body)
        except EnvelopeError as exc:  # unreadable: straight to _error, no retry can help
            record = self._record(msg, None, delivered)
            await self._fault(msg, exc, 0)
            await self._finish(msg, record.done(FAULTED, f"EnvelopeError: {exc}"))
            return
        if self.urns.isdisjoint(env.message_types):  # MassTransit: no consumer for its types
            record = self._record(msg, env, delivered)
            await self._forward(self.skipped_exchange, msg, {})
            await self._finish(msg, record.done(SKIPPED, "no consumer for type"))
            return
        # the ordering key: ours rides in the envelope; a .NET publisher's is the message's
        measured = env.measurement()
        mt = self._type_of(env)
        key = measured[2] or (env.message.text(mt.key) if mt is not None and mt.key else "")
        lock = self.partitioner.lock(key) if self.partitioner else contextlib.nullcontext()
        async with lock:
            if self.limiter:
                await self.limiter.acquire()
            record = self._record(msg, env, delivered, key, measured)
            callback = self._callback_url(env)
            if callback:
                record.spawned += await self._callback(env, callback, "started")
            error, record.attempts = await self._attempts(env, msg)
            if error is not None:
                await self._fault(msg, error, record.attempts - 1)
                if callback:
                    record.spawned += await self._callback(env, callback, "failed", error)
                await self._finish(msg, record.done(FAULTED, f"{type(error).__name__}: {error}"))
            else:
                if callback:
                    record.spawned += await self._callback(env, callback, "completed")
                await self._finish(msg, record.done(COMPLETED))

    def _record(self, msg: aio_pika.abc.AbstractIncomingMessage, env: Envelope | None,
                delivered: float, key: str = "",
                measured: tuple[float, float, str, int, str] | None = None) -> Completion:
        """The completion record of a message whose processing starts now; ``done`` ends it.
        A message without our measurement headers (a .NET publisher's) is timed from its
        ``sentTime``."""
        started = time.time()
        intended = sent = started
        run = task_id = ""
        seq = 0
        if env is not None:
            intended, sent, own_key, seq, run = measured or env.measurement()
            key = key or own_key
            if not (intended and sent):
                fallback = env.sent_time or started
                intended, sent = intended or fallback, sent or fallback
            mt = self._type_of(env)
            task_id = env.message.text(mt.task) if mt is not None and mt.task else ""
        return Completion(
            message_id=msg.message_id or (env.message_id if env else ""),
            message_type=self.ep.message_type, queue=self.ep.queue, key=key, seq=seq, run=run,
            intended=intended, sent=sent, started=started, finished=started, status="",
            attempts=0, redelivered=bool(msg.redelivered), instance=self.opts.instance,
            task_id=task_id, delivered=delivered or started)

    async def _attempts(self, env: Envelope, msg: aio_pika.abc.AbstractIncomingMessage
                        ) -> tuple[Exception | None, int]:
        """In-memory retry around (circuit breaker -> handler): the last error, if all
        attempts failed, and the number of attempts. The breaker sits inside the retry
        filter, so it sees every attempt: a target failing 20% of calls trips a 15% breaker
        even when retries rescue the messages."""
        delays = self.delays
        error: Exception | None = None
        for attempt in range(len(delays) + 1):
            try:
                if self.breaker and not self.breaker.allow():
                    raise CircuitBreakerOpenError(f"circuit breaker open on {self.ep.queue}")
                try:
                    await self.handle(env, msg, attempt)
                except Exception:
                    if self.breaker:
                        self.breaker.record(False)
                    raise
                if self.breaker:
                    self.breaker.record(True)
                return None, attempt + 1
            except Exception as exc:  # any handler failure is a fault, as in MassTransit
                error = exc
                if attempt < len(delays):
                    self.counts["retries"] += 1
                    await asyncio.sleep(delays[attempt] * self.opts.time_scale)
        return error, len(delays) + 1

    async def handle(self, env: Envelope, msg: aio_pika.abc.AbstractIncomingMessage,
                     attempt: int) -> None:
        """The simulated work of this endpoint; webhook delivery is a real HTTP POST."""
        if msg.headers:
            raw = msg.headers.get(RS_FAIL)
            fail = raw.decode() if isinstance(raw, bytes | bytearray) else raw
            if fail is not None and (str(fail) == "always" or attempt < int(str(fail))):
                raise HandlerError(f"injected failure (RS-Fail={fail}, attempt {attempt + 1})")
        if self.ep.service_time is not None:
            delay = self.ep.service_time.sample_s(self.instance.rng)
            if delay:
                await asyncio.sleep(delay)
        if self.ep.failure_probability and \
                self.instance.rng.random() < self.ep.failure_probability:
            raise HandlerError("simulated failure")
        if self.ep.delivery is not None:
            await self._deliver_webhook(env)

    def _type_of(self, env: Envelope) -> MessageType | None:
        """The consumed message type this message is (as itself, a base or an interface)."""
        for mt in self.types.values():
            if env.is_a(mt.urn):
                return mt
        return None

    def _callback_url(self, env: Envelope) -> str:
        """The URL a task asked to be called back at, where the endpoint calls back."""
        if self.ep.callbacks is None:
            return ""
        return env.message.text(self.ep.callbacks.url)

    async def _callback(self, env: Envelope, url: str, moment: str,
                        error: Exception | None = None) -> int:
        """Publish the message the endpoint's callbacks publish at this moment (started,
        completed, failed); the queues it reached when the broker confirmed it (counted as
        spawned in the ledger), else 0."""
        cb = self.ep.callbacks
        assert cb is not None
        event = cb.event(moment)
        if event is None:
            return 0
        request = cb.request.render({
            "message": env.message.raw, "event": event, "status": CALLBACK_STATUS[moment],
            "error": str(error)[:500] if error is not None else None,
            "message_id": env.message_id, "now": messages.now_text(), "uuid": new_id()})
        if isinstance(request, dict):
            request.setdefault("url", url)
        body = messages.build(self.instance.profile, cb.publish, request=request,
                              task_id=str((request or {}).get("task_id") or env.message_id))
        publisher = await self.instance.publisher()
        result = await publisher.publish(cb.publish, body, run=env.header_text(RS_RUN))
        if not result.ok:
            log.warning("%s: %s callback of %s not enqueued: %s", self.opts.instance, event,
                        env.message_id, result.error or result.outcome)
        return self.instance.profile.fanout(cb.publish) if result.ok else 0

    async def _deliver_webhook(self, env: Envelope) -> None:
        """The endpoint's work is an HTTP POST of the message's payload to its URL."""
        d = self.ep.delivery
        assert d is not None
        m = env.message
        mt = self._type_of(env)
        event = messages.enum_name(mt, d.event, m.get(d.event)) if d.event else ""
        dedup_key = f"{m.text(d.task) if d.task else ''}:{event}:{env.message_id}"
        if self.dedup and self.dedup.is_duplicate(dedup_key):
            self.counts["duplicates"] += 1
            return
        url = m.text(d.url)
        if not url.startswith(("http://", "https://")):
            raise HandlerError(f"webhook URL {url!r} is not an http(s) URL")
        target = url
        if address(url) not in self.allowed:  # anything else, loopback included: the sink
            if not self.opts.webhook_redirect_url:
                raise HandlerError("webhook target is not allowed and no sink is configured "
                                   "(--webhook-redirect-url)")
            target = self.opts.webhook_redirect_url
        extra = m.get(d.headers) if d.headers else None
        headers = {str(k): _header_value(v) for k, v in extra.raw.items()
                   if not forbidden_header(str(k))} \
            if isinstance(extra, CaseInsensitive) else {}
        headers.update({
            "Content-Type": "application/json",
            WEBHOOK_TYPE: "progress" if event in d.progress_events else "completion",
            WEBHOOK_TIMESTAMP: str(int(time.time())),
        })
        if target != url:
            headers[X_ORIGINAL_URL] = url
        if env.header_text(RS_RUN):  # our own messages: let the sink account for them
            headers.update({X_MESSAGE_ID: env.message_id, X_RUN: env.header_text(RS_RUN),
                            X_INTENDED: env.header_text(RS_INTENDED)})
        payload = m.text(d.payload, "{}") if d.payload else "{}"
        session = await self.instance.http()
        async with session.post(target, data=payload, headers=headers) as resp:
            if resp.status >= 300:
                raise HandlerError(f"webhook target answered HTTP {resp.status}")
        if self.dedup:
            self.dedup.remember(dedup_key)

    async def _forward(self, exchange: aio_pika.abc.AbstractExchange | None,
                       msg: aio_pika.abc.AbstractIncomingMessage, extra: dict[str, Any]) -> None:
        assert exchange is not None
        out = aio_pika.Message(
            msg.body, content_type=msg.content_type, message_id=msg.message_id,
            correlation_id=msg.correlation_id, delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
            headers={**(msg.headers or {}), **extra})
        while True:
            try:
                await exchange.publish(out, routing_key="", timeout=30)
                return
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # reconnecting; the message is still unacked
                log.warning("%s: forwarding to %s failed (%s), retrying", self.opts.instance,
                            exchange.name, exc)
                await asyncio.sleep(0.5)

    async def _fault(self, msg: aio_pika.abc.AbstractIncomingMessage, exc: Exception,
                     retry_count: int) -> None:
        await self._forward(self.error_exchange, msg, {
            "MT-Reason": "fault",
            "MT-Fault-ExceptionType": f"Rabbitscale.Harness.{type(exc).__name__}",
            "MT-Fault-Message": str(exc)[:1000],
            "MT-Fault-Timestamp": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "MT-Fault-RetryCount": retry_count,
            "MT-Fault-InputAddress": naming.input_address(self.ep.queue),
            "MT-Fault-ConsumerType": f"Rabbitscale.Harness.{self.ep.message_type}Consumer",
        })

    async def _finish(self, msg: aio_pika.abc.AbstractIncomingMessage,
                      record: Completion) -> None:
        """Count the finished message and hand its record on; the message is acked once the
        record is confirmed (or at once when no records are reported)."""
        self.counts[record.status] += 1
        self.instance.completed.fire(record=record)
        if self.instance.reporter:
            self.instance.reporter.report(record, msg)
        else:
            self.instance.acks.settled(msg)
            await msg.ack()


class ConsumerInstance:
    """All endpoints of a profile in one process, like one MassTransit bus instance."""

    def __init__(self, settings: RabbitSettings, profile: Profile,
                 opts: ConsumerOptions | None = None, *, queues: list[str] | None = None,
                 report_completions: bool = True) -> None:
        self.settings = settings
        self.profile = profile.resolved(settings)
        self.opts = opts or ConsumerOptions()
        self.rng = random.Random(self.opts.seed)
        self.completed = hook("completed")
        self.stopping = False
        self.report_completions = report_completions
        self.reporter: CompletionReporter | None = None
        self.acks = Acks()  # open delivery tags, so confirmed batches ack with one frame
        eps = [ep for ep in self.profile.endpoints if queues is None or ep.queue in queues]
        self.endpoints = [EndpointConsumer(ep, self) for ep in eps]
        self._conn: aio_pika.abc.AbstractRobustConnection | None = None
        self._http: aiohttp.ClientSession | None = None
        self._publisher: Publisher | None = None
        self._publisher_lock = asyncio.Lock()

    async def publisher(self) -> Publisher:
        """Publishes the webhooks of tasks that carry a callback URL (opened on first use)."""
        async with self._publisher_lock:
            if self._publisher is None:
                self._publisher = await Publisher(self.settings, self.profile).start()
            return self._publisher

    async def http(self) -> aiohttp.ClientSession:
        if self._http is None:
            self._http = aiohttp.ClientSession(
                timeout=aiohttp.ClientTimeout(total=self.opts.webhook_timeout_s),
                connector=aiohttp.TCPConnector(limit=200))
        return self._http

    async def start(self) -> ConsumerInstance:
        self._conn = await amqp.connect(self.settings, f"rabbitscale-{self.opts.instance}")
        if self.report_completions:
            self.reporter = CompletionReporter(await self._conn.channel(publisher_confirms=True),
                                               acks=self.acks)
            await self.reporter.start()
        for ec in self.endpoints:
            await ec.start(self._conn)
        return self

    async def stop(self) -> None:
        """Cancel consumption, let in-flight work finish, requeue the rest, close."""
        self.stopping = True
        for ec in self.endpoints:
            await ec.cancel()
        deadline = time.monotonic() + self.opts.stop_grace_s
        while any(ec.in_flight for ec in self.endpoints) and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        if self.reporter:
            await self.reporter.close()
        if self._publisher:
            await self._publisher.close()
        if self._http:
            await self._http.close()
        if self._conn:
            await self._conn.close()  # unacked deliveries return to their queues

    def counts(self) -> dict[str, dict[str, int]]:
        out = {}
        for ec in self.endpoints:
            out[ec.ep.queue] = dict(ec.counts)
            if ec.breaker:
                out[ec.ep.queue]["breaker_trips"] = ec.breaker.trips
                out[ec.ep.queue]["breaker_rejected"] = ec.breaker.rejected
                out[ec.ep.queue]["breaker_resets"] = ec.breaker.resets
        return out


async def _stop_when_orphaned(stop: asyncio.Event, interval_s: float = 1.0) -> None:
    """A consumer runs in a session of its own (Ctrl-C reaches the stack, which stops it in
    order); if the stack dies without stopping it (SIGKILL, a crash), its parent changes and
    the consumer stops itself, returning its unacked deliveries, instead of running forever."""
    parent = os.getppid()
    while not stop.is_set():
        await asyncio.sleep(interval_s)
        if os.getppid() != parent:
            stop.set()


async def _run_instance(settings: RabbitSettings, profile: Profile,
                        opts: ConsumerOptions) -> None:
    inst = await ConsumerInstance(settings, profile, opts).start()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    orphan = asyncio.create_task(_stop_when_orphaned(stop))
    print(f"{opts.instance}: consuming {len(inst.endpoints)} endpoints", flush=True)
    await stop.wait()
    orphan.cancel()
    await inst.stop()
    totals: dict[str, int] = {}
    for counts in inst.counts().values():
        for k, v in counts.items():
            totals[k] = totals.get(k, 0) + v
    print(f"{opts.instance}: stopped " + " ".join(f"{k}={v}" for k, v in totals.items()),
          flush=True)


def main(argv: list[str] | None = None) -> int:
    """Entry point of one consumer process (``python -m rabbitscale.harness.consumer``), as
    started by the stack: settings from the environment, the profile from PROFILE_ENV."""
    p = argparse.ArgumentParser(prog="python -m rabbitscale.harness.consumer")
    p.add_argument("--instance", default="consumer-1")
    p.add_argument("--time-scale", type=float, default=1.0)
    p.add_argument("--webhook-redirect-url")
    p.add_argument("--webhook-allow", action="append", default=[], metavar="HOST:PORT")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(name)s %(message)s")
    opts = ConsumerOptions(instance=args.instance, time_scale=args.time_scale,
                           webhook_redirect_url=args.webhook_redirect_url,
                           webhook_allow=tuple(args.webhook_allow))
    try:
        settings = load_settings()
        asyncio.run(_run_instance(settings, profile_from_env(), opts))
    except RabbitscaleError as exc:
        print(f"error: {exc}", file=sys.stderr, flush=True)
        return exc.exit_code
    return 0


if __name__ == "__main__":
    sys.exit(main())
