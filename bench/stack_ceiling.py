"""End-to-end ceiling of the reference stack beside a plain aio-pika loop, in one run.

Both sides: confirmed persistent publishes of 1 KB bodies (for the stack, the whole
MassTransit envelope is 1 KB) into a quorum queue, a consumer with prefetch 25 acking each
message, no work. The stack side goes through our Publisher (pool, envelope, measurement
headers) and a ConsumerInstance (middleware, completion records confirmed before each ack).
Rounds alternate so both sides see the same broker conditions.

Two layouts, both measured: publisher and consumer in one process (Python CPU per message
decides), and in two processes, as the stack is deployed (API and consumer instances).

    python bench/stack_ceiling.py [--messages 15000] [--rounds 5] [--in-flight 200]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import time
import uuid
from typing import Any

import aio_pika
import orjson

from rabbitscale.broker.declare import declare
from rabbitscale.broker.management import Management
from rabbitscale.broker.publisher import Publisher
from rabbitscale.harness.consumer import ConsumerInstance
from rabbitscale.topology import messages
from rabbitscale.topology.envelope import build_envelope, measurement_headers
from rabbitscale.topology.profile_file import apply_overrides, get_profile
from rabbitscale.topology.settings import RabbitSettings, load_settings

CONDUIT = get_profile("conduit")

QUEUE = "video-generation-events"
TARGET = {1: 0.6, 2: 0.7}  # issue 9: two-process ratio >= 0.7
PREFETCH = 25
PROFILE = apply_overrides(CONDUIT, {QUEUE: {"prefetch": PREFETCH, "retry": "none"}})


def _payload_bytes_for_wire(total: int) -> int:
    """Message size that makes the whole MassTransit envelope ``total`` bytes on the wire."""
    empty = messages.build(CONDUIT, "VideoGenerationRequested", task_id="0", key_id=0,
                           request={"prompt": ""})
    envelope = build_envelope(CONDUIT.message("VideoGenerationRequested").urns, empty,
                              message_id="x" * 36,
                              sent_time=1.8e9, destination=QUEUE,
                              headers=measurement_headers(1.8e9, 1.8e9, "00", 1, ""))
    return max(0, total - (len(envelope) - len(orjson.dumps(empty))))


# --- consuming halves: return (ready callback awaited by caller, wait for n -> end time) ---


async def consume_plain(settings: RabbitSettings, queue_name: str, n: int) -> Any:
    conn = await aio_pika.connect(settings.amqp_url)
    ch = await conn.channel()
    await ch.set_qos(prefetch_count=PREFETCH)
    queue = await ch.declare_queue(queue_name, durable=True,
                                   arguments={"x-queue-type": "quorum"})
    done = asyncio.Event()
    count = 0

    async def on_message(msg: aio_pika.abc.AbstractIncomingMessage) -> None:
        nonlocal count
        await msg.ack()
        count += 1
        if count == n:
            done.set()

    tag = await queue.consume(on_message)

    async def finished() -> float:
        await done.wait()
        end = time.time()
        await queue.cancel(tag)
        await conn.close()
        return end

    return finished


async def consume_stack(settings: RabbitSettings, queue_name: str, n: int) -> Any:
    inst = await ConsumerInstance(settings, PROFILE, queues=[QUEUE]).start()
    done = asyncio.Event()
    count = 0

    def on_record(record: object) -> None:
        nonlocal count
        count += 1
        if count == n:
            done.set()

    inst.completed.add_listener(lambda record: on_record(record))

    async def finished() -> float:
        await done.wait()
        await inst.stop()  # flushes the last records and acks
        return time.time()

    return finished


# --- publishing halves ---------------------------------------------------------------------


async def publish_plain(settings: RabbitSettings, queue_name: str, n: int,
                        in_flight: int) -> None:
    conn = await aio_pika.connect(settings.amqp_url)
    ch = await conn.channel(publisher_confirms=True)
    body = b"x" * 1000
    sem = asyncio.Semaphore(in_flight)

    async def one() -> None:
        async with sem:
            await ch.default_exchange.publish(
                aio_pika.Message(body, delivery_mode=aio_pika.DeliveryMode.PERSISTENT),
                routing_key=queue_name)

    await asyncio.gather(*[one() for _ in range(n)])
    await conn.close()


async def publish_stack(settings: RabbitSettings, queue_name: str, n: int,
                        in_flight: int) -> None:
    size = _payload_bytes_for_wire(1000)
    sem = asyncio.Semaphore(in_flight)
    # message bodies are the application's work, built once like the plain side's body;
    # the envelope, measurement headers and ordering stay per publish
    bodies = [messages.build(CONDUIT, "VideoGenerationRequested", task_id=f"r{k}", key_id=k,
                             request={"prompt": "x" * size}) for k in range(50)]
    async with Publisher(settings, PROFILE) as pub:
        async def one(i: int) -> None:
            async with sem:
                r = await pub.publish("VideoGenerationRequested", bodies[i % 50])
                assert r.ok, r

        await asyncio.gather(*[one(i) for i in range(n)])


SIDES = {"plain": (consume_plain, publish_plain), "stack": (consume_stack, publish_stack)}


async def prepare(settings: RabbitSettings, side: str) -> str:
    conn = await aio_pika.connect(settings.amqp_url)
    ch = await conn.channel()
    if side == "stack":
        await declare(ch, PROFILE, settings)
        name = QUEUE
    else:
        name = f"bench-plain-{uuid.uuid4().hex[:6]}"
        await ch.declare_queue(name, durable=True, arguments={"x-queue-type": "quorum"})
    await conn.close()
    return name


async def one_round(settings: RabbitSettings, side: str, n: int, in_flight: int,
                    processes: int) -> float:
    consume, publish = SIDES[side]
    queue_name = await prepare(settings, side)
    if processes == 1:
        finished = await consume(settings, queue_name, n)
        t0 = time.time()
        await publish(settings, queue_name, n, in_flight)
        end = await finished()
    else:
        proc = await asyncio.create_subprocess_exec(
            sys.executable, __file__, "--role", "consumer", "--side", side, "--queue",
            queue_name, "--messages", str(n), "--vhost", settings.vhost,
            stdout=asyncio.subprocess.PIPE)
        assert proc.stdout is not None
        assert (await proc.stdout.readline()).strip() == b"ready"
        t0 = time.time()
        await publish(settings, queue_name, n, in_flight)
        end = float((await proc.stdout.readline()).strip())
        await proc.wait()
    if side == "plain":
        conn = await aio_pika.connect(settings.amqp_url)
        await (await conn.channel()).queue_delete(queue_name)
        await conn.close()
    return n / (end - t0)


async def consumer_role(args: argparse.Namespace) -> int:
    settings = load_settings().with_vhost(args.vhost)
    finished = await SIDES[args.side][0](settings, args.queue, args.messages)
    print("ready", flush=True)
    print(f"{await finished():.6f}", flush=True)
    return 0


async def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--messages", type=int, default=15000)
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--in-flight", type=int, default=200)
    p.add_argument("--role", choices=["driver", "consumer"], default="driver")
    p.add_argument("--side", choices=list(SIDES), default="plain")
    p.add_argument("--queue", default="")
    p.add_argument("--vhost", default="")
    args = p.parse_args()
    if args.role == "consumer":
        return await consumer_role(args)
    base = load_settings()
    vhost = f"rs-bench-{uuid.uuid4().hex[:8]}"
    results: dict[tuple[int, str], list[float]] = {}
    async with Management(base) as mgmt:
        await mgmt.create_vhost(vhost)
        settings = base.with_vhost(vhost)
        try:
            for processes in (1, 2):
                for r in range(args.rounds):
                    rates = {}
                    for side in ("plain", "stack"):
                        rates[side] = await one_round(settings, side, args.messages,
                                                      args.in_flight, processes)
                        results.setdefault((processes, side), []).append(rates[side])
                    print(f"{processes} process(es), round {r + 1}: plain "
                          f"{rates['plain']:7.0f} msg/s   stack {rates['stack']:7.0f} msg/s"
                          f"   ratio {rates['stack'] / rates['plain']:.2f}", flush=True)
        finally:
            await mgmt.delete_vhost(vhost)
    print(f"\nmedian of {args.rounds} rounds, {args.messages} x 1 KB confirmed, prefetch "
          f"{PREFETCH}, {args.in_flight} publishes in flight:")
    for processes, label in ((1, "publisher + consumer in one process"),
                             (2, "publisher and consumer in two processes")):
        pm = statistics.median(results[(processes, "plain")])
        sm = statistics.median(results[(processes, "stack")])
        # the median of the rounds' own ratios: each round has both sides on the same machine
        ratios = sorted(s / p for s, p in zip(results[(processes, "stack")],
                                              results[(processes, "plain")], strict=True))
        ratio = statistics.median(ratios)
        print(f"  {label:42s} plain {pm:7.0f}  stack {sm:7.0f}  ratio {ratio:.2f}"
              f"  (rounds {ratios[0]:.2f}-{ratios[-1]:.2f}; target >= {TARGET[processes]})")
        kind = "RATIO" if processes == 2 else "FIGURE"  # the deployed layout is the target
        print(f"{kind} stack_ceiling_{processes}_process {ratio:.2f}"
              + (f" >= {TARGET[processes]}" if kind == "RATIO" else ""))
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
