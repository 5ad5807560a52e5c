"""End-to-end latency of the reference stack at the guide's load beside a raw client, in one
run: the e2e p99 of `rabbitscale run sustained_tasks` over each transport divided by the p99
of a raw aio-pika publisher and consumer at the same rate and size.

Raw: one process publishes 10 KB persistent messages with confirms to a quorum queue on an
even schedule at 1,000/min and consumes them (prefetch 25, an ack each, no work); e2e is the
consume time minus the intended send time, as the stack measures it. Stack: the whole path,
Locust -> (the API ->) the broker -> a consumer instance -> its completion record; the
e2e p99 over every task of the rate, as the raw side measures (merged from the run's HDR
histograms; the default mix's kinds do no work in profile conduit), the worst queue's shown
beside it. Each side runs in a vhost of its own; the sides alternate, one after another, so
they see the same machine; the median of the rounds is judged (a 45 s round's p99 rests on a
handful of messages: one hiccup of the machine moves it).

    python bench/e2e_ratio.py [--seconds 45] [--rounds 3]
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
from rabbitscale.core import latency, rundir
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


def stack(transport: str, seconds: float) -> tuple[float, float]:
    """(e2e p99 over all the stack's tasks, the worst queue's e2e p99), ms, of a run of the
    stack over ``transport``: the first is the raw client's measure (every message of the
    rate), the second the stricter view, shown beside it."""
    out = Path(tempfile.mkdtemp(prefix="rs-e2e-")) / transport
    subprocess.run([sys.executable, "-m", "rabbitscale", "run", "sustained_tasks",
                    "--transport", transport, "--duration", f"{seconds:g}s", "--out", str(out)],
                   cwd=ROOT, capture_output=True, text=True, timeout=seconds + 300)
    summary = json.loads((out / "summary.json").read_text())
    lat = summary["measured"]["latency_ms"]
    worst = max(float(m["e2e"]["p99_ms"]) for q, m in lat.items()
                if m.get("e2e", {}).get("count"))
    merged = latency.merge([f.read_text().strip()
                            for f in sorted((out / rundir.HDR_DIR).glob("*.e2e.hdr"))])
    return merged.get_value_at_percentile(99) / 1000, worst


async def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--seconds", type=float, default=45,
                   help="seconds of load per side and round (default: %(default)s)")
    p.add_argument("--rounds", type=int, default=3,
                   help="rounds; the median p99 of each side is judged (default: %(default)s)")
    args = p.parse_args()
    sides: dict[str, list[float]] = {"raw": [], "amqp": [], "http": []}
    worst: dict[str, list[float]] = {"amqp": [], "http": []}
    for r in range(args.rounds):
        sides["raw"].append(await raw(args.seconds))
        for transport in ("amqp", "http"):
            p99, worst_q = stack(transport, args.seconds)
            sides[transport].append(p99)
            worst[transport].append(worst_q)
        print(f"round {r + 1}: " + "   ".join(f"{k} p99 {v[-1]:6.2f} ms"
                                              for k, v in sides.items())
              + "   (worst queue: " + ", ".join(f"{k} {v[-1]:.2f} ms" for k, v in worst.items())
              + ")", flush=True)
    med = {k: statistics.median(v) for k, v in sides.items()}
    print(f"\ne2e p99 at 1,000 tasks/min, 10 KB, quorum queues, median of {args.rounds} "
          f"round(s) of {args.seconds:g}s: raw client {med['raw']:.2f} ms, stack over AMQP "
          f"{med['amqp']:.2f} ms, over HTTP {med['http']:.2f} ms (every task of the rate, as "
          f"the raw client); the stack's worst queue alone: AMQP "
          f"{statistics.median(worst['amqp']):.2f} ms, "
          f"HTTP {statistics.median(worst['http']):.2f} ms")
    for transport in ("amqp", "http"):
        print(f"RATIO e2e_p99_{transport}_vs_raw {med[transport] / med['raw']:.2f} <= {TARGET}")
        print(f"FIGURE e2e_p99_{transport}_worst_queue_vs_raw "
              f"{statistics.median(worst[transport]) / med['raw']:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
