"""Locust glue shared by the scenario files: options, open-model streams, users, and the
per-worker HDR histograms that the master merges.

Options are ordinary Locust options, so they come from locust.conf, the command line or
``LOCUST_*`` environment variables (``--task-rate 1000/min``, ``LOCUST_TASK_RATE``).
The stack's address and key secret come from ``RABBITSCALE_API_URL`` and
``RABBITSCALE_API_SECRET`` (``rabbitscale run`` sets both).
"""

from __future__ import annotations

import json
import math
import os
import random
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import gevent
from locust import User, events
from locust.contrib.fasthttp import FastHttpUser
from locust.runners import MasterRunner, WorkerRunner

from rabbitscale.core import latency
from rabbitscale.core.units import parse_rate_per_s, parse_size_bytes
from rabbitscale.harness.auth import VirtualKeys
from rabbitscale.harness.tasks import parse_task_mix
from rabbitscale.scenarios.drivers import AmqpDriver, HttpDriver, Task, TaskDriver
from rabbitscale.scenarios.pacing import Pacer, RateFn
from rabbitscale.scenarios.schedule import Rates, streams


@events.init_command_line_parser.add_listener
def _options(parser: Any) -> None:
    g = parser.add_argument_group("rabbitscale")
    g.add_argument("--task-rate", default="1000/min", env_var="LOCUST_TASK_RATE",
                   help="sustained async task arrival rate (all users and workers)")
    g.add_argument("--webhook-rate", default="10/s", env_var="LOCUST_WEBHOOK_RATE",
                   help="webhook baseline rate between bursts")
    g.add_argument("--burst-rates", default="50/s,100/s", env_var="LOCUST_BURST_RATES",
                   help="webhook burst rates, in order")
    g.add_argument("--task-mix", default="video=0.3,image=0.3,spend=0.4",
                   env_var="LOCUST_TASK_MIX")
    g.add_argument("--payload-size", default="10KB", env_var="LOCUST_PAYLOAD_SIZE",
                   help="mean message size (lognormal around it)")
    g.add_argument("--virtual-keys", type=int, default=100, env_var="LOCUST_VIRTUAL_KEYS")
    g.add_argument("--transport", choices=["http", "amqp"], default="http",
                   env_var="LOCUST_TRANSPORT", help="through the API or straight to the broker")
    g.add_argument("--arrivals", choices=["even", "poisson"], default="even",
                   env_var="LOCUST_ARRIVALS")
    g.add_argument("--schedule-time", type=float, default=0, env_var="LOCUST_SCHEDULE_TIME",
                   help="seconds the arrival schedule spans (default: --run-time)")


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


def options(environment: Any) -> Options:
    """Parse and check the options once; bad values stop the run with one line."""
    cached = getattr(environment, "_rabbitscale_options", None)
    if cached is not None:
        return cached
    o = environment.parsed_options
    try:
        mix = parse_task_mix(o.task_mix)
        result = Options(
            task_rate=parse_rate_per_s(o.task_rate), webhook_rate=parse_rate_per_s(o.webhook_rate),
            burst_rates=tuple(parse_rate_per_s(r) for r in str(o.burst_rates).split(",") if r),
            mix=mix, payload_bytes=parse_size_bytes(o.payload_size),
            virtual_keys=max(1, int(o.virtual_keys)), transport=o.transport,
            poisson=o.arrivals == "poisson")
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


def _worker_position(environment: Any) -> tuple[int, int]:
    runner = environment.runner
    count = int(os.environ.get("RABBITSCALE_WORKERS", "1") or 1)
    if isinstance(runner, WorkerRunner):
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
        streams = environment.__dict__.setdefault("_rabbitscale_streams", {})
        stream = streams.get(name)
        if stream is None:
            index, count = _worker_position(environment)
            start = float(os.environ.get("RABBITSCALE_START_AT", "0") or 0) or time.time()
            stream = streams[name] = Stream(name, Pacer(
                rate, start, worker_index=index, worker_count=count,
                poisson=options(environment).poisson, end_s=end_s))
        return stream


# --- per-worker HDR histograms, merged on the master -------------------------------------

_HISTOGRAMS: dict[str, Any] = {}


def record(name: str, seconds: float) -> None:
    h = _HISTOGRAMS.get(name)
    if h is None:
        h = _HISTOGRAMS[name] = latency.new_histogram()
    latency.record_s(h, seconds)


_MERGED: dict[str, Any] = {}


def _merge_into(name: str, encoded: str) -> None:
    h = _MERGED.get(name)
    if h is None:
        h = _MERGED[name] = latency.new_histogram()
    h.add(latency.decode(encoded))


@events.report_to_master.add_listener
def _ship(client_id: str, data: dict[str, Any]) -> None:
    data["rabbitscale_hdr"] = {name: latency.encode(h) for name, h in _HISTOGRAMS.items()}
    for h in _HISTOGRAMS.values():
        h.reset()


@events.worker_report.add_listener
def _receive(client_id: str, data: dict[str, Any]) -> None:
    for name, encoded in data.get("rabbitscale_hdr", {}).items():
        _merge_into(name, encoded)


@events.quitting.add_listener
def _dump(environment: Any, **_: Any) -> None:
    """Write merged histograms (master) or local ones (single process) to the run dir."""
    if isinstance(environment.runner, WorkerRunner):
        return
    if not isinstance(environment.runner, MasterRunner):
        for name, h in _HISTOGRAMS.items():
            _merge_into(name, latency.encode(h))
    run_dir = os.environ.get("RABBITSCALE_RUN_DIR")
    if not run_dir:
        return
    out = Path(run_dir) / "locust_hdr"
    out.mkdir(parents=True, exist_ok=True)
    summary = {}
    for name, h in _MERGED.items():
        (out / f"{name}.hdr").write_text(latency.encode(h))
        summary[name] = latency.summary_ms(h)
    (out / "summary.json").write_text(json.dumps(summary, indent=2))


# --- users --------------------------------------------------------------------------------


class OpenModelMixin:
    """Take slots from a stream, sleep until each, send one task; never closed-loop."""

    scenario = "sustained_tasks"  # which schedule (scenarios/schedule.py) the stream follows
    stream_name = "tasks"
    environment: Any

    def rate(self) -> RateFn:
        return streams(self.scenario, rates(self.environment),
                       run_time_s(self.environment))[self.stream_name]

    def end_s(self) -> float:
        return run_time_s(self.environment)

    def make_task(self, intended: float) -> Task:
        raise NotImplementedError

    def open_model_loop(self) -> None:
        stream = Stream.get(self.environment, self.stream_name, self.rate(), self.end_s())
        driver: TaskDriver = self.driver()  # type: ignore[attr-defined]  # from the user class
        while True:
            slot = stream.pacer.next_slot()
            if slot is None:
                gevent.sleep(3600)  # schedule over; Locust's run time ends the test
                continue
            wait = slot - time.time()
            if wait > 0:
                gevent.sleep(wait)
            lateness = max(0.0, time.time() - slot)
            record(f"{self.stream_name}_send_delay", lateness)
            task = self.make_task(slot)
            sent = driver.send(task)
            if driver.request_type == "AMQP":
                self.environment.events.request.fire(
                    request_type="AMQP", name=f"publish {task.kind}",
                    response_time=sent.response_time_ms, response_length=sent.length,
                    exception=None if sent.ok else RuntimeError(sent.outcome), context={})
            record(f"{self.stream_name}_request", sent.response_time_ms / 1000)


class TaskMixin(OpenModelMixin):
    """Video, image and spend tasks over many virtual keys, ~10 KB lognormal payloads."""

    def make_task(self, intended: float) -> Task:
        o = options(self.environment)
        rng = self._rng()
        kinds = list(o.mix)
        kind = rng.choices(kinds, weights=[o.mix[k] for k in kinds])[0]
        sigma = 0.5
        size = int(rng.lognormvariate(math.log(o.payload_bytes) - sigma**2 / 2, sigma))
        return Task(kind, rng.randint(1, o.virtual_keys), str(uuid.uuid4()), size, intended,
                    amount=round(rng.uniform(0.001, 0.1), 6))

    def _rng(self) -> random.Random:
        rng = getattr(self, "_random", None)
        if rng is None:
            rng = self._random = random.Random()
        return rng


class WebhookMixin(OpenModelMixin):
    stream_name = "webhooks"

    def make_task(self, intended: float) -> Task:
        target = os.environ.get("RABBITSCALE_WEBHOOK_URL", "https://example.com/hook")
        return Task("webhook", 1, str(uuid.uuid4()), 1000, intended, webhook_url=target)


def _keys() -> VirtualKeys:
    secret = os.environ.get("RABBITSCALE_API_SECRET")
    if not secret:
        raise SystemExit("error: set RABBITSCALE_API_SECRET to the stack's secret")
    return VirtualKeys(secret)


class HttpTaskUser(FastHttpUser):
    """Base for HTTP-driven open-model users (through the stack's API)."""

    abstract = True
    host = os.environ.get("RABBITSCALE_API_URL", "http://127.0.0.1:5000")
    connection_timeout = 10.0
    network_timeout = 30.0

    def driver(self) -> TaskDriver:
        if options(self.environment).transport == "amqp":
            return AmqpDriver()
        return HttpDriver(self.client, _keys())


class AmqpTaskUser(User):
    """Base for users that publish straight to the broker."""

    abstract = True

    def driver(self) -> TaskDriver:
        return AmqpDriver()
