"""The broker's confirmed-publish ceiling with 1 and with 3 quorum replicas, side by side in
one run, on a local 3-node cluster of this machine's RabbitMQ (`broker/cluster.py`).

Each round publishes the same number of 10 KB persistent messages with publisher confirms
(IN_FLIGHT outstanding) to a fresh quorum queue with ``x-quorum-initial-group-size`` 1, then to
one with 3, alternating which goes first; queues are deleted after each round. All three nodes
share this machine's cores and disk, so the ratio overstates what replication costs on three
machines (broker-facts.md); it is what the broker model's ``replica_ceiling_factor`` takes on
this machine. The absolute rates are printed for the record, never asserted.

    python bench/replicas.py [--messages 20000] [--rounds 3] [--size 10KB]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import aio_pika

from rabbitscale.broker import cluster
from rabbitscale.core.units import parse_size_bytes

IN_FLIGHT = 500
PORT_OFFSET = 600  # a cluster of its own: never a developer's or the tests'


async def publish_round(url: str, queue: str, replicas: int, messages: int, body: bytes
                        ) -> float:
    """Confirmed messages per second into a new quorum queue with ``replicas`` members."""
    conn = await aio_pika.connect(url)
    try:
        channel = await conn.channel(publisher_confirms=True)
        q = await channel.declare_queue(queue, durable=True, arguments={
            "x-queue-type": "quorum", "x-quorum-initial-group-size": replicas})
        await asyncio.sleep(1.0)  # the members elect a leader
        sem = asyncio.Semaphore(IN_FLIGHT)

        async def one() -> None:
            async with sem:
                await channel.default_exchange.publish(
                    aio_pika.Message(body, delivery_mode=aio_pika.DeliveryMode.PERSISTENT),
                    routing_key=queue)

        t0 = time.perf_counter()
        await asyncio.gather(*(one() for _ in range(messages)))
        rate = messages / (time.perf_counter() - t0)
        await q.delete(if_unused=False, if_empty=False)
        return rate
    finally:
        await conn.close()


async def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--messages", type=int, default=20_000)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--size", default="10KB")
    args = ap.parse_args()
    body = b"x" * parse_size_bytes(args.size)
    parent = Path(tempfile.mkdtemp(prefix="rs-bench-replicas-"))
    os.chmod(parent, 0o755)  # the server runs as the rabbitmq user
    base = parent / "cluster"
    c = cluster.up(3, base, port_offset=PORT_OFFSET, say=lambda s: print(s, flush=True))
    url = f"amqp://guest:guest@{c.nodes[0].ip}:{c.nodes[0].amqp}/"
    rates: dict[int, list[float]] = {1: [], 3: []}
    try:
        for r in range(args.rounds):
            order = (1, 3) if r % 2 == 0 else (3, 1)
            for replicas in order:
                rate = await publish_round(url, f"bench-replicas-{replicas}-{r}", replicas,
                                           args.messages, body)
                rates[replicas].append(rate)
                print(f"round {r + 1}: {replicas} replica(s): {rate:,.0f} msg/s "
                      f"({rate * len(body) / 1e6:.1f} MB/s)", flush=True)
    finally:
        cluster.down(base, quiet=True)
        parent.rmdir()
    one, three = statistics.median(rates[1]), statistics.median(rates[3])
    per_round = [b / a for a, b in zip(rates[1], rates[3], strict=True)]
    print(f"\n{'replicas':>8} {'median msg/s':>14} {'MB/s':>8}")
    print(f"{1:>8} {one:>14,.0f} {one * len(body) / 1e6:>8.1f}")
    print(f"{3:>8} {three:>14,.0f} {three * len(body) / 1e6:>8.1f}")
    print(f"ratio 3/1 (median): {three / one:.2f}; per round "
          f"{', '.join(f'{x:.2f}' for x in per_round)}")
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
