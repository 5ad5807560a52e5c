"""Completion records: what each consumer instance finished, reported over the broker.

Consumers publish a batch of records to the ``rabbitscale.completions`` fanout exchange (with
confirms) *before* acking the messages they describe, so a killed instance can produce a
duplicate record (the message really is processed twice) but never a missing one. Listeners
(the API for task status, the run recorder for the ledger and histograms) bind their own queue.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Protocol

import aio_pika
import orjson

from rabbitscale.topology.naming import COMPLETIONS_EXCHANGE

COMPLETED = "completed"
FAULTED = "faulted"
SKIPPED = "skipped"


@dataclass(slots=True)
class Completion:
    message_id: str
    message_type: str
    queue: str
    key: str
    seq: int
    run: str
    intended: float  # epoch seconds: when the load generator meant to send it
    sent: float  # when the publisher actually sent it
    started: float  # when a consumer began processing (after limits and partition lock)
    finished: float  # when processing (and fault routing) ended
    status: str  # completed | faulted | skipped
    attempts: int
    redelivered: bool
    instance: str
    task_id: str = ""
    reason: str = ""
    spawned: int = 0  # messages this processing published and the broker confirmed
    delivered: float = 0.0  # when the consumer received it, before waiting for a slot

    @property
    def identity(self) -> str:
        """A message in one queue: its id alone repeats where a type fans out to several."""
        return f"{self.queue}/{self.message_id}"

    @property
    def e2e_s(self) -> float:
        return self.finished - self.intended

    @property
    def queue_wait_s(self) -> float:
        return self.started - self.sent

    @property
    def slot_wait_s(self) -> float:
        """Delivered, waiting for a free consumer slot (concurrency, partition, rate limit):
        what a queueing model predicts."""
        return max(0.0, self.started - self.delivered) if self.delivered else self.queue_wait_s

    @property
    def processing_s(self) -> float:
        return self.finished - self.started

    def done(self, status: str, reason: str = "") -> Completion:
        """This record, finished now with ``status``."""
        self.finished = time.time()
        self.status = status
        self.reason = reason
        return self

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> Completion:
        return cls(**{k: d[k] for k in cls.__dataclass_fields__ if k in d})


class Delivery(Protocol):
    """What the reporter needs of a delivered message (aio-pika's IncomingMessage)."""

    delivery_tag: int | None

    @property
    def channel(self) -> Any: ...

    async def ack(self, multiple: bool = False) -> None: ...


class Acks:
    """Delivery tags each channel delivered and has not settled, so that a confirmed batch
    that holds every open tag up to some tag is acked with one ``basic.ack(multiple=True)``
    instead of one frame per message (less work for the client and the broker)."""

    def __init__(self) -> None:
        self._open: dict[int, set[int]] = {}  # id(channel) -> open delivery tags

    def delivered(self, msg: Delivery) -> None:
        if msg.delivery_tag is not None:
            with contextlib.suppress(Exception):  # a closed channel: nothing to track
                self._open.setdefault(id(msg.channel), set()).add(msg.delivery_tag)

    def settled(self, msg: Delivery) -> None:
        with contextlib.suppress(Exception):
            self._open.get(id(msg.channel), set()).discard(msg.delivery_tag or 0)

    async def ack(self, msgs: list[Delivery]) -> None:
        by_channel: dict[int, list[Delivery]] = {}
        for m in msgs:
            try:
                by_channel.setdefault(id(m.channel), []).append(m)
            except Exception:  # channel lost: the broker redelivers, a duplicate record
                continue
        for key, group in by_channel.items():
            open_tags = self._open.get(key, set())
            tags = {m.delivery_tag: m for m in group if m.delivery_tag is not None}
            cover = 0  # every open tag up to here is in this batch
            for tag in sorted(open_tags):
                if tag not in tags:
                    break
                cover = tag
            covered = [t for t in tags if t <= cover]
            with contextlib.suppress(Exception):
                if len(covered) > 1:
                    await tags[cover].ack(multiple=True)
                    open_tags.difference_update(covered)
                    group = [m for m in group if (m.delivery_tag or 0) > cover]
            for m in group:
                with contextlib.suppress(Exception):  # lost channel: a duplicate, not a loss
                    await m.ack()
                open_tags.discard(m.delivery_tag or 0)


class CompletionReporter:
    """Batches records, publishes each batch with a confirm, and only then acks the messages
    the records describe: a record is never missing for an acked message.

    Batching costs no wall time: before a batch goes out the reporter yields to the event loop
    while each turn brings more records (deliveries read off the socket together finish
    together), so under load one confirmed publish carries many records, and no ack waits on
    a timer behind a slow handler."""

    def __init__(self, channel: aio_pika.abc.AbstractChannel, *, max_batch: int = 500,
                 max_yields: int = 16, acks: Acks | None = None) -> None:
        self.channel = channel
        self.max_batch = max_batch
        self.max_yields = max_yields
        self.acks = acks or Acks()
        self.batches = 0
        self.records = 0
        self._batch: list[tuple[Completion, Delivery]] = []
        self._wakeup = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._exchange: aio_pika.abc.AbstractExchange | None = None

    async def start(self) -> None:
        self._exchange = await self.channel.get_exchange(COMPLETIONS_EXCHANGE, ensure=False)
        self._task = asyncio.create_task(self._run())

    def report(self, record: Completion, msg: Delivery) -> None:
        """Queue ``record``; ``msg`` is acked once the batch holding it is confirmed. Returns
        at once, so the consumer's concurrency slot is free while the batch is in flight."""
        self._batch.append((record, msg))
        self._wakeup.set()

    async def _run(self) -> None:
        while True:
            await self._wakeup.wait()
            self._wakeup.clear()
            for _ in range(self.max_yields):
                before = len(self._batch)
                await asyncio.sleep(0)  # let handlers that are ready finish first
                if len(self._batch) == before or len(self._batch) >= self.max_batch:
                    break
            while self._batch:
                await self._flush()

    async def _flush(self) -> None:
        if not self._batch:
            return
        batch, self._batch = self._batch[:self.max_batch], self._batch[self.max_batch:]
        body = orjson.dumps([r for r, _ in batch])  # orjson encodes dataclasses natively
        assert self._exchange is not None
        while True:
            try:
                await self._exchange.publish(
                    aio_pika.Message(body, content_type="application/json",
                                     delivery_mode=aio_pika.DeliveryMode.PERSISTENT),
                    routing_key="", mandatory=False, timeout=10)
                break
            except asyncio.CancelledError:
                raise
            except Exception:  # reconnecting: keep the records, try again
                await asyncio.sleep(0.2)
        self.batches += 1
        self.records += len(batch)
        await self.acks.ack([m for _, m in batch])

    @property
    def pending(self) -> int:
        return len(self._batch)

    async def close(self) -> None:
        if self._task:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        while self._batch:
            await self._flush()


async def listen(channel: aio_pika.abc.AbstractChannel,
                 on_record: Callable[[Completion], Awaitable[None] | None], *,
                 queue_name: str = "", durable: bool = False,
                 expires_s: float | None = None) -> aio_pika.abc.AbstractQueue:
    """Bind a queue to the completions exchange and call ``on_record`` for every record.

    With ``queue_name`` and ``durable`` the queue outlives this process (and on a cluster the
    node it was declared on), so no record is lost while the listener reconnects; with
    ``expires_s`` the broker deletes it once that long without a consumer (a listener that
    crashed leaves nothing behind). By default it is exclusive and vanishes with the
    connection.
    """
    ex = await channel.declare_exchange(COMPLETIONS_EXCHANGE, aio_pika.ExchangeType.FANOUT,
                                        durable=True)
    # a durable listener's queue is a quorum queue: on a cluster it must outlive the loss of
    # the node it was declared on, or records (and with them the ledger) would be lost
    queue = await channel.declare_queue(
        queue_name, durable=durable, exclusive=not durable, auto_delete=not durable,
        arguments={"x-queue-type": "quorum", **({"x-expires": int(expires_s * 1000)}
                                                 if expires_s else {})} if durable else None)
    await queue.bind(ex)

    async def handle(msg: aio_pika.abc.AbstractIncomingMessage) -> None:
        for d in orjson.loads(msg.body):
            result = on_record(Completion.from_json(d))
            if asyncio.iscoroutine(result):
                await result
        await msg.ack()

    await queue.consume(handle)
    return queue
