"""Completion records: what each consumer instance finished, reported over the broker.

Consumers publish a batch of records to the ``rabbitscale.completions`` fanout exchange (with
confirms) *before* acking the messages they describe, so a killed instance can produce a
duplicate record (the message really is processed twice) but never a missing one. Listeners
(the API for task status, the run recorder for the ledger and histograms) bind their own queue.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import aio_pika
import orjson

from rabbitscale.harness.naming import COMPLETIONS_EXCHANGE

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

    @property
    def e2e_s(self) -> float:
        return self.finished - self.intended

    @property
    def queue_wait_s(self) -> float:
        return self.started - self.sent

    @property
    def processing_s(self) -> float:
        return self.finished - self.started

    def to_json(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in self.__dataclass_fields__}

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> Completion:
        return cls(**{k: d[k] for k in cls.__dataclass_fields__ if k in d})


AckFn = Callable[[], Awaitable[Any]]


class CompletionReporter:
    """Batches records, publishes each batch with a confirm, and only then acks the messages
    the records describe: a record is never missing for an acked message."""

    def __init__(self, channel: aio_pika.abc.AbstractChannel, *, max_batch: int = 500) -> None:
        self.channel = channel
        self.max_batch = max_batch
        self._batch: list[tuple[Completion, AckFn]] = []
        self._wakeup = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._exchange: aio_pika.abc.AbstractExchange | None = None

    async def start(self) -> None:
        self._exchange = await self.channel.get_exchange(COMPLETIONS_EXCHANGE, ensure=False)
        self._task = asyncio.create_task(self._run())

    def report(self, record: Completion, ack: AckFn) -> None:
        """Queue ``record``; ``ack`` runs once the batch holding it is confirmed. Returns at
        once, so the consumer's concurrency slot is free while the batch is in flight."""
        self._batch.append((record, ack))
        self._wakeup.set()

    async def _run(self) -> None:
        # Flush as soon as there is something to send; records that arrive while a batch
        # waits for its confirm form the next batch (batching without a fixed delay).
        while True:
            await self._wakeup.wait()
            self._wakeup.clear()
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
        for _, ack in batch:
            with contextlib.suppress(Exception):  # a lost channel redelivers: a duplicate
                await ack()

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
                 queue_name: str = "", durable: bool = False) -> aio_pika.abc.AbstractQueue:
    """Bind a queue to the completions exchange and call ``on_record`` for every record.

    With ``queue_name`` and ``durable`` the queue outlives this process, so no record is lost
    while the listener restarts; by default it is exclusive and vanishes with the connection.
    """
    ex = await channel.declare_exchange(COMPLETIONS_EXCHANGE, aio_pika.ExchangeType.FANOUT,
                                        durable=True)
    queue = await channel.declare_queue(queue_name, durable=durable,
                                        exclusive=not durable, auto_delete=not durable)
    await queue.bind(ex)

    async def handle(msg: aio_pika.abc.AbstractIncomingMessage) -> None:
        for d in orjson.loads(msg.body):
            result = on_record(Completion.from_json(d))
            if asyncio.iscoroutine(result):
                await result
        await msg.ack()

    await queue.consume(handle)
    return queue
