"""End-to-end latency of the reference stack at the guide's load beside a raw client, in one
run: the e2e p99 of `rabbitscale run sustained_tasks` over each transport divided by the p99
of a raw aio-pika publisher and consumer at the same rate and size.

Raw: one process publishes 10 KB persistent messages with confirms to a quorum queue on an
even schedule at 1,000/min and consumes them (prefetch 25, an ack each, no work); e2e is the
consume time minus the intended send time, as the stack measures it. Stack: the whole path,
Locust -> (the API ->) the broker -> a consumer instance -> its completion record; the worst
queue's e2e p99 (the default mix's kinds do no work in profile conduit). Each side runs in a
vhost of its own; the sides alternate, one after another, so they see the same machine.

    python bench/e2e_ratio.py [--seconds 45] [--rounds 1]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import aio_pika
import numpy as np

from rabbitscale.broker import amqp
from rabbitscale.broker.management import Management
from rabbitscale.topology.settings import load_settings

RATE_PER_S = 1000 / 60
BODY = b"x" * 10_000
TARGET = 2.0
ROOT = Path(__file__).resolve().parents[1]


async def raw(seconds: float) -> float:
    """p99 e2e (ms) of a raw publisher and consumer at the guide's rate."""
    base = load_settings()
    vhost = f"rs-bench-{uuid.uuid4().hex[:8]}"
    async with Management(base) as mgmt:
        await mgmt.create_vhost(vhost)
        try:
            settings = base.with_vhost(vhost)
            conn = await amqp.connect(settings, "bench-raw", robust=False)
            pub = await conn.channel(publisher_confirms=True)
            sub = await conn.channel()
            await sub.set_qos(prefetch_count=25)
            queue = await sub.declare_queue("raw", durable=True,
                                            arguments={"x-queue-type": "quorum"})
            e2e: list[float] = []
            total = int(seconds * RATE_PER_S)

            async def on_message(msg: aio_pika.abc.AbstractIncomingMessage) -> None:
                e2e.append(time.time() - float(msg.headers["intended"]))  # type: ignore[arg-type]
                await msg.ack()

            await queue.consume(on_message)
            start = time.time() + 0.5

            async def send(i: int) -> None:
                intended = start + i / RATE_PER_S
                await asyncio.sleep(max(0.0, intended - time.time()))
                await pub.default_exchange.publish(aio_pika.Message(
                    BODY, headers={"intended": f"{intended:.6f}"},
                    delivery_mode=aio_pika.DeliveryMode.PERSISTENT), routing_key="raw")

            await asyncio.gather(*(send(i) for i in range(total)))
            deadline = time.time() + 10
            while len(e2e) < total and time.time() < deadline:
                await asyncio.sleep(0.1)
            await conn.close()
        finally:
            await mgmt.delete_vhost(vhost)
    return float(np.percentile(e2e, 99)) * 1000


def stack(transport: str, seconds: float) -> float:
    """Worst queue's e2e p99 (ms) of a run of the stack over ``transport``."""
    out = Path(tempfile.mkdtemp(prefix="rs-e2e-")) / transport
    subprocess.run([sys.executable, "-m", "rabbitscale", "run", "sustained_tasks",
                    "--transport", transport, "--duration", f"{seconds:g}s", "--out", str(out)],
                   cwd=ROOT, capture_output=True, text=True, timeout=seconds + 300)
    summary = json.loads((out / "summary.json").read_text())
    lat = summary["measured"]["latency_ms"]
    return max(float(m["e2e"]["p99_ms"]) for q, m in lat.items()
               if m.get("e2e", {}).get("count"))


async def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--seconds", type=float, default=45)
    p.add_argument("--rounds", type=int, default=1)
    args = p.parse_args()
    sides: dict[str, list[float]] = {"raw": [], "amqp": [], "http": []}
    for r in range(args.rounds):
        sides["raw"].append(await raw(args.seconds))
        for transport in ("amqp", "http"):
            sides[transport].append(stack(transport, args.seconds))
        print(f"round {r + 1}: " + "   ".join(f"{k} p99 {v[-1]:6.2f} ms"
                                              for k, v in sides.items()), flush=True)
    med = {k: statistics.median(v) for k, v in sides.items()}
    print(f"\ne2e p99 at 1,000 tasks/min, 10 KB, quorum queues, median of {args.rounds} "
          f"round(s) of {args.seconds:g}s: raw client {med['raw']:.2f} ms, stack over AMQP "
          f"{med['amqp']:.2f} ms, over HTTP {med['http']:.2f} ms")
    for transport in ("amqp", "http"):
        print(f"RATIO e2e_p99_{transport}_vs_raw {med[transport] / med['raw']:.2f} <= {TARGET}")
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
