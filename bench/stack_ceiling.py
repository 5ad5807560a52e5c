"""End-to-end ceiling of the reference stack beside a plain aio-pika loop, in one run.

Both sides: confirmed persistent publishes of 1 KB bodies into a quorum queue, a consumer
with prefetch 25 acking each message, no work. The stack side goes through our Publisher
(pool, envelope, measurement headers) and a ConsumerInstance (middleware, completion records
confirmed before each ack). Rounds alternate so both sides see the same broker conditions.

    python bench/stack_ceiling.py [--messages 5000] [--rounds 3] [--in-flight 200]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import time
import uuid
from pathlib import Path

import aio_pika

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from harness import messages  # noqa: E402
from harness.config import RabbitSettings, load_settings  # noqa: E402
from harness.consumer import ConsumerInstance  # noqa: E402
from harness.management import Management  # noqa: E402
from harness.publisher import Publisher  # noqa: E402
from harness.topology import CONDUIT, apply_overrides, declare  # noqa: E402

QUEUE = "video-generation-events"
PREFETCH = 25


async def plain_loop(settings: RabbitSettings, n: int, in_flight: int) -> float:
    conn = await aio_pika.connect(settings.amqp_url)
    pub_ch = await conn.channel(publisher_confirms=True)
    con_ch = await conn.channel()
    await con_ch.set_qos(prefetch_count=PREFETCH)
    name = f"bench-plain-{uuid.uuid4().hex[:6]}"
    queue = await con_ch.declare_queue(name, durable=True,
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
    body = b"x" * 1000
    sem = asyncio.Semaphore(in_flight)

    async def one() -> None:
        async with sem:
            await pub_ch.default_exchange.publish(
                aio_pika.Message(body, delivery_mode=aio_pika.DeliveryMode.PERSISTENT),
                routing_key=name)

    t0 = time.perf_counter()
    await asyncio.gather(*[one() for _ in range(n)])
    await done.wait()
    elapsed = time.perf_counter() - t0
    await queue.cancel(tag)
    await queue.delete(if_unused=False, if_empty=False)
    await conn.close()
    return n / elapsed


async def stack_path(settings: RabbitSettings, n: int, in_flight: int) -> float:
    profile = apply_overrides(CONDUIT, {QUEUE: {"prefetch": PREFETCH, "retry": "none"}})
    conn = await aio_pika.connect(settings.amqp_url)
    await declare(await conn.channel(), profile)
    inst = await ConsumerInstance(settings, profile, queues=[QUEUE]).start()
    done = asyncio.Event()
    count = 0

    def on_record(record: object) -> None:
        nonlocal count
        count += 1
        if count == n:
            done.set()

    inst.completed.add_listener(lambda record: on_record(record))
    sem = asyncio.Semaphore(in_flight)
    async with Publisher(settings, profile) as pub:
        async def one(i: int) -> None:
            async with sem:
                r = await pub.publish("VideoGenerationRequested",
                                      messages.video_generation(str(i), str(i % 50),
                                                                size_bytes=1000))
                assert r.ok, r

        t0 = time.perf_counter()
        await asyncio.gather(*[one(i) for i in range(n)])
        await done.wait()
        # the last acks follow their (confirmed) completion records
        while inst.endpoints[0].in_flight:
            await asyncio.sleep(0.001)
        elapsed = time.perf_counter() - t0
    await inst.stop()
    await conn.close()
    return n / elapsed


async def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--messages", type=int, default=5000)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--in-flight", type=int, default=200)
    args = p.parse_args()
    base = load_settings()
    vhost = f"rs-bench-{uuid.uuid4().hex[:8]}"
    async with Management(base) as mgmt:
        await mgmt.create_vhost(vhost)
        settings = base.with_vhost(vhost)
        plain: list[float] = []
        stack: list[float] = []
        try:
            for r in range(args.rounds):
                plain.append(await plain_loop(settings, args.messages, args.in_flight))
                stack.append(await stack_path(settings, args.messages, args.in_flight))
                print(f"round {r + 1}: plain {plain[-1]:8.0f} msg/s   "
                      f"stack {stack[-1]:8.0f} msg/s   ratio {stack[-1] / plain[-1]:.2f}",
                      flush=True)
        finally:
            await mgmt.delete_vhost(vhost)
    pm, sm = statistics.median(plain), statistics.median(stack)
    print(f"\nmedian of {args.rounds} rounds, {args.messages} x 1 KB confirmed, "
          f"prefetch {PREFETCH}, {args.in_flight} publishes in flight:")
    print(f"  plain aio-pika loop : {pm:8.0f} msg/s")
    print(f"  rabbitscale stack   : {sm:8.0f} msg/s")
    print(f"  ratio stack/plain   : {sm / pm:.2f}  (target >= 0.60)")
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
