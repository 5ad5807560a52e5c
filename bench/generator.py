"""How much open-model load one Locust worker process of rabbitscale drives, beside what plain
clients do against the same targets, side by side in one run.

Open model: tasks are sent on a schedule (scenarios/pacing.py), so a generator "holds" a rate
only while it sends on time: over a step, arrivals within 1% of the schedule and the p99 send
delay (actual - intended) at most 5 ms. Ours: the run's own locustfile (the real task bodies
of the conduit profile at 10 KB, headers, HDR recording, pacing), the rate stepped x1.15 from
a third of the ceiling until a step fails twice; the highest that held is its capacity. The
targets are not the bottleneck:

- http: nginx (Debian's package, started here on loopback) answering every POST with a fixed
  202; the ceiling is plain Locust's closed loop (FastHttpUser, 50 users, the same 10 KB JSON
  bodies) against it, in the same round;
- amqp: the broker, a classic queue that a consumer in this process empties as it fills; the
  ceiling is a plain aio-pika publishing loop in one process (32 publishes in flight, each
  awaiting its confirm, as ours await theirs), the same 10 KB bodies.

Each round measures the ceiling and ours back to back; the ratios are the median of the
rounds' ratios. `make bench-check` judges both at 0.5 (issue 33).

    python bench/generator.py [--rounds 3] [--step-seconds 10]
"""

from __future__ import annotations

import argparse
import asyncio
import csv
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

from rabbitscale.broker import amqp
from rabbitscale.broker.declare import declare
from rabbitscale.broker.management import Management
from rabbitscale.core import rundir
from rabbitscale.engine.load import LoadSpec, drive
from rabbitscale.scenarios import contract, registry
from rabbitscale.scenarios.schedule import Rates
from rabbitscale.topology.profile_file import build, get_profile, profile_env
from rabbitscale.topology.settings import load_settings, settings_env

HTTP_PROFILE = get_profile("conduit")
HTTP_MIX = "video=1,image=1"  # the guide's task bodies over their routes
PAYLOAD = "10KB"
RATE_ERROR_MAX = 0.01
SEND_DELAY_P99_MAX_MS = 5.0
STEP = 1.15
TARGET_RATIO = 0.5
NGINX = shutil.which("nginx") or "/usr/sbin/nginx"
# the AMQP side: one message type into one classic queue, no route (published straight)
AMQP_PROFILE = {"name": "bench-generator", "namespace": "Bench", "queue_type": "classic",
                "messages": {"Job": {"body": {"id": "${task_id}", "padding": "${pad}"}}},
                "endpoints": {"bench-jobs": {"consumes": ["Job"]}},
                "tasks": {"job": {"message": "Job", "weight": 1}}}
PLAIN_LOCUSTFILE = '''
import json
from locust import constant, task
from locust.contrib.fasthttp import FastHttpUser

BODY = json.dumps({"prompt": "x" * 10000, "model": "bench"})
HEADERS = {"Content-Type": "application/json", "Authorization": "Bearer plain"}


class Plain(FastHttpUser):
    wait_time = constant(0)

    @task
    def post(self):
        self.client.post("/v1/tasks", data=BODY, headers=HEADERS)
'''


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start_nginx(work: Path, port: int) -> subprocess.Popen[bytes]:
    """nginx in the foreground, one process, answering 202 to everything on 127.0.0.1:port."""
    conf = work / "nginx.conf"
    conf.write_text(f"""daemon off;
master_process off;
worker_processes 1;
error_log {work}/error.log warn;
pid {work}/nginx.pid;
events {{ worker_connections 4096; }}
http {{
  access_log off;
  client_body_temp_path {work}/body;
  proxy_temp_path {work}/proxy;
  fastcgi_temp_path {work}/fastcgi;
  uwsgi_temp_path {work}/uwsgi;
  scgi_temp_path {work}/scgi;
  server {{
    listen 127.0.0.1:{port};
    client_max_body_size 64m;
    client_body_buffer_size 128k;
    location / {{
      default_type application/json;
      return 202 '{{"task_id":"t-1","status":"queued"}}';
    }}
  }}
}}
""")
    proc = subprocess.Popen([NGINX, "-p", str(work), "-c", str(conf)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return proc
        time.sleep(0.05)
    proc.kill()
    raise RuntimeError(f"nginx did not listen on {port}: {(work / 'error.log').read_text()}")


def plain_locust(url: str, seconds: float, work: Path) -> float:
    """Plain Locust's closed-loop requests per second against ``url``."""
    locustfile = work / "plain_locustfile.py"
    locustfile.write_text(PLAIN_LOCUSTFILE)
    prefix = work / f"plain-{uuid.uuid4().hex[:6]}"
    subprocess.run([sys.executable, "-m", "locust", "-f", str(locustfile), "--headless",
                    "-u", "50", "-r", "50", "-t", f"{seconds:g}s", "--host", url, "--csv",
                    str(prefix), "--only-summary", "--loglevel", "WARNING"],
                   check=True, capture_output=True, cwd=work)
    with open(f"{prefix}_stats.csv", newline="") as f:
        total = next(r for r in csv.DictReader(f) if r["Name"] == "Aggregated")
    return float(total["Requests/s"])


async def plain_publisher(url: str, exchange: str, seconds: float) -> float:
    """Confirmed publishes per second of a plain aio-pika loop, 32 in flight."""
    import aio_pika

    conn = await aio_pika.connect(url)
    channel = await conn.channel(publisher_confirms=True)
    target = await channel.get_exchange(exchange, ensure=False)
    body = json.dumps({"padding": "x" * 10000}).encode()
    done, stop = 0, time.monotonic() + seconds

    async def loop() -> None:
        nonlocal done
        while time.monotonic() < stop:
            await target.publish(aio_pika.Message(body, delivery_mode=2), routing_key="")
            done += 1

    t0 = time.monotonic()
    await asyncio.gather(*(loop() for _ in range(32)))
    rate = done / (time.monotonic() - t0)
    await conn.close()
    return rate


async def step(transport: str, rate: float, seconds: float, url: str, env: dict[str, str],
               out: Path, mix: str) -> tuple[bool, float, float]:
    """(held, arrivals / scheduled, p99 send delay ms) of one step of ours."""
    out.mkdir(parents=True, exist_ok=True)
    rates = Rates(rate, 1.0, (1.0,))
    spec = LoadSpec(scenario=registry.SUSTAINED_TASKS, duration_s=seconds, rates=rates,
                    payload=PAYLOAD, transport=transport, task_mix=mix,
                    users=registry.SUSTAINED_TASKS.users(rates))
    error = await drive(spec, out, url, env)
    if error:
        raise RuntimeError(f"{transport} at {rate:g}/s: {error}")
    summary = json.loads((out / rundir.LOCUST_HDR_DIR / "summary.json").read_text())
    sends = summary.get("tasks_send_delay", {})
    ratio = float(sends.get("count", 0)) / (rate * seconds)
    p99 = float(sends.get("p99_ms", float("inf")))
    return abs(1 - ratio) <= RATE_ERROR_MAX and p99 <= SEND_DELAY_P99_MAX_MS, ratio, p99


async def ours(transport: str, start: float, seconds: float, url: str, env: dict[str, str],
               out: Path, mix: str) -> float:
    """The highest rate that held, stepping x STEP from ``start``; a step that fails is run
    again once (one stall of a shared machine is not the generator's limit)."""
    rate, held, i = start, 0.0, 0
    while True:
        for attempt in (1, 2):
            i += 1
            ok, ratio, p99 = await step(transport, rate, seconds, url, env, out / f"{i:02d}",
                                        mix)
            print(f"    ours {transport:4s} {rate:8.0f}/s  sent {ratio:6.1%} of the schedule, "
                  f"p99 send delay {p99:7.2f} ms  {'holds' if ok else 'fails'}"
                  + (" (again)" if attempt == 2 else ""), flush=True)
            if ok:
                break
        if not ok:
            return held
        held, rate = rate, rate * STEP


async def http_round(seconds: float, work: Path, url: str) -> tuple[float, float]:
    env = {**os.environ, contract.API_SECRET.env: "bench", **profile_env(HTTP_PROFILE),
           contract.WEBHOOK_TARGET.env: url + "/hook"}
    ceiling = plain_locust(url, seconds, work)
    print(f"  plain Locust (FastHttpUser, 50 users, closed loop) against nginx: "
          f"{ceiling:,.0f} req/s", flush=True)
    return ceiling, await ours("http", ceiling / 3, seconds, url, env, work / "http", HTTP_MIX)


async def _drop(message: object) -> None:
    """The fast consumer: every message taken and let go."""


async def amqp_round(seconds: float, work: Path, url: str) -> tuple[float, float]:
    profile = build(AMQP_PROFILE, "bench")
    base = load_settings()
    vhost = f"rs-bench-{uuid.uuid4().hex[:8]}"
    async with Management(base) as mgmt:
        await mgmt.create_vhost(vhost)
        settings = base.with_vhost(vhost)
        conn = await amqp.connect(settings, "bench-consumer", robust=False)
        try:
            channel = await conn.channel()
            await declare(channel, profile, settings)
            queue = await channel.declare_queue("bench-jobs", passive=True)
            await queue.consume(_drop, no_ack=True)  # a fast consumer
            exchange = profile.message("Job").exchange
            ceiling = await plain_publisher(settings.amqp_url, exchange, seconds)
            print(f"  plain aio-pika publisher (32 confirmed publishes in flight): "
                  f"{ceiling:,.0f} msg/s", flush=True)
            env = {**os.environ, **profile_env(profile), **settings_env(settings)}
            return ceiling, await ours("amqp", ceiling / 3, seconds, url, env,
                                       work / "amqp", "job=1")
        finally:
            await conn.close()
            await mgmt.delete_vhost(vhost)


async def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--rounds", type=int, default=3,
                   help="rounds of both sides, each ratio the median of the rounds' "
                        "(default 3)")
    p.add_argument("--step-seconds", type=float, default=10,
                   help="seconds of each rate step of ours (default 10; shorter steps "
                        "understate the rate held)")
    p.add_argument("--only", choices=["http", "amqp"], default=None,
                   help="one transport only (default: both)")
    args = p.parse_args()
    if not Path(NGINX).exists() and args.only != "amqp":
        print("nginx is not installed (Debian: apt-get install nginx-light)", file=sys.stderr)
        return 2
    work = Path(tempfile.mkdtemp(prefix="rs-generator-"))
    port = _free_port()
    nginx = start_nginx(work, port) if args.only != "amqp" else None
    url = f"http://127.0.0.1:{port}"
    ratios: dict[str, list[float]] = {"http": [], "amqp": []}
    figures: dict[str, list[float]] = {"http": [], "amqp": []}
    try:
        for n in range(1, args.rounds + 1):
            print(f"round {n}:", flush=True)
            (work / f"r{n}").mkdir()
            for transport, run in (("http", http_round), ("amqp", amqp_round)):
                if args.only and transport != args.only:
                    continue
                ceiling, held = await run(args.step_seconds, work / f"r{n}", url)
                ratios[transport].append(held / ceiling)
                figures[transport].append(held)
                print(f"  {transport}: ours {held:,.0f} tasks/s, ratio {held / ceiling:.2f}",
                      flush=True)
    finally:
        if nginx is not None:
            nginx.terminate()
            nginx.wait(10)
        shutil.rmtree(work, ignore_errors=True)
    print(f"\none Locust worker process, open model (sent within {RATE_ERROR_MAX:.0%} of the "
          f"schedule, p99 send delay <= {SEND_DELAY_P99_MAX_MS:g} ms), {args.step_seconds:g}s "
          f"steps x{STEP}, median of {args.rounds} round(s):")
    for transport, against in (("http", "plain Locust"), ("amqp", "a plain publisher")):
        if ratios[transport]:
            print(f"  {transport}: {statistics.median(figures[transport]):8,.0f} tasks/s, "
                  f"{statistics.median(ratios[transport]):.2f} of {against} (rounds "
                  f"{', '.join(f'{r:.2f}' for r in ratios[transport])})")
            print(f"FIGURE generator_{transport}_tasks_per_s "
                  f"{statistics.median(figures[transport]):.0f}")
            print(f"RATIO generator_{transport}_vs_plain "
                  f"{statistics.median(ratios[transport]):.2f} >= {TARGET_RATIO}")
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
