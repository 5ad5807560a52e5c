"""``rabbitscale stack``: the API, N consumer processes and the webhook sink, like
``docker compose up --scale api=N``, stopped cleanly on SIGINT/SIGTERM.

The stack keeps its own ledger while it runs (confirmed publishes from its API, completion
records from every instance, what is still queued at the end), so a stop can say how many
messages were lost: it should always be 0.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import os
import signal
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aio_pika
from aiohttp import web

from rabbitscale.broker import amqp
from rabbitscale.broker.declare import declare
from rabbitscale.broker.management import Management, ManagementError
from rabbitscale.broker.publisher import Publisher
from rabbitscale.core.errors import (
    EXIT_BAD_INPUT,
    EXIT_UNAVAILABLE,
    BadInput,
    PortInUse,
    RunFailed,
    Unavailable,
)
from rabbitscale.core.events import hook
from rabbitscale.core.headers import X_INTENDED
from rabbitscale.core.processes import rss_bytes
from rabbitscale.core.recent import RecentIds
from rabbitscale.harness.api import ApiState, create_app
from rabbitscale.harness.auth import SECRET_ENV, VirtualKeys
from rabbitscale.harness.completions import COMPLETED, Completion, listen
from rabbitscale.harness.metrics import Metrics
from rabbitscale.harness.webhook_sink import Sink, SinkOptions
from rabbitscale.topology import naming
from rabbitscale.topology.profile_file import profile_env
from rabbitscale.topology.profiles import Profile
from rabbitscale.topology.settings import RabbitSettings, settings_env

LISTENER_EXPIRES_S = 60.0  # the stack's record queue goes 60 s after its consumer


@dataclass
class StackOptions:
    instances: int = 3
    profile: str | None = None
    host: str = "127.0.0.1"
    api_port: int = 5000
    sink_port: int = 5055
    sink: SinkOptions = field(default_factory=SinkOptions)
    time_scale: float = 1.0
    run_id: str = "stack"
    log_path: Path | None = None  # consumer output goes here instead of stdout
    demo_s: float = 0.0  # > 0: drive the guide's load script for this long, then stop
    demo_rate_per_s: float = 1000 / 60
    prometheus_port: int | None = None  # serve /metrics on host:port (0: any free port)
    webhook_allow: tuple[str, ...] = ()  # HOST:PORT webhooks may reach besides the sink


@dataclass
class StackLedger:
    """What the stack published and finished, in constant memory. ``confirmed`` counts a
    message once in each queue it reached (a type two endpoints consume is two messages to
    finish), ``accepted`` the confirmed publishes (tasks)."""

    confirmed: int = 0
    accepted: int = 0
    rejected: int = 0
    completed: int = 0
    faulted: int = 0  # faulted or skipped: in a side queue
    spawned: int = 0  # callbacks the consumers published (tasks with a webhook URL)
    duplicate_records: int = 0
    _ids: RecentIds = field(default_factory=RecentIds)

    def on_record(self, record: Completion) -> None:
        if self._ids.seen(record.identity):
            self.duplicate_records += 1
            return
        if record.status == COMPLETED:
            self.completed += 1
        else:
            self.faulted += 1
        self.spawned += record.spawned

    @property
    def finished(self) -> int:
        return self.completed + self.faulted


class Stack:
    def __init__(self, settings: RabbitSettings, profile: Profile, opts: StackOptions) -> None:
        self.settings = settings
        self.profile = profile.resolved(settings)
        self.opts = opts
        self.keys = VirtualKeys.from_env()
        self.sink = Sink(opts.sink)
        self.ledger = StackLedger()
        self.procs: list[asyncio.subprocess.Process] = []
        self.api_url = ""
        self.sink_url = ""
        self._runners: list[web.AppRunner] = []
        self._conn: aio_pika.abc.AbstractRobustConnection | None = None
        self._publisher: Publisher | None = None
        self._mgmt: Management | None = None
        self._pumps: list[asyncio.Task[None]] = []
        self._summary: dict[str, Any] | None = None
        self._listener: Any = None
        self.recorded = hook("recorded")

    async def _serve(self, app: web.Application, port: int, what: str, flag: str) -> str:
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        self._runners.append(runner)
        site = web.TCPSite(runner, self.opts.host, port)
        try:
            await site.start()
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                raise PortInUse(what, self.opts.host, port, flag) from None
            raise BadInput(f"{what}: cannot listen on {self.opts.host}:{port}: "
                           f"{exc.strerror or exc}") from None
        sock = site._server.sockets[0]  # type: ignore[union-attr]
        return f"http://{self.opts.host}:{sock.getsockname()[1]}"

    async def start(self) -> None:
        self._conn = await amqp.connect(self.settings, "rabbitscale-stack")
        channel = await self._conn.channel()
        await declare(channel, self.profile, self.settings)
        self._publisher = await Publisher(self.settings, self.profile,
                                          run_id=self.opts.run_id).start()
        self._publisher.published.add_listener(self._on_published)
        self._mgmt = Management(self.settings)
        state = ApiState(self._publisher, self.keys, self._mgmt)

        def on_record(record: Completion) -> None:
            self.ledger.on_record(record)
            state.on_completion(record)
            self.recorded.fire(record=record)

        # a quorum queue of its own: the stack's ledger must survive a cluster node's loss
        self._listener = await listen(await self._conn.channel(), on_record, durable=True,
                                      queue_name=f"{naming.STACK_LISTENER_PREFIX}{self.opts.run_id}"
                                      f"-{os.getpid()}", expires_s=LISTENER_EXPIRES_S)
        # both ports first: a port in use fails before any consumer process starts
        self.sink_url = await self._serve(self.sink.app(), self.opts.sink_port,
                                          "webhook sink", "--sink-port")
        self.api_url = await self._serve(create_app(state), self.opts.api_port, "API",
                                         "--api-port")
        for i in range(1, self.opts.instances + 1):
            await self._spawn(f"consumer-{i}")

    @property
    def published(self) -> Any:
        """The API publisher's event (fire(result=PublishResult)); after ``start``."""
        if self._publisher is None:
            raise RuntimeError("Stack.start() was not called")
        return self._publisher.published

    def publish_outcomes(self) -> dict[str, int]:
        """The API publisher's outcomes so far (confirmed, rejected, timeout, ...)."""
        return dict(self._publisher.stats.outcomes) if self._publisher else {}

    def _on_published(self, result: Any) -> None:
        if result.ok:  # once in each queue the message reaches
            self.ledger.accepted += 1
            self.ledger.confirmed += self.profile.fanout(result.message_type)
        elif result.outcome == "rejected":
            self.ledger.rejected += 1

    async def _spawn(self, name: str) -> None:
        args = [sys.executable, "-m", "rabbitscale.harness.consumer", "--instance", name,
                "--time-scale", str(self.opts.time_scale),
                "--webhook-redirect-url", self.sink_url + "/redirected",
                *(a for allow in self.opts.webhook_allow for a in ("--webhook-allow", allow))]
        # the consumers run exactly the stack's settings and resolved profile
        env = {**os.environ, "PYTHONUNBUFFERED": "1", **settings_env(self.settings),
               **profile_env(self.profile)}
        proc = await asyncio.create_subprocess_exec(
            *args, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT, env=env,
            start_new_session=True)  # Ctrl-C reaches the stack only; it stops them in order
        assert proc.stdout is not None
        try:
            line = await asyncio.wait_for(proc.stdout.readline(), 60)
        except TimeoutError:
            proc.kill()
            await proc.wait()
            raise RunFailed(f"{name} did not report within 60 s that it consumes") from None
        if b"consuming" not in line:
            rest = await proc.stdout.read()
            code = await proc.wait()
            text = (line + rest).decode(errors="replace").strip().splitlines()
            message = (text[-1] if text else "no output").removeprefix("error: ")
            kind = {EXIT_BAD_INPUT: BadInput, EXIT_UNAVAILABLE: Unavailable}.get(code, RunFailed)
            raise kind(f"{name} did not start: {message}")
        self.procs.append(proc)
        self._pumps.append(asyncio.create_task(self._pump(proc)))

    async def management_problem(self) -> str | None:
        """Why the management API (used only by /health) does not answer, or None."""
        if self._mgmt is None:
            return None
        try:
            await self._mgmt.overview()
        except ManagementError as exc:
            return str(exc)
        return None

    async def add_instance(self) -> str:
        """Scale out by one consumer process (the guide's scaling-up procedure)."""
        name = f"consumer-{len(self.procs) + 1}"
        await self._spawn(name)
        return name

    async def _pump(self, proc: asyncio.subprocess.Process) -> None:
        assert proc.stdout is not None
        log = self.opts.log_path.open("a", encoding="utf-8") if self.opts.log_path else None
        try:
            async for line in proc.stdout:
                text = line.decode().rstrip()
                if log:
                    log.write(text + "\n")
                    log.flush()
                else:
                    print(text, flush=True)
        finally:
            if log:
                log.close()

    async def queued_messages(self) -> int:
        """Messages left in the endpoint queues, counted exactly with passive declares (the
        management API's figures can be 5 s old). Exact once the consumers have stopped,
        since their unacked deliveries are back in the queues."""
        if self._conn is None:
            return 0
        total = 0
        channel = await self._conn.channel()
        for ep in self.profile.endpoints:
            with contextlib.suppress(Exception):
                total += await amqp.ready_count(channel, ep.queue)
        with contextlib.suppress(Exception):
            await channel.close()
        return total

    async def stop(self) -> dict[str, Any]:
        """Stop the API first (no new work), then the consumers, then count what is left.
        Safe to call again, and after a start that failed half-way."""
        if self._summary is None:
            self._summary = await self._stop()
        return self._summary

    async def _stop(self) -> dict[str, Any]:
        for runner in reversed(self._runners[1:]):
            await runner.cleanup()
        for proc in self.procs:
            with contextlib.suppress(ProcessLookupError):
                proc.send_signal(signal.SIGTERM)
        for proc in self.procs:
            try:
                await asyncio.wait_for(proc.wait(), 30)
            except TimeoutError:
                proc.kill()
                await proc.wait()
        for t in self._pumps:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await asyncio.wait_for(t, 2)
        await asyncio.sleep(0.3)  # let the last completion batches arrive
        queued = await self.queued_messages()
        if self._mgmt:
            await self._mgmt.close()
        if self._publisher:
            await self._publisher.close()
        if self._runners:
            await self._runners[0].cleanup()
        self.sink.close()
        if self._listener is not None:
            with contextlib.suppress(Exception):  # else the broker expires it after 60 s
                await self._listener.delete(if_unused=False, if_empty=False)
        if self._conn:
            await self._conn.close()
        led = self.ledger
        lost = max(0, led.confirmed + led.spawned - led.finished - queued)
        pub_stats = self._publisher.stats.as_dict() if self._publisher else {}
        return {"published": led.confirmed, "accepted": led.accepted, "rejected": led.rejected,
                "spawned": led.spawned,
                "publisher": pub_stats,
                "completed": led.completed, "faulted": led.faulted, "still_queued": queued,
                "duplicate_records": self.ledger.duplicate_records, "lost": lost,
                "webhooks_received": self.sink.received}


def api_key_hint(keys: VirtualKeys) -> str:
    """Where to get an API key, without printing one: credentials stay out of logs. With no
    RABBITSCALE_API_SECRET the secret is random, so virtual key 1 goes to a 0600 file."""
    if os.environ.get(SECRET_ENV):
        return f"derived from {SECRET_ENV}: python -m rabbitscale.harness.auth 1"
    path = Path(tempfile.gettempdir()) / f"rabbitscale-api-key-{os.getpid()}"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(keys.key_for(1) + "\n")
    return f"random secret; key for virtual key 1 in {path} (mode 0600)"


async def _watch_processes(stack: Stack, metrics: Metrics, interval_s: float = 5.0) -> None:
    """Instances and process memory for /metrics, while the stack runs."""
    while True:
        metrics.instances.set(len(stack.procs))
        metrics.on_processes(rss_bytes({"stack": [os.getpid()], **{
            f"consumer-{i}": [p.pid] for i, p in enumerate(stack.procs, start=1)}}))
        await asyncio.sleep(interval_s)


async def run_stack(settings: RabbitSettings, profile: Profile, opts: StackOptions) -> int:
    stack = Stack(settings, profile, opts)
    metrics = server = None
    if opts.prometheus_port is not None:  # first: a port in use fails before anything starts
        metrics = Metrics(scenario="stack", run=opts.run_id, profile=stack.profile)
        server = metrics.serve(opts.prometheus_port, opts.host)
    try:
        return await _run_stack(stack, settings, opts, metrics,
                                server.url if server else "")
    finally:
        if server:
            server.close()


async def _run_stack(stack: Stack, settings: RabbitSettings, opts: StackOptions,
                     metrics: Metrics | None, metrics_url: str) -> int:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    try:
        await stack.start()
    except BaseException:
        await stack.stop()
        raise
    watch = None
    if metrics:
        stack.published.add_listener(lambda result: metrics.on_publish(result))
        stack.recorded.add_listener(lambda record: metrics.on_completion(record))
        stack.sink.arrived.add_listener(metrics.on_webhook)
        watch = asyncio.create_task(_watch_processes(stack, metrics))
    print(f"rabbitscale stack: profile {stack.profile.name}, vhost {settings.vhost!r}, "
          f"{opts.instances} consumer instances", flush=True)
    routes = [k.route.path for k in stack.profile.tasks.values() if k.route is not None]
    print(f"  api:   {stack.api_url}  (POST {', '.join(routes[:3]) or 'no routes'}"
          f"{', ...' if len(routes) > 3 else ''})")
    print(f"  sink:  {stack.sink_url}  (GET /_sink/stats)")
    if metrics_url:
        print(f"  metrics: {metrics_url}")
    print(f"  api keys: {api_key_hint(stack.keys)}")
    if (problem := await stack.management_problem()) is not None:
        print(f"  warning: {problem}; /health reports Unhealthy until it answers", flush=True)
    print("ready; Ctrl-C to stop", flush=True)
    if opts.demo_s > 0:
        demo = asyncio.create_task(guide_load_script(stack, opts.demo_s, opts.demo_rate_per_s))
        done, _ = await asyncio.wait([demo, asyncio.create_task(stop.wait())],
                                     return_when=asyncio.FIRST_COMPLETED)
        if demo in done:
            print(demo.result(), flush=True)
            await asyncio.sleep(1.0)  # let the last deliveries finish before stopping
        else:
            demo.cancel()
    else:
        await stop.wait()
    print("stopping ...", flush=True)
    if watch:
        watch.cancel()
    summary = await stack.stop()
    print("stopped: " + " ".join(f"{k}={v}" for k, v in summary.items()
                                 if not isinstance(v, dict)), flush=True)
    return 0 if summary["lost"] == 0 else 1


async def guide_load_script(stack: Stack, duration_s: float, rate_per_s: float) -> str:
    """The guide's "Load Test Script" made real: a request every 60 ms (1,000/min) to the
    route of the profile's webhook kind (the first routed kind if it has none), each sent at
    its planned time rather than after the previous one returns."""
    import aiohttp

    from rabbitscale.topology import messages

    routed = [k for k in stack.profile.tasks.values() if k.route is not None]
    if not routed:
        return "demo: the profile has no task kind with a route"
    kind = next((k for k in routed if k.stream == "webhooks"), routed[0])
    route = kind.route
    assert route is not None
    headers = {"Authorization": f"Bearer {stack.keys.key_for(1)}"}
    statuses: dict[int, int] = {}
    interval = 1.0 / rate_per_s
    start = time.time()
    n = int(duration_s * rate_per_s)

    async def one(i: int, http: aiohttp.ClientSession) -> None:
        intended = start + i * interval
        await asyncio.sleep(max(0.0, intended - time.time()))
        # the guide's script posts to an outside URL: the consumers redirect it to the sink
        body = messages.request_body(route, messages.variables(
            task_id=f"demo-{i}", callback="https://example.com/hook"))
        async with http.request(route.method, f"{stack.api_url}{route.path}",
                                headers={**headers, X_INTENDED: f"{intended:.6f}"},
                                json=body) as resp:
            statuses[resp.status] = statuses.get(resp.status, 0) + 1

    async with aiohttp.ClientSession() as http:
        await asyncio.gather(*[one(i, http) for i in range(n)])
    achieved = n / (time.time() - start)
    return (f"demo: {n} {kind.name} tasks at {rate_per_s * 60:.0f}/min target, "
            f"{achieved * 60:.0f}/min achieved, HTTP statuses {statuses}")
