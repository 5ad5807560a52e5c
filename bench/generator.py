"""How much open-model load one Locust worker process drives, beside wrk's closed-loop ceiling
against the same handler, in one run.

Open model: tasks are sent on a schedule (scenarios/pacing.py), so a generator "holds" a rate
only while it sends on time: here, over a step, the arrivals within 1% of the schedule and the
p99 send delay (actual - intended) at most 5 ms. The rate steps up x1.25 from --start until a
step fails; the highest that held is the process's capacity. Two transports:

- http: the sustained_tasks locustfile (the run's own, FastHttpUser) against a minimal aiohttp
  handler in a process of its own that answers 202 with a task id at once; wrk (1 thread, 32
  connections) measures the same handler's closed-loop ceiling in the same run;
- amqp: the same locustfile publishing straight to the broker with confirms (pika), in a vhost
  of its own, into the conduit profile's queues (1 KB bodies; purged after every step).

The ratio generator / wrk says how close one generator process comes to what the handler can
take. The README turns the capacity into the workers a rate needs.

    python bench/generator.py [--step-seconds 10] [--start 200]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

from aiohttp import web

from rabbitscale.broker import amqp
from rabbitscale.broker.declare import declare
from rabbitscale.broker.management import Management
from rabbitscale.core import rundir
from rabbitscale.engine.load import LoadSpec, LocustProcesses, start_delay_s
from rabbitscale.scenarios import contract, registry
from rabbitscale.scenarios.schedule import Rates
from rabbitscale.topology.profile_file import get_profile, profile_env
from rabbitscale.topology.settings import load_settings, settings_env

PROFILE = get_profile("conduit")
MIX = "spend=1"  # a small body: the generator's cost, not the payload's
RATE_ERROR_MAX = 0.01
SEND_DELAY_P99_MAX_MS = 5.0


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def serve_minimal(port: int) -> None:
    async def accept(request: web.Request) -> web.Response:
        await request.read()
        return web.json_response({"task_id": uuid.uuid4().hex, "status": "queued"}, status=202)

    app = web.Application()
    app.router.add_route("POST", "/{tail:.*}", accept)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    print("ready", flush=True)
    await asyncio.Event().wait()


async def step(transport: str, rate: float, seconds: float, url: str, env: dict[str, str],
               out: Path) -> tuple[bool, float, float]:
    """(held, arrivals / scheduled, p99 send delay ms) of one step."""
    out.mkdir(parents=True, exist_ok=True)
    rates = Rates(rate, 1.0, (1.0,))
    spec = LoadSpec(scenario=registry.SUSTAINED_TASKS, duration_s=seconds, rates=rates,
                    payload="1KB", transport=transport, task_mix=MIX,
                    users=registry.SUSTAINED_TASKS.users(rates))
    start_at = time.time() + start_delay_s(spec)
    procs = LocustProcesses(spec, out, url, {
        **env, contract.ENV_API_URL: url, contract.ENV_RUN_DIR: str(out),
        contract.RUN_NAME.env: out.name, contract.START_AT.env: f"{start_at:.3f}"})
    try:
        await procs.start()
        error = await procs.wait()
    finally:
        await procs.close()
    if error:
        raise RuntimeError(f"{transport} at {rate:g}/s: {error}")
    summary = json.loads((out / rundir.LOCUST_HDR_DIR / "summary.json").read_text())
    sends = summary.get("tasks_send_delay", {})
    ratio = float(sends.get("count", 0)) / (rate * seconds)
    p99 = float(sends.get("p99_ms", float("inf")))
    return abs(1 - ratio) <= RATE_ERROR_MAX and p99 <= SEND_DELAY_P99_MAX_MS, ratio, p99


async def capacity(transport: str, start: float, seconds: float, url: str,
                   env: dict[str, str], out: Path, after_step: object = None) -> float:
    rate, held = start, 0.0
    for i in range(1, 20):
        ok, ratio, p99 = await step(transport, rate, seconds, url, env, out / f"{i:02d}")
        print(f"  {transport:4s} {rate:8.0f}/s  sent {ratio:6.1%} of the schedule, p99 send "
              f"delay {p99:6.2f} ms  {'holds' if ok else 'fails'}", flush=True)
        if callable(after_step):
            await after_step()
        if not ok:
            break
        held, rate = rate, rate * 1.25
    return held


def wrk_ceiling(url: str, seconds: float) -> float:
    script = Path(tempfile.mkdtemp(prefix="rs-gen-")) / "post.lua"
    script.write_text('wrk.method = "POST"\nwrk.headers["Content-Type"] = "application/json"\n'
                      'wrk.body = \'{"amount": 1}\'\n')
    done = subprocess.run(["wrk", "-t1", "-c32", f"-d{seconds:g}s", "-s", str(script), url],
                          capture_output=True, text=True, check=True)
    found = re.search(r"Requests/sec:\s+([\d.]+)", done.stdout)
    assert found, done.stdout
    return float(found.group(1))


async def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--step-seconds", type=float, default=10)
    p.add_argument("--start", type=float, default=200, help="first rate, tasks/s")
    p.add_argument("--serve", type=int, default=0, help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.serve:
        await serve_minimal(args.serve)
        return 0
    if shutil.which("wrk") is None:
        print("wrk is not installed (Debian: apt-get install wrk)", file=sys.stderr)
        return 2
    port = _free_port()
    server = subprocess.Popen([sys.executable, __file__, "--serve", str(port)],
                              stdout=subprocess.PIPE, text=True)
    out = Path(tempfile.mkdtemp(prefix="rs-generator-"))
    base = load_settings()
    vhost = f"rs-bench-{uuid.uuid4().hex[:8]}"
    try:
        assert server.stdout is not None and server.stdout.readline().strip() == "ready"
        url = f"http://127.0.0.1:{port}"
        env = {**os.environ, contract.API_SECRET.env: "bench", **profile_env(PROFILE),
               contract.WEBHOOK_TARGET.env: url + "/hook"}
        ceiling = wrk_ceiling(url + "/v1/tasks", args.step_seconds)
        print(f"wrk closed loop against the minimal handler: {ceiling:,.0f} req/s", flush=True)
        http = await capacity("http", args.start, args.step_seconds, url, env, out / "http")
        async with Management(base) as mgmt:
            await mgmt.create_vhost(vhost)
            settings = base.with_vhost(vhost)
            conn = await amqp.connect(settings, "bench-declare", robust=False)
            channel = await conn.channel()
            await declare(channel, PROFILE, settings)

            async def purge() -> None:
                for ep in PROFILE.endpoints:
                    queue = await channel.declare_queue(ep.queue, passive=True)
                    await queue.purge()

            try:
                amqp_rate = await capacity(
                    "amqp", args.start, args.step_seconds, url,
                    {**env, **settings_env(settings)}, out / "amqp", purge)
            finally:
                await conn.close()
                await mgmt.delete_vhost(vhost)
    finally:
        server.terminate()
        server.wait(10)
        shutil.rmtree(out, ignore_errors=True)
    print(f"\none Locust worker process, open model (sent within {RATE_ERROR_MAX:.0%} of the "
          f"schedule, p99 send delay <= {SEND_DELAY_P99_MAX_MS:g} ms), {args.step_seconds:g}s "
          f"steps x1.25:")
    print(f"  http {http:8,.0f} tasks/s   wrk's closed-loop ceiling {ceiling:8,.0f} req/s   "
          f"ratio {http / ceiling:.2f}")
    print(f"  amqp {amqp_rate:8,.0f} tasks/s (confirmed publishes, pika)")
    print(f"FIGURE generator_http_tasks_per_s {http:.0f}")
    print(f"FIGURE generator_amqp_tasks_per_s {amqp_rate:.0f}")
    print(f"FIGURE generator_http_vs_wrk {http / ceiling:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
