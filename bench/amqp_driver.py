"""The Locust AMQP driver: pika's BlockingConnection, one per greenlet (the driver the Locust
users run, scenarios/locustfiles/amqp_driver.py), against the one it replaced, our aio-pika
Publisher on a native thread with confirms awaited from a gevent thread pool (kept here as
the baseline), under gevent's monkey patching as Locust users run. Side by side in one run, in
a vhost of its own:

- closed loop: U greenlets each publishing confirmed messages as fast as they can (msgs/s);
- open model: the same greenlets at a fixed rate, how late each send left its slot and how
  long its confirm took (p50/p99 ms), which is what a Locust user sees.

`python bench/amqp_driver.py [--users 32] [--seconds 8] [--rate 300]`; prints ratios
(pika / aio-pika) beside the figures. Both publish the same MassTransit envelope of ~1 KB to
the same exchange, persistent, mandatory, with publisher confirms.
"""

from __future__ import annotations

import sys

from gevent import monkey

if "--setup" not in sys.argv:  # the vhost is set up by a child without gevent (asyncio)
    monkey.patch_all()  # before anything imports socket or threading, as Locust does

import argparse  # noqa: E402
import asyncio  # noqa: E402
import os  # noqa: E402
import subprocess  # noqa: E402
import time  # noqa: E402
import uuid  # noqa: E402

import gevent  # noqa: E402

from rabbitscale.core import latency  # noqa: E402

KIND = "spend"


def setup(vhost: str) -> None:
    """The vhost, with conduit's topology declared (our own declare), as a stack would."""
    from rabbitscale.broker.declare import declare
    from rabbitscale.broker.management import Management
    from rabbitscale.topology.profile_file import get_profile
    from rabbitscale.topology.settings import load_settings

    settings = load_settings().with_vhost(vhost)

    async def go() -> None:
        import aio_pika

        async with Management(settings) as mgmt:
            await mgmt.create_vhost(vhost)
        conn = await aio_pika.connect(settings.amqp_url)
        async with conn:
            await declare(await conn.channel(), get_profile("conduit"), settings)

    asyncio.run(go())


def teardown(vhost: str) -> None:
    """Plain HTTP: the aio-pika driver's loop thread leaves asyncio unusable here."""
    import base64
    import urllib.request
    from urllib.parse import quote

    from rabbitscale.topology.settings import load_settings

    s = load_settings()
    req = urllib.request.Request(f"{s.management_base_url}/api/vhosts/{quote(vhost, safe='')}",
                                 method="DELETE", headers={"Authorization": "Basic " + base64
                                 .b64encode(f"{s.username}:{s.password}".encode()).decode()})
    urllib.request.urlopen(req, timeout=10).read()


class AioPikaThreadDriver:
    """The baseline: one asyncio loop on a native thread holding a started Publisher (one per
    process: asyncio's running-loop marker is a gevent-patched thread-local, which a second
    native thread would share); each greenlet waits for its confirm from a gevent pool."""

    _instance: AioPikaThreadDriver | None = None

    @classmethod
    def get(cls, profile):  # type: ignore[no-untyped-def]
        if cls._instance is None:
            cls._instance = cls(profile)
        return cls._instance

    def __init__(self, profile):  # type: ignore[no-untyped-def]
        import threading

        from gevent.threadpool import ThreadPool

        from rabbitscale.broker.publisher import Publisher
        from rabbitscale.topology.settings import load_settings

        real_thread = monkey.get_original("threading", "Thread")
        real_event = monkey.get_original("threading", "Event")
        self.publisher = Publisher(load_settings(), profile)
        self.loop = asyncio.new_event_loop()
        ready = real_event()

        def run() -> None:
            asyncio.set_event_loop(self.loop)
            self.loop.run_until_complete(self.publisher.start())
            ready.set()
            self.loop.run_forever()

        real_thread(target=run, daemon=True).start()
        ready.wait(30)
        self.waiters = ThreadPool(256)
        del threading

    def send(self, type_name: str, body: dict) -> bool:  # type: ignore[type-arg]
        fut = asyncio.run_coroutine_threadsafe(self.publisher.publish(type_name, body),
                                               self.loop)
        return bool(self.waiters.spawn(fut.result).get().ok)


def _task(profile, i: int):  # type: ignore[no-untyped-def]
    from rabbitscale.scenarios.drivers import Task

    return Task(KIND, i % 100 + 1, str(uuid.uuid4()), 1000, time.time())


def run_aio(users: int, seconds: float, rate: float | None) -> dict[str, float]:
    from rabbitscale.scenarios.drivers import message_for
    from rabbitscale.topology.profile_file import get_profile

    profile = get_profile("conduit")
    driver = AioPikaThreadDriver.get(profile)

    def send(i: int) -> bool:
        return driver.send(*message_for(profile, _task(profile, i)))

    return _load(users, seconds, rate, lambda: send, lambda _: None)


def run_pika(users: int, seconds: float, rate: float | None) -> dict[str, float]:
    from rabbitscale.scenarios.locustfiles.amqp_driver import AmqpDriver
    from rabbitscale.topology.profile_file import get_profile

    profile = get_profile("conduit")

    def make():  # type: ignore[no-untyped-def]
        d = AmqpDriver(profile)  # one per user, as Locust users hold it
        d.open()  # connected before the clock starts, as the baseline's pool is

        def send(i: int) -> bool:
            return d.send(_task(profile, i)).ok
        send.close = d.close  # type: ignore[attr-defined]
        return send

    return _load(users, seconds, rate, make, lambda s: s.close())


def _load(users: int, seconds: float, rate: float | None, make, close) -> dict[str, float]:  # type: ignore[no-untyped-def]
    """U greenlets: closed loop (rate None) or each at rate/U per second on a fixed schedule."""
    confirm = latency.new_histogram()
    late = latency.new_histogram()
    done = [0]
    start = time.time() + 0.5
    end = start + seconds

    def user(u: int) -> None:
        send = make()
        i = 0
        try:
            while True:
                if rate:
                    slot = start + (i * users + u) / rate
                    if slot >= end:
                        break
                    wait = slot - time.time()
                    if wait > 0:
                        gevent.sleep(wait)
                    latency.record_s(late, max(0.0, time.time() - slot))
                elif time.time() >= end:
                    break
                elif time.time() < start:
                    gevent.sleep(start - time.time())
                t0 = time.perf_counter()
                if send(u * 10_000_000 + i):
                    done[0] += 1
                latency.record_s(confirm, time.perf_counter() - t0)
                i += 1
        finally:
            close(send)

    gevent.joinall([gevent.spawn(user, u) for u in range(users)])
    span = max(1e-6, time.time() - start)
    return {"rate": done[0] / min(span, seconds + 5), "confirmed": done[0],
            "confirm_p50": confirm.get_value_at_percentile(50) / 1000,
            "confirm_p99": confirm.get_value_at_percentile(99) / 1000,
            "late_p50": late.get_value_at_percentile(50) / 1000 if rate else 0.0,
            "late_p99": late.get_value_at_percentile(99) / 1000 if rate else 0.0}


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--users", type=int, default=32)
    p.add_argument("--seconds", type=float, default=8.0)
    p.add_argument("--rate", type=float, default=300.0, help="open-model rate, msgs/s")
    p.add_argument("--setup", metavar="VHOST", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.setup:
        setup(args.setup)
        return 0
    vhost = f"rs-bench-driver-{os.getpid()}"
    os.environ["CONDUITLLM__RABBITMQ__VHOST"] = vhost
    subprocess.run([sys.executable, __file__, "--setup", vhost], check=True)
    try:
        rows = []
        for label, rate in (("closed loop", None), (f"open {args.rate:g}/s", args.rate)):
            aio = run_aio(args.users, args.seconds, rate)
            pk = run_pika(args.users, args.seconds, rate)
            rows.append((label, aio, pk))
    finally:
        teardown(vhost)
    print(f"{args.users} greenlets, {args.seconds:g} s each, ~1 KB confirmed persistent "
          f"publishes, RabbitMQ on this machine (ratio = pika / aio-pika)")
    print(f"{'load':>12} {'driver':>9} {'msgs/s':>9} {'confirm p50':>12} {'p99':>8} "
          f"{'late p50':>9} {'p99':>8}  (ms)")
    for label, aio, pk in rows:
        for name, r in (("aio-pika", aio), ("pika", pk)):
            print(f"{label:>12} {name:>9} {r['rate']:9.1f} {r['confirm_p50']:12.2f} "
                  f"{r['confirm_p99']:8.2f} {r['late_p50']:9.2f} {r['late_p99']:8.2f}")
        print(f"{label:>12} {'ratio':>9} {pk['rate'] / max(aio['rate'], 1e-9):9.2f} "
              f"{pk['confirm_p50'] / max(aio['confirm_p50'], 1e-9):12.2f} "
              f"{pk['confirm_p99'] / max(aio['confirm_p99'], 1e-9):8.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
