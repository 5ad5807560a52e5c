"""Publisher: a pool of robust connections with confirmed, persistent MassTransit publishes.

Every publish has exactly one outcome that the caller sees (``PublishResult``): confirmed,
rejected by the broker (``basic.nack``, e.g. a full reject-publish queue), unroutable,
confirm timed out, blocked (memory/disk alarm outlasted ``blocked_timeout_s``) or failed (the
connection was lost and retries ran out). Nothing is dropped silently: that is what makes the
downstream ledger balance.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import time
from dataclasses import dataclass, field
from typing import Any, cast

import aio_pika
import aiormq.exceptions
from aio_pika.exceptions import DeliveryError, PublishError
from pamqp.commands import Basic

from rabbitscale.broker import amqp
from rabbitscale.core.events import hook
from rabbitscale.core.hashing import murmur3_32
from rabbitscale.topology.envelope import (
    CONTENT_TYPE,
    CaseInsensitive,
    build_envelope,
    measurement_headers,
    new_id,
)
from rabbitscale.topology.profiles import MessageType, Profile
from rabbitscale.topology.settings import RabbitSettings


class Outcome(enum.StrEnum):
    CONFIRMED = "confirmed"
    SENT = "sent"  # publisher confirms disabled: written to the socket, nothing more known
    REJECTED = "rejected"
    UNROUTABLE = "unroutable"
    TIMEOUT = "timeout"
    BLOCKED = "blocked"
    FAILED = "failed"


@dataclass(frozen=True)
class PublishResult:
    outcome: Outcome
    message_id: str
    message_type: str
    key: str
    seq: int
    intended_time: float
    sent_time: float
    confirm_s: float
    attempts: int = 1
    error: str = ""

    @property
    def ok(self) -> bool:
        return self.outcome in (Outcome.CONFIRMED, Outcome.SENT)


@dataclass
class PublisherStats:
    """Counters per outcome plus pool and alarm state, for the sampler and reports."""

    outcomes: dict[str, int] = field(default_factory=lambda: {o.value: 0 for o in Outcome})
    retried: int = 0
    blocked_events: int = 0
    blocked_s: float = 0.0
    reconnects: int = 0
    connections: int = 0
    pool_exhausted: int = 0  # publishes that found their connection saturated

    def as_dict(self) -> dict[str, Any]:
        return {**self.outcomes, "retried": self.retried, "blocked_events": self.blocked_events,
                "blocked_s": round(self.blocked_s, 3), "reconnects": self.reconnects,
                "connections": self.connections, "pool_exhausted": self.pool_exhausted}


PERSISTENT = int(aio_pika.DeliveryMode.PERSISTENT)

_CONNECTION_ERRORS = (
    aiormq.exceptions.AMQPConnectionError,
    aiormq.exceptions.ChannelInvalidStateError,
    aiormq.exceptions.ConnectionClosed,
    aio_pika.exceptions.ChannelClosed,
    ConnectionError,
    RuntimeError,  # aio-pika raises it for "channel closed" while reconnecting
)


class _PooledConnection:
    """One robust connection with one confirm channel; aio-pika pipelines publishes on it."""

    def __init__(self, conn: aio_pika.abc.AbstractRobustConnection,
                 channel: aio_pika.abc.AbstractChannel, confirms: bool = True) -> None:
        self.conn = conn
        self.channel = channel
        self.confirms = confirms
        self.in_flight = 0
        # set while publishing may proceed; waiters wake in FIFO order, which keeps the
        # per-key order of publishes that queued up behind a memory alarm
        self.unblocked = asyncio.Event()
        self.unblocked.set()

    def is_blocked(self) -> bool:
        # aiormq tracks connection.blocked/unblocked in a private event and simply holds
        # writes; it offers no public flag, so this is the one place that reads it.
        transport = getattr(self.conn, "transport", None)
        underlying = getattr(transport, "connection", None)
        event = getattr(underlying, "_Connection__connection_unblocked", None)
        # the event first: is_opened costs more than the rest, and is asked only when blocked
        return (event is not None and not event.is_set() and underlying is not None
                and bool(underlying.is_opened))

    async def basic_publish(self, exchange: str, body: bytes,
                            properties: Basic.Properties, timeout: float) -> None:
        """One mandatory publish on the confirm channel, through aiormq: aio-pika's Message and
        Exchange would only copy the same properties again (a tenth of the API's CPU per
        request, measured with py-spy). Raises as aio-pika would: DeliveryError for a nack,
        PublishError for a return, TimeoutError, the connection errors."""
        if self.channel.is_closed:
            raise aiormq.exceptions.ChannelInvalidStateError(f"{self.channel!r} closed")
        channel = cast(aiormq.Channel, await self.channel.get_underlay_channel())
        # with confirms, the confirm is what is awaited: waiting for the frame to be written
        # first (aiormq's default) costs a future and a task switch per publish and tells
        # nothing more (a connection lost before the write fails the confirm too); without
        # confirms, "written to the socket" is all there is to know, so it is awaited
        await channel.basic_publish(body, exchange=exchange, routing_key="", mandatory=True,
                                    properties=properties, timeout=timeout,
                                    wait=not self.confirms)


class Publisher:
    """Publishes MassTransit envelopes to message-type exchanges, honouring the pool settings.

    The pool has the profile's slots (MaxConnections for the guide's pooling, else one, as
    MassTransit keeps one connection per bus); the minimum are opened at start and the
    others when a key first maps to them. Each ordering key always uses the same connection
    (Murmur3 of the key), because publishes spread over several connections can overtake
    each other: per-key order at the broker needs per-key affinity.
    """

    def __init__(self, settings: RabbitSettings, profile: Profile, *, run_id: str = "",
                 saturated_at_in_flight: int = 256, blocked_timeout_s: float = 60.0,
                 retry_window_s: float = 10.0) -> None:
        self.settings = settings
        self.profile = profile
        self.run_id = run_id
        self.saturated_at_in_flight = saturated_at_in_flight
        self.blocked_timeout_s = blocked_timeout_s
        self.retry_window_s = retry_window_s
        self.stats = PublisherStats()
        self.published = hook("published")
        self.blocked = hook("blocked")
        self._min, self._max = profile.publisher_connections(settings)
        self._slots: list[_PooledConnection | None] = [None] * self._max
        self._open_lock = asyncio.Lock()
        self._seq: dict[str, int] = {}
        self._key_locks: dict[str, tuple[asyncio.Lock, list[int]]] = {}  # lock, [users]
        self._types: dict[str, tuple[MessageType, bool]] = {}
        self._watch: asyncio.Task[None] | None = None
        self._was_blocked = False

    @property
    def _pool(self) -> list[_PooledConnection]:
        return [pc for pc in self._slots if pc is not None]

    async def start(self) -> Publisher:
        for i in range(self._min):
            await self._open(i)
        self._watch = asyncio.create_task(self._watch_blocked())
        return self

    async def __aenter__(self) -> Publisher:
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def close(self) -> None:
        if self._watch:
            self._watch.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._watch
        for pc in self._pool:
            with contextlib.suppress(Exception):
                await pc.conn.close()
        self._slots = [None] * self._max
        self.stats.connections = 0

    @property
    def is_blocked(self) -> bool:
        return any(pc.is_blocked() for pc in self._pool)

    async def _open(self, slot: int) -> _PooledConnection:
        async with self._open_lock:
            pc = self._slots[slot]
            if pc is not None:
                return pc
            conn = await amqp.connect(self.settings, f"rabbitscale-pub-{slot + 1}")
            conn.reconnect_callbacks.add(self._on_reconnect)
            # aio-pika refuses on_return_raises without confirms: a returned message is then
            # simply not known to the publisher (what publishing without confirms means)
            confirms = self.settings.publisher_confirmation
            channel = await conn.channel(publisher_confirms=confirms, on_return_raises=confirms)
            pc = self._slots[slot] = _PooledConnection(conn, channel, confirms)
            self.stats.connections = len(self._pool)
            return pc

    def _on_reconnect(self, *_: Any) -> None:
        self.stats.reconnects += 1

    async def _watch_blocked(self) -> None:
        """Count memory/disk alarm episodes (connection.blocked) and the time spent in them,
        and release the publishes waiting on each connection when it is unblocked."""
        last = time.monotonic()
        while True:
            await asyncio.sleep(0.05)
            now = time.monotonic()
            blocked = False
            for pc in self._pool:
                if pc.is_blocked():
                    blocked = True
                    pc.unblocked.clear()
                elif not pc.unblocked.is_set():
                    pc.unblocked.set()
            if blocked:
                self.stats.blocked_s += now - last
            if blocked != self._was_blocked:
                if blocked:
                    self.stats.blocked_events += 1
                self._was_blocked = blocked
                self.blocked.fire(blocked=blocked)
            last = now

    async def _acquire(self, key: str) -> _PooledConnection:
        slot = murmur3_32(key) % len(self._slots) if len(self._slots) > 1 else 0
        pc = self._slots[slot] or await self._open(slot)
        if pc.in_flight >= self.saturated_at_in_flight:
            self.stats.pool_exhausted += 1
        return pc

    def _message_type(self, message_type: str) -> tuple[MessageType, bool]:
        """The message type, and whether it is ordered: messages an endpoint processes one at
        a time on one consumer must also be published one at a time per key, or a retried
        publish could overtake a later one."""
        found = self._types.get(message_type)
        if found is None:
            mt = self.profile.message(message_type)
            ordered = any(ep.ordered for ep in self.profile.consumers_of(message_type))
            found = self._types[message_type] = (mt, ordered)
        return found

    def next_seq(self, key: str) -> int:
        seq = self._seq.get(key, 0) + 1
        self._seq[key] = seq
        return seq

    async def publish(self, message_type: str, message: dict[str, Any], *,
                      key: str | None = None, intended_time: float | None = None,
                      message_id: str | None = None, headers: dict[str, Any] | None = None,
                      run: str | None = None) -> PublishResult:
        """Publish one message and wait for its confirm; never raises for broker outcomes.
        ``headers`` are extra AMQP headers (e.g. the consumer's RS-Fail test hook); ``run``
        overrides the run name in the measurement headers (a consumer's callbacks belong to
        the run of the task that caused them)."""
        if not self._pool:
            raise RuntimeError("Publisher.start() was not called")
        mt, ordered = self._message_type(message_type)
        if key is None:
            key = CaseInsensitive(message).text(mt.key) if mt.key else ""
        if ordered:
            # sequence numbers let a recorder check per-key order; only ordered endpoints
            # have keys worth counting (a webhook's key is its task id: one entry each)
            lock_key = f"{message_type}:{key}"
            seq = self.next_seq(lock_key)
            lock, users = self._key_locks.setdefault(lock_key, (asyncio.Lock(), [0]))
            users[0] += 1
            try:
                async with lock:  # FIFO: publishes of one key go out in call order
                    return await self._publish(mt, message, key, seq,
                                               intended_time, message_id, headers, run)
            finally:
                users[0] -= 1
                if not users[0]:
                    del self._key_locks[lock_key]
        return await self._publish(mt, message, key, 0, intended_time,
                                   message_id, headers, run)

    async def _publish(  # noqa: PLR0913 - the hot path: no options object per publish
            self, mt: MessageType, message: dict[str, Any], key: str, seq: int,
            intended_time: float | None, message_id: str | None,
            headers: dict[str, Any] | None, run: str | None) -> PublishResult:
        intended = time.time() if intended_time is None else intended_time
        mid = message_id or new_id()
        attempts = 0
        sent = intended
        t0 = time.perf_counter()
        error = ""
        outcome = Outcome.FAILED
        deadline = time.monotonic() + self.retry_window_s
        exchange_name = mt.exchange
        while True:
            attempts += 1
            pc = await self._acquire(key)
            if not (pc.unblocked.is_set() and not pc.is_blocked()) and \
                    not await self._wait_unblocked(pc):
                outcome, error = Outcome.BLOCKED, "connection blocked by a broker alarm"
                break
            sent = time.time()
            # The measurement headers ride in the envelope's JSON headers, which the consumer
            # parses anyway; the AMQP header table carries only caller extras (RS-Fail).
            body = build_envelope(
                mt.urns, message, message_id=mid, destination=mt.exchange, sent_time=sent,
                headers=measurement_headers(intended, sent, key, seq,
                                            self.run_id if run is None else run))
            properties = Basic.Properties(
                content_type=CONTENT_TYPE, message_id=mid, correlation_id=mid,
                delivery_mode=PERSISTENT, headers=headers or None)
            t0 = time.perf_counter()
            pc.in_flight += 1
            try:
                await pc.basic_publish(exchange_name, body, properties,
                                       self.settings.publisher_confirmation_timeout_ms / 1000)
                outcome = (Outcome.CONFIRMED if self.settings.publisher_confirmation
                           else Outcome.SENT)
                error = ""
                break
            except PublishError as exc:  # basic.return: no queue bound
                outcome, error = Outcome.UNROUTABLE, f"unroutable: {exc}"
                break
            except DeliveryError as exc:  # basic.nack: e.g. reject-publish overflow
                outcome, error = Outcome.REJECTED, f"nacked by broker: {exc}"
                break
            except TimeoutError:
                outcome, error = Outcome.TIMEOUT, "publisher confirm timed out"
                break
            except _CONNECTION_ERRORS as exc:
                # the connection is gone: aio-pika reconnects; retry within the window
                outcome, error = Outcome.FAILED, f"{type(exc).__name__}: {exc}"
                if time.monotonic() >= deadline:
                    break
                self.stats.retried += 1
                await asyncio.sleep(min(1.0, 0.1 * 2 ** min(attempts, 4)))
            finally:
                pc.in_flight -= 1
        result = PublishResult(outcome, mid, mt.name, key, seq, intended, sent,
                               time.perf_counter() - t0, attempts, error)
        self.stats.outcomes[outcome.value] += 1
        self.published.fire(result=result)
        return result

    async def _wait_unblocked(self, pc: _PooledConnection) -> bool:
        if pc.is_blocked():
            pc.unblocked.clear()
        if pc.unblocked.is_set():
            return True
        try:
            await asyncio.wait_for(pc.unblocked.wait(), self.blocked_timeout_s)
        except TimeoutError:
            return False
        return True
