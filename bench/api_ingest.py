"""The stack API's ingest path beside a minimal aiohttp handler doing the same confirmed
publish, in one run.

Both servers run as a process of their own with one confirm channel to the broker and accept
`POST /v1/webhook` bodies as the load generator sends them (JSON, ~1 KB). "stack" is
harness/api.py: bearer virtual-key auth, body validation, the WebhookDeliveryRequested
message, the MassTransit envelope with measurement headers, our Publisher (confirm, outcome
accounting), task bookkeeping, 202. "minimal" reads the body and publishes it as it is to the
same exchange with a confirm, then answers 202: the floor any handler pays. wrk (C, Debian's
package) drives both with the same script and connections, first once each as a warm-up that
is not counted (the first round was the stack's lowest in every run of 2026-12-01: 0.66, 0.67,
0.69 against medians of 0.83-0.92), then in rounds whose order alternates (minimal first, then
stack first), the queue purged between sides. The ratio stack / minimal of each round is what
to compare, its median over the rounds the figure (issue 9: >= 0.8); the CPU each server and
the broker spent per request is shown beside it, a steadier figure than throughput on a
shared machine.

    python bench/api_ingest.py [--seconds 8] [--rounds 5] [--warmup 3] [--connections 32]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import aio_pika
from aiohttp import web

from rabbitscale.broker import amqp
from rabbitscale.broker.declare import declare
from rabbitscale.broker.management import Management
from rabbitscale.broker.publisher import Publisher
from rabbitscale.harness.api import ApiState, create_app
from rabbitscale.harness.auth import VirtualKeys
from rabbitscale.topology.profile_file import apply_overrides, get_profile
from rabbitscale.topology.settings import RabbitSettings, load_settings

CONDUIT = get_profile("conduit")

SECRET = "bench-secret"
# no x-max-length: a round at several thousand requests/s would reach 50,000 and be nacked
PROFILE = apply_overrides(CONDUIT, {"webhook-delivery": {"queue_arguments": {
    "x-delivery-limit": 10}}})
QUEUE = "webhook-delivery"
TARGET = 0.8


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def serve(variant: str, settings: RabbitSettings, port: int) -> None:
    if variant == "stack":
        publisher = await Publisher(settings, PROFILE).start()
        app = create_app(ApiState(publisher, VirtualKeys(SECRET), Management(settings)))
    else:
        conn = await amqp.connect(settings, "bench-minimal", robust=False)
        channel = await conn.channel(publisher_confirms=True)
        exchange = await channel.get_exchange(
            CONDUIT.message("WebhookDeliveryRequested").exchange, ensure=False)

        async def enqueue(request: web.Request) -> web.Response:
            body = await request.read()
            await exchange.publish(aio_pika.Message(
                body, delivery_mode=aio_pika.DeliveryMode.PERSISTENT), routing_key="")
            return web.json_response({"status": "queued"}, status=202)

        app = web.Application()
        app.router.add_post("/v1/webhook", enqueue)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    print("ready", flush=True)
    await asyncio.Event().wait()


WRK_SCRIPT = """
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Authorization"] = "Bearer {key}"
wrk.body = '{body}'
"""


def cpu_s(pid: int) -> float:
    """A process's CPU time so far (user + system), from /proc."""
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def broker_pid() -> int | None:
    """The local broker's VM, to charge each variant its share of the broker's CPU."""
    try:
        out = subprocess.run(["rabbitmqctl", "eval", "list_to_integer(os:getpid())."],
                             capture_output=True, text=True, timeout=30)
        return int(out.stdout.strip())
    except (OSError, ValueError, subprocess.SubprocessError):
        return None


def wrk(url: str, seconds: float, connections: int, script: Path) -> tuple[float, int]:
    """(requests/s, non-2xx responses)"""
    done = subprocess.run(["wrk", "-t1", f"-c{connections}", f"-d{seconds:g}s", "-s",
                           str(script), url], capture_output=True, text=True, check=True)
    rate = float(re.search(r"Requests/sec:\s+([\d.]+)", done.stdout).group(1))  # type: ignore[union-attr]
    bad = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", done.stdout)
    return rate, int(bad.group(1)) if bad else 0


async def purge(settings: RabbitSettings) -> None:
    conn = await amqp.connect(settings, "bench-purge", robust=False)
    channel = await conn.channel()
    queue = await channel.declare_queue(QUEUE, passive=True)
    await queue.purge()
    await conn.close()


async def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--seconds", type=float, default=8,
                   help="seconds of wrk per side and round (default: %(default)s)")
    p.add_argument("--rounds", type=int, default=5,
                   help="rounds; the median of their stack/minimal ratios is judged "
                        "(default: %(default)s)")
    p.add_argument("--warmup", type=float, default=3,
                   help="seconds of wrk per side before the rounds, not counted "
                        "(default: %(default)s)")
    p.add_argument("--connections", type=int, default=32,
                   help="wrk's open connections (default: %(default)s)")
    p.add_argument("--role", choices=["driver", "server"], default="driver",
                   help=argparse.SUPPRESS)
    p.add_argument("--variant", choices=["stack", "minimal"], default="stack",
                   help=argparse.SUPPRESS)
    p.add_argument("--port", type=int, default=0, help=argparse.SUPPRESS)
    p.add_argument("--vhost", default="", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.role == "server":
        await serve(args.variant, load_settings().with_vhost(args.vhost), args.port)
        return 0
    if shutil.which("wrk") is None:
        print("wrk is not installed (Debian: apt-get install wrk)", file=sys.stderr)
        return 2
    base = load_settings()
    vhost = f"rs-bench-{uuid.uuid4().hex[:8]}"
    body = json.dumps({"url": "http://127.0.0.1:9/hook", "event": "TaskCompleted",
                       "task_id": "t-1", "payload": {"data": "x" * 900}})
    tmp = Path(tempfile.mkdtemp(prefix="rs-ingest-"))
    script = tmp / "post.lua"
    script.write_text(WRK_SCRIPT.format(key=VirtualKeys(SECRET).key_for(1), body=body))
    results: dict[str, list[float]] = {"stack": [], "minimal": []}
    # CPU microseconds per request: the server's own and the broker's, per variant
    cpu: dict[str, list[tuple[float, float]]] = {"stack": [], "minimal": []}
    beam = broker_pid()
    servers: list[subprocess.Popen[str]] = []
    async with Management(base) as mgmt:
        await mgmt.create_vhost(vhost)
        settings = base.with_vhost(vhost)
        try:
            conn = await amqp.connect(settings, "bench-declare", robust=False)
            await declare(await conn.channel(), PROFILE, settings)
            await conn.close()
            ports = {}
            pids = {}
            for variant in ("stack", "minimal"):
                ports[variant] = _free_port()
                proc = subprocess.Popen(
                    [sys.executable, __file__, "--role", "server", "--variant", variant,
                     "--port", str(ports[variant]), "--vhost", vhost],
                    stdout=subprocess.PIPE, text=True)
                servers.append(proc)
                pids[variant] = proc.pid
                assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"
            for variant in ("minimal", "stack"):
                if args.warmup > 0:
                    wrk(f"http://127.0.0.1:{ports[variant]}/v1/webhook", args.warmup,
                        args.connections, script)
                    await purge(settings)
            for r in range(args.rounds):
                shown = {}
                order = ("minimal", "stack") if r % 2 == 0 else ("stack", "minimal")
                for variant in order:
                    before = cpu_s(pids[variant]), cpu_s(beam) if beam else 0.0
                    rate, bad = wrk(f"http://127.0.0.1:{ports[variant]}/v1/webhook",
                                    args.seconds, args.connections, script)
                    if bad:
                        print(f"{variant}: {bad} non-2xx responses", file=sys.stderr)
                        return 1
                    results[variant].append(rate)
                    done = rate * args.seconds
                    cpu[variant].append(((cpu_s(pids[variant]) - before[0]) / done * 1e6,
                                         (cpu_s(beam) - before[1]) / done * 1e6 if beam else 0))
                    shown[variant] = f"{variant:7s} {rate:7.0f} req/s"
                    await purge(settings)
                    time.sleep(0.5)
                ratio = results["stack"][-1] / results["minimal"][-1]
                print(f"round {r + 1} ({order[0]} first): {shown['minimal']}   "
                      f"{shown['stack']}   ratio {ratio:.2f}", flush=True)
        finally:
            for proc in servers:
                proc.terminate()
                proc.wait(10)
            await mgmt.delete_vhost(vhost)
    # each round measures both sides back to back on the same machine, so the ratio is taken
    # per round and the median of those is the figure: a round the machine slowed moves both
    # sides, which the ratio of the two sides' medians would not cancel
    ratios = sorted(s / m for s, m in zip(results["stack"], results["minimal"], strict=True))
    sm, mm = statistics.median(results["stack"]), statistics.median(results["minimal"])
    ratio = statistics.median(ratios)
    print(f"\nmedian of {args.rounds} rounds of {args.seconds:g}s, wrk 1 thread x "
          f"{args.connections} connections, ~1 KB JSON bodies, confirmed persistent publishes:")
    print(f"  minimal {mm:7.0f} req/s   stack {sm:7.0f} req/s   ratio {ratio:.2f} (median of the "
          f"rounds' ratios {', '.join(f'{r:.2f}' for r in ratios)}; target >= {TARGET})")
    for variant in ("minimal", "stack"):
        server = statistics.median(c[0] for c in cpu[variant])
        broker = statistics.median(c[1] for c in cpu[variant])
        print(f"  {variant:7s} CPU per request: server {server:5.0f} us"
              + (f", broker {broker:5.0f} us" if beam else " (broker's pid not found)"))
    ratio_cpu = statistics.median(c[0] for c in cpu["minimal"]) / statistics.median(
        c[0] for c in cpu["stack"])
    print(f"  server CPU per request, minimal / stack: {ratio_cpu:.2f}")
    print(f"FIGURE api_ingest_server_cpu_ratio {ratio_cpu:.2f}")
    print(f"RATIO api_ingest {ratio:.2f} >= {TARGET}")
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
