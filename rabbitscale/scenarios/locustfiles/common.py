"""Locust glue shared by the scenario files: options, open-model streams, users, and the
per-worker HDR histograms that the master merges.

Every rabbitscale setting is an ordinary Locust option, so it comes from locust.conf, the
command line or an environment variable (``--task-rate 1000/min``, ``LOCUST_TASK_RATE``), and
a Locust master hands them to its workers with each spawn message: a worker started on
another machine (``rabbitscale worker``) needs nothing but the master's address; its keys,
the schedule's start and the callback plan arrive from the master.
"""

from __future__ import annotations

import bisect
import dataclasses
import gc
import itertools
import json
import math
import os
import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import gevent
import gevent.event
from locust import events
from locust.contrib.fasthttp import FastHttpUser
from locust.exception import StopUser
from locust.runners import MasterRunner, WorkerRunner

from rabbitscale.core import latency, rundir
from rabbitscale.core.units import parse_rate_per_s, parse_size_bytes
from rabbitscale.harness.auth import VirtualKeys
from rabbitscale.scenarios import contract, registry
from rabbitscale.scenarios.callback_urls import CallbackPlan
from rabbitscale.scenarios.drivers import DriverSetup, Task, TaskDriver, transport
from rabbitscale.scenarios.pacing import Pacer, RateFn
from rabbitscale.scenarios.schedule import Rates
from rabbitscale.topology.envelope import new_id
from rabbitscale.topology.profile_file import PROFILE_ENV, profile_from_env
from rabbitscale.topology.profiles import Profile, TaskKind
from rabbitscale.topology.tasks import parse_task_mix

START_LEAD_S = 2.0  # workers receive the start with the spawn message: leave them time
# the garbage collector of a Locust process: every object made before the load frozen out of
# its collections, and a young generation collected every 50,000 allocations instead of 700
# (at thousands of tasks per second the default meant a collection every few tasks and full
# collections of 40-130 ms; bench/generator.py measured the send delay with and without)
GC_THRESHOLD = (50_000, 50, 100)


@events.init_command_line_parser.add_listener
def _options(parser: Any) -> None:
    """Register the options of the run's contract (scenarios/contract.py) with Locust."""
    group = parser.add_argument_group("rabbitscale")
    for o in (*contract.LOAD_OPTIONS, *contract.RUN_OPTIONS):
        kw: dict[str, Any] = {"default": o.default, "env_var": o.env, "help": o.help}
        if o.kind is not str:
            kw["type"] = o.kind
        if o.choices:
            kw["choices"] = list(o.choices)
        if o.secret:
            kw["is_secret"] = True
        if o.hidden:  # set by `rabbitscale run`: kept out of Locust's web UI
            parser.add_argument(o.flag, include_in_web_ui=False, **kw)
        else:
            group.add_argument(o.flag, **kw)


@dataclass(frozen=True)
class Options:
    task_rate: float
    webhook_rate: float
    burst_rates: tuple[float, ...]
    mix: dict[str, float]
    payload_bytes: int
    virtual_keys: int
    transport: str
    poisson: bool
    start_at: float
    keyring: Callable[[int], str] | None  # HTTP transport only
    webhook_target: str
    callbacks: CallbackPlan | None
    poll_interval_s: float
    profile: Profile
    max_in_flight: int
    kinds: tuple[str, ...] = ()  # the mix's kinds, and their cumulative weights (one draw each)
    cum_weights: tuple[float, ...] = ()


def _keyring(o: Any) -> Callable[[int], str]:
    """Bearer key per virtual key id: derived from the stack's secret, or the target's keys
    taken in turn."""
    keys = [k.strip() for k in str(o.api_keys or "").split(",") if k.strip()]
    if keys:
        return lambda key_id: keys[key_id % len(keys)]
    if not o.api_secret:
        raise ValueError(f"no API key: set {contract.API_KEYS.env} (a deployed system) or "
                         f"{contract.API_SECRET.env} (the reference stack's secret)")
    vk = VirtualKeys(str(o.api_secret))
    cache: dict[int, str] = {}

    def derived(key_id: int) -> str:
        key = cache.get(key_id)
        if key is None:
            key = cache[key_id] = vk.key_for(key_id)
        return key

    return derived


def options(environment: Any) -> Options:
    """Parse and check the options once; bad values stop the run with one line."""
    cached = getattr(environment, "_rabbitscale_options", None)
    if cached is not None:
        return cached
    o = environment.parsed_options
    try:
        callbacks = CallbackPlan(o.callback_url, o.run_name or "run", o.callback_secret) \
            if o.callback_url else None
        profile = profile_from_env({PROFILE_ENV: o.profile_spec} if o.profile_spec else {})
        result = Options(
            task_rate=parse_rate_per_s(o.task_rate), webhook_rate=parse_rate_per_s(o.webhook_rate),
            burst_rates=tuple(parse_rate_per_s(r) for r in str(o.burst_rates).split(",") if r),
            mix=parse_task_mix(o.task_mix, profile) if o.task_mix else profile.default_mix,
            payload_bytes=parse_size_bytes(o.payload_size),
            virtual_keys=max(1, int(o.virtual_keys)), transport=o.transport,
            poisson=o.arrivals == "poisson", start_at=float(o.start_at or 0),
            keyring=_keyring(o) if transport(o.transport).needs_keys else None,
            webhook_target=str(o.webhook_target or ""),
            callbacks=callbacks, poll_interval_s=float(o.poll_interval or 0), profile=profile,
            max_in_flight=max(1, int(o.max_in_flight)))
        result = dataclasses.replace(result, kinds=tuple(result.mix),
                                     cum_weights=tuple(itertools.accumulate(result.mix.values())))
    except ValueError as exc:  # BadInput and friends: one line
        raise SystemExit(f"error: {exc}") from None
    environment._rabbitscale_options = result
    return result


def rates(environment: Any) -> Rates:
    o = options(environment)
    return Rates(o.task_rate, o.webhook_rate, o.burst_rates)


def run_time_s(environment: Any) -> float:
    """How long the arrival schedule runs: --schedule-time, else Locust's --run-time."""
    o = environment.parsed_options
    return float(getattr(o, "schedule_time", 0) or getattr(o, "run_time", None) or 60)


def schedule_end(environment: Any) -> float:
    """Epoch seconds the arrival schedule ends: its start (fixed by the run, or by the master
    at test start) plus its length; until the start is known, a test-relative guess."""
    start = float(getattr(environment.parsed_options, "start_at", 0) or 0)
    if not start:
        runner = environment.runner
        start = getattr(runner, "start_time", 0) or time.time()
    return start + run_time_s(environment)


def _worker_position(environment: Any) -> tuple[int, int]:
    """(index, count): worker i of N takes every N-th slot of the one global schedule. N is
    the master's --expect-workers, which the master sends to its workers."""
    runner = environment.runner
    if isinstance(runner, WorkerRunner):
        count = max(1, int(getattr(environment.parsed_options, "expect_workers", 1) or 1))
        return runner.worker_index % count, count
    return 0, 1


class Stream:
    """One open-model arrival stream (e.g. tasks, webhooks) shared by a process's users;
    kept on the Locust environment, like the parsed options."""

    def __init__(self, name: str, pacer: Pacer) -> None:
        self.name = name
        self.pacer = pacer

    @classmethod
    def get(cls, environment: Any, name: str, rate: RateFn, end_s: float = math.inf) -> Stream:
        streams_ = environment.__dict__.setdefault("_rabbitscale_streams", {})
        stream = streams_.get(name)
        if stream is None:
            index, count = _worker_position(environment)
            # read now, not from the cached options: a master may fix it at test start
            start_at = float(environment.parsed_options.start_at or 0) or time.time()
            stream = streams_[name] = Stream(name, Pacer(
                rate, start_at, worker_index=index, worker_count=count,
                poisson=options(environment).poisson, end_s=end_s))
        return stream


class InFlight:
    """The process's sends in flight, at most ``bound`` (contract.MAX_IN_FLIGHT), as k6's
    arrival-rate executors bound their virtual users: a slot whose send would pass the bound
    waits for one to end (its lateness is recorded) and is counted per stream, with the peak
    each stream reached."""

    def __init__(self, bound: int) -> None:
        from gevent.lock import BoundedSemaphore

        self.bound = bound
        self._sem = BoundedSemaphore(bound)
        self.now = 0
        self.peak: dict[str, int] = {}
        self.waited: dict[str, int] = {}

    @classmethod
    def of(cls, environment: Any) -> InFlight:
        global _IN_FLIGHT
        if _IN_FLIGHT is None:
            _IN_FLIGHT = cls(options(environment).max_in_flight)
        return _IN_FLIGHT

    def enter(self, stream: str) -> None:
        if not self._sem.acquire(blocking=False):
            self.waited[stream] = self.waited.get(stream, 0) + 1
            self._sem.acquire()
        self.now += 1
        if self.now > self.peak.get(stream, 0):
            self.peak[stream] = self.now

    def leave(self) -> None:
        self.now -= 1
        self._sem.release()

    def report(self) -> dict[str, list[int]]:
        """stream -> [bound, peak, waited], cumulative."""
        return {name: [self.bound, peak, self.waited.get(name, 0)]
                for name, peak in self.peak.items()}


_IN_FLIGHT: InFlight | None = None
_IN_FLIGHT_SEEN: dict[str, dict[str, list[int]]] = {}  # master: each worker's last report


def in_flight_totals(reports: list[dict[str, list[int]]]) -> dict[str, dict[str, int]]:
    """Per stream over the processes: their bounds summed, the highest peak, the waits."""
    out: dict[str, dict[str, int]] = {}
    for report in reports:
        for name, (bound, peak, waited) in report.items():
            t = out.setdefault(name, {"bound": 0, "peak": 0, "waited": 0})
            t["bound"] += bound
            t["peak"] = max(t["peak"], peak)
            t["waited"] += waited
    return out


# --- per-worker HDR histograms, merged on the master -------------------------------------

_HISTOGRAMS: dict[str, Any] = {}
_MERGED: dict[str, Any] = {}
_WORKERS_SEEN: dict[str, dict[str, Any]] = {}  # master: every worker that ever reported


def record(name: str, seconds: float) -> None:
    h = _HISTOGRAMS.get(name)
    if h is None:
        h = _HISTOGRAMS[name] = latency.new_histogram()
    latency.record_s(h, seconds)


def _merge_into(name: str, encoded: str) -> None:
    h = _MERGED.get(name)
    if h is None:
        h = _MERGED[name] = latency.new_histogram()
    h.add(latency.decode(encoded))


@events.init.add_listener
def _quiet_gc(environment: Any, **_: Any) -> None:
    gc.collect()
    gc.freeze()
    gc.set_threshold(*GC_THRESHOLD)


@events.test_start.add_listener
def _fix_start(environment: Any, **_: Any) -> None:
    """A schedule left open (workers joining from other machines) starts now, fixed on the
    master before the spawn messages carry the options to the workers."""
    if isinstance(environment.runner, WorkerRunner):
        return
    o = environment.parsed_options
    if not float(getattr(o, "start_at", 0) or 0):
        o.start_at = time.time() + START_LEAD_S
        run_dir = os.environ.get(contract.ENV_RUN_DIR)
        if run_dir:
            (Path(run_dir) / contract.START_FILE).write_text(json.dumps({"start_at": o.start_at}))


@events.report_to_master.add_listener
def _ship(client_id: str, data: dict[str, Any]) -> None:
    data["rabbitscale_hdr"] = {name: latency.encode(h) for name, h in _HISTOGRAMS.items()}
    data["rabbitscale_clock"] = time.time()  # the master measures this worker's clock offset
    if _IN_FLIGHT is not None:
        data["rabbitscale_in_flight"] = _IN_FLIGHT.report()
    for h in _HISTOGRAMS.values():
        h.reset()


@events.worker_report.add_listener
def _receive(client_id: str, data: dict[str, Any]) -> None:
    seen = _WORKERS_SEEN.setdefault(client_id, {"reports": 0})
    seen["reports"] += 1
    if "clock_offset_s" not in seen and "rabbitscale_clock" in data:
        # the worker's clock minus the master's, at its first report (one-way: the transit,
        # well under a millisecond on a LAN, is part of the figure)
        seen["clock_offset_s"] = round(float(data["rabbitscale_clock"]) - time.time(), 6)
    for name, encoded in data.get("rabbitscale_hdr", {}).items():
        _merge_into(name, encoded)
    if "rabbitscale_in_flight" in data:
        _IN_FLIGHT_SEEN[client_id] = data["rabbitscale_in_flight"]


@events.quitting.add_listener
def _dump(environment: Any, **_: Any) -> None:
    """Write merged histograms (master) or local ones (single process) to the run dir, and
    the master's view of its workers (a worker that went missing is named in the verdict)."""
    runner = environment.runner
    if isinstance(runner, WorkerRunner):
        return
    if not isinstance(runner, MasterRunner):
        for name, h in _HISTOGRAMS.items():
            _merge_into(name, latency.encode(h))
    run_dir = os.environ.get(contract.ENV_RUN_DIR)
    if not run_dir:
        return
    out = Path(run_dir) / rundir.LOCUST_HDR_DIR
    out.mkdir(parents=True, exist_ok=True)
    summary = {}
    for name, h in _MERGED.items():
        (out / f"{name}.hdr").write_text(latency.encode(h))
        summary[name] = latency.summary_ms(h)
    (out / contract.HDR_SUMMARY).write_text(json.dumps(summary, indent=2))
    reports = list(_IN_FLIGHT_SEEN.values()) if isinstance(runner, MasterRunner) else \
        ([_IN_FLIGHT.report()] if _IN_FLIGHT is not None else [])
    (Path(run_dir) / contract.IN_FLIGHT_FILE).write_text(
        json.dumps(in_flight_totals(reports), indent=2))
    if isinstance(runner, MasterRunner):
        # A worker that quit cleanly is already gone from runner.clients when this runs: the
        # reports it sent are the record; one still listed keeps its state ("missing"...).
        ids = list(dict.fromkeys([*_WORKERS_SEEN, *runner.clients]))
        workers = []
        for cid in ids:
            client = runner.clients.get(cid)
            workers.append({"id": cid, "index": runner.get_worker_index(cid),
                            "state": client.state if client is not None else "quit",
                            "user_count": client.user_count if client is not None else None,
                            "reports": _WORKERS_SEEN.get(cid, {}).get("reports", 0),
                            "clock_offset_s": _WORKERS_SEEN.get(cid, {}).get("clock_offset_s")})
        (Path(run_dir) / contract.WORKERS_FILE).write_text(json.dumps(workers, indent=2))


# --- users --------------------------------------------------------------------------------


class OpenModelMixin:
    """Take slots from a stream, sleep until each, send one task; never closed-loop."""

    scenario = registry.SUSTAINED_TASKS  # whose schedule the stream follows
    stream_name = registry.TASKS
    environment: Any

    def rate(self) -> RateFn:
        return self.scenario.streams(rates(self.environment),
                                     run_time_s(self.environment))[self.stream_name]

    def end_s(self) -> float:
        return run_time_s(self.environment)

    def make_task(self, intended: float) -> Task:
        raise NotImplementedError

    def open_model_loop(self) -> None:
        """Take each slot, sleep until it and hand its send to a greenlet of its own: sends
        leave on time while the system is slow, up to the process's in-flight bound."""
        stream = Stream.get(self.environment, self.stream_name, self.rate(), self.end_s())
        driver = make_driver(self)
        bound = InFlight.of(self.environment)
        self._sending, self._idle = 0, gevent.event.Event()
        try:
            while True:
                slot = stream.pacer.next_slot()
                if slot is None:
                    break
                wait = slot - time.time()
                if wait > 0:
                    gevent.sleep(wait)
                bound.enter(self.stream_name)
                self._sending += 1
                gevent.spawn_raw(self._send, driver, slot, bound)  # the cheapest greenlet
            while self._sending:  # the schedule is over: the last replies, then stop this
                self._idle.clear()  # user now, so that when the run time ends Locust has
                self._idle.wait()  # nothing to wait for
        finally:
            driver.close()
        raise StopUser()

    def _send(self, driver: TaskDriver, slot: float, bound: InFlight) -> None:
        try:
            record(self._delay_name, max(0.0, time.time() - slot))
            task = self.make_task(slot)
            sent = driver.send(task)
            if sent.via == "AMQP":
                self.environment.events.request.fire(
                    request_type="AMQP", name=f"publish {task.kind}",
                    response_time=sent.response_time_ms, response_length=sent.length,
                    exception=None if sent.ok else RuntimeError(sent.outcome), context={})
            record(self._request_name, sent.response_time_ms / 1000)
        except Exception as exc:  # noqa: BLE001 - as Locust records an error in a task
            self.environment.events.user_error.fire(user_instance=self, exception=exc,
                                                    tb=exc.__traceback__)
        finally:
            bound.leave()
            self._sending -= 1
            if not self._sending:
                self._idle.set()

    @property
    def _delay_name(self) -> str:
        return f"{self.stream_name}_send_delay"

    @property
    def _request_name(self) -> str:
        return f"{self.stream_name}_request"


def sized(rng: random.Random, payload_bytes: int, sigma: float = 0.5) -> int:
    """A message size, lognormal around ``payload_bytes``."""
    return int(rng.lognormvariate(math.log(payload_bytes) - sigma**2 / 2, sigma))


class TaskMixin(OpenModelMixin):
    """Tasks of the run's mix (the profile's task kinds) over many ordering keys, sized
    lognormal around --payload-size unless their message type has a size of its own."""

    def pick(self, o: Options, rng: random.Random) -> str:
        if len(o.kinds) == 1:
            return o.kinds[0]
        return o.kinds[bisect.bisect(o.cum_weights, rng.random() * o.cum_weights[-1])]

    def make_task(self, intended: float) -> Task:
        o = options(self.environment)
        rng = self._rng()
        kind = o.profile.task(self.pick(o, rng))
        fixed = o.profile.message(kind.message).size_bytes
        task_id = new_id()
        return Task(kind.name, rng.randint(1, o.virtual_keys), task_id,
                    fixed or sized(rng, o.payload_bytes), intended,
                    callback=callback_for(o, kind, task_id, intended))

    def _rng(self) -> random.Random:
        rng = getattr(self, "_random", None)
        if rng is None:
            rng = self._random = random.Random()
        return rng


def callback_for(o: Options, kind: TaskKind, task_id: str, intended: float) -> str:
    """The URL a task asks to be called back at: a callback URL of its own in a black-box run
    (when its route carries one, or it is a webhook, and it is not followed by polling); the
    run's webhook target for a webhook of a run against the reference stack; else none."""
    route = kind.route
    webhook = kind.stream == registry.WEBHOOKS
    polled = bool(o.poll_interval_s and route is not None and route.poll and not webhook)
    if o.callbacks and kind.calls_back and not polled:
        return o.callbacks.url_for(kind.name, task_id, intended)
    if webhook:
        return o.webhook_target or "https://example.com/hook"
    return ""


class WebhookMixin(TaskMixin):
    """The webhooks stream: tasks of the profile's webhook kind."""

    stream_name = registry.WEBHOOKS

    def pick(self, o: Options, rng: random.Random) -> str:
        if o.profile.webhook_kind is None:
            raise SystemExit(f"error: profile {o.profile.name!r} has no task kind with "
                             f"stream = \"webhooks\": the webhook scenarios cannot run")
        return o.profile.webhook_kind


class TaskUser(FastHttpUser):
    """Base of every open-model user. Locust fixes a locustfile's user classes while the
    transport is a run option, so one class serves both: ``make_driver`` decides how a task
    leaves (its HTTP client is only used by the HTTP driver). The process's users share one
    pool of HTTP connections, as many as sends may be in flight: connections are opened as
    concurrency needs them and kept busy, not one idle connection per user."""

    abstract = True
    host = os.environ.get(contract.ENV_API_URL, "http://127.0.0.1:5000")
    connection_timeout = 10.0
    network_timeout = 30.0

    def __init__(self, environment: Any) -> None:
        if TaskUser.client_pool is None:  # as FastHttpUser makes its own, shared
            from geventhttpclient.client import HTTPClientPool
            from locust.contrib.fasthttp import insecure_ssl_context_factory

            TaskUser.client_pool = HTTPClientPool(
                concurrency=options(environment).max_in_flight, insecure=True,
                ssl_context_factory=insecure_ssl_context_factory,
                connection_timeout=self.connection_timeout,
                network_timeout=self.network_timeout)
        super().__init__(environment)


def make_driver(user: Any) -> TaskDriver:
    """The driver of the run's transport (scenarios/drivers.py's registry), opened before the
    user's first slot: connecting is not part of a send."""
    o = options(user.environment)
    driver = transport(o.transport).make(DriverSetup(
        client=user.client, profile=o.profile, keyring=o.keyring, callbacks=o.callbacks,
        poll_interval_s=o.poll_interval_s))
    driver.open()
    return driver

