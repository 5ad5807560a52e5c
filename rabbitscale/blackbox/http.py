"""``rabbitscale run SCENARIO --target URL``: load a system rabbitscale did not start and may
not touch.

Locust drives the target's API with the user's keys; every task carries a callback URL of its
own under rabbitscale's receiver (blackbox/callbacks.py), which measures end-to-end latency
on rabbitscale's clock; the broker is only observed, read-only, in the target's vhost, through
the management API or rabbitmq_prometheus: nothing is declared, purged, published or
consumed there. The checks, run directory and report are those of any run; what black-box mode
cannot know is reported as "not measured".
"""

from __future__ import annotations

import asyncio
import contextlib
import csv
import dataclasses
import json
import os
import socket
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

from rabbitscale.blackbox.amqp import endpoint_lines
from rabbitscale.blackbox.base import BlackBoxRun, Consumers, MeterSources
from rabbitscale.blackbox.callbacks import CallbackLedger, CallbackReceiver
from rabbitscale.broker.management import Management
from rabbitscale.broker.observe import BrokerSource, ManagementSource
from rabbitscale.broker.prometheus import PrometheusSource
from rabbitscale.core import rundir
from rabbitscale.core.errors import (
    BadInput,
    Unavailable,
)
from rabbitscale.core.urls import check_url, masked
from rabbitscale.engine import output
from rabbitscale.engine.base import LoadOptions
from rabbitscale.engine.load import LocustProcesses, start_delay_s
from rabbitscale.engine.sampler import Probes, Sampler
from rabbitscale.engine.stack import latency_scopes
from rabbitscale.judge import outcome, slo
from rabbitscale.scenarios import contract
from rabbitscale.scenarios.callback_urls import CallbackPlan, new_secret
from rabbitscale.topology.profile_file import profile_spec
from rabbitscale.topology.profiles import Profile
from rabbitscale.topology.settings import STATS_INTERVAL_S, RabbitSettings

SIDE_QUEUES = ("_error", "_skipped")


@dataclass
class TargetOptions:
    url: str
    prometheus: list[str] = field(default_factory=list)  # rabbitmq_prometheus endpoints
    callback_url: str | None = None  # where the target reaches the receiver
    poll_interval_s: float = 0.0  # > 0: follow video/image tasks by polling instead
    expect_workers: int = 0  # Locust workers joining from other machines
    master_port: int = 5557
    workers_wait_s: float = contract.WORKERS_MAX_WAIT_S


def locust_counts(run_dir: Path, profile: Profile
                  ) -> tuple[dict[str, int], dict[str, int], int]:
    """(requests by kind, 2xx by kind, 401s) from Locust's CSVs (a request is named by its
    route's path)."""
    kind_by_path = {k.route.path: k.name for k in profile.tasks.values() if k.route is not None}
    requests: dict[str, int] = {}
    accepted: dict[str, int] = {}
    stats = run_dir / rundir.LOCUST_STATS_CSV
    if stats.exists():
        with stats.open(newline="") as f:
            for row in csv.DictReader(f):
                kind = kind_by_path.get(row.get("Name", ""))
                if kind and row.get("Type") in ("POST", "PUT"):
                    n, failed = int(row["Request Count"]), int(row["Failure Count"])
                    requests[kind] = requests.get(kind, 0) + n
                    accepted[kind] = accepted.get(kind, 0) + n - failed
    unauthorised = 0
    failures = run_dir / f"{rundir.LOCUST_CSV_PREFIX}_failures.csv"
    if failures.exists():
        with failures.open(newline="") as f:
            unauthorised = sum(int(r.get("Occurrences") or 0) for r in csv.DictReader(f)
                               if "HTTP 401" in str(r.get("Error", "")))
    return requests, accepted, unauthorised


class TargetRun(BlackBoxRun):
    mode = "black-box"
    counted = "callbacks"
    watch_grace_s = 120.0
    measures = {"e2e": "the callbacks each task asks for (callback-KIND.e2e)"}

    def __init__(self, settings: RabbitSettings, profile: Profile, o: LoadOptions,
                 t: TargetOptions, api_keys: list[str],
                 sources: MeterSources | None = None) -> None:
        super().__init__(o, profile, sources)
        self.target_host, self.target_port = check_url(t.url, "the target", "--target")
        if t.callback_url:
            check_url(t.callback_url, "the callback URL", "--callback-url")
        for url in t.prometheus:
            check_url(url, "a rabbitmq_prometheus endpoint", "--prometheus")
        if not api_keys:
            raise BadInput(f"--target: no API key: pass --api-key or set "
                           f"{contract.API_KEYS.env} (comma-separated)")
        self.t = t
        unrouted = [k for k in self.kinds if profile.task(k).route is None]
        if unrouted:
            raise BadInput(f"--target: task kind {unrouted[0]!r} of profile {profile.name!r} "
                           f"has no route to send it to over HTTP")
        self.api_keys = api_keys
        self.settings = settings
        self.vhost = settings.vhost
        self.thresholds = slo.load_thresholds(o.thresholds_file, profile, o.threshold_exprs)
        self.check_thresholds(self.thresholds)
        self.queues = sorted({q for k in self.kinds for q in profile.queues_of(k)})
        self.scopes = {k: [f"callback-{k}"] for k in profile.tasks}  # callbacks, by kind
        slo.check_scopes(self.thresholds, self.scopes, f"the task kinds of profile "
                                                       f"{profile.name!r} (a black-box run "
                                                       f"measures latency per kind)")
        self.ledger = CallbackLedger(burst_max_lag_s=self.thresholds.burst_max_lag_s,
                                     burst_kind=profile.webhook_kind)
        self.secret = new_secret()
        self.spec = o.spec(self.scenario.users(o.rates), "http", self.mix_text,
                           expect_workers=t.expect_workers, master_port=t.master_port)

    async def check(self) -> None:
        """The target answers before anything starts (exit 3 otherwise)."""
        try:
            with socket.create_connection((self.target_host, self.target_port), timeout=5):
                pass
        except OSError as exc:
            raise Unavailable(f"cannot reach the target at {self.t.url}: "
                              f"{exc.strerror or exc}; check --target") from None

    async def prepare(self, cleanup: contextlib.AsyncExitStack) -> None:
        self.consumers: dict[str, Consumers] = {}
        if self.t.prometheus:
            prom = PrometheusSource(self.t.prometheus)
            cleanup.push_async_callback(prom.close)
            await prom.nodes()  # reachable, or Unavailable
            self.source: BrokerSource = prom
        else:
            mgmt = Management(self.settings, read_only=True)
            cleanup.push_async_callback(mgmt.close)
            await mgmt.require_vhost(self.vhost)
            self.consumers = await Consumers.read(mgmt, self.vhost)
            self.source = ManagementSource(mgmt)
        await self.meters_before()

    async def observe(self, cleanup: contextlib.AsyncExitStack) -> None:
        t = self.t
        receiver = CallbackReceiver(CallbackPlan("", self.name, self.secret), self.ledger)
        if t.callback_url:
            parts = urlsplit(t.callback_url)
            port = await receiver.start("0.0.0.0", parts.port or 80)
            self.callback_url = t.callback_url.rstrip("/")
        else:
            port = await receiver.start("127.0.0.1", 0)
            self.callback_url = f"http://127.0.0.1:{port}"
        cleanup.push_async_callback(receiver.close)
        self.sampler = Sampler(self.source, self.vhost, None, self.run_dir,
                               interval_s=max(self.opts.sample_interval_s, 1.0),
                               probes=Probes(main_queue=lambda q: not q.endswith(SIDE_QUEUES)))
        self.sampler.start()
        cleanup.push_async_callback(self.sampler.stop)

    async def load(self, cleanup: contextlib.AsyncExitStack) -> str:
        o, t = self.opts, self.t
        self.say(f"run {self.name}: scenario {o.scenario} against {t.url}, {o.duration_s:g}s, "
                 f"vhost {self.vhost!r} observed read-only through {self.source.name}, "
                 f"callbacks to {self.callback_url}")
        distributed = bool(t.expect_workers)
        self.start_at = 0.0 if distributed else time.time() + start_delay_s(self.spec)
        env = self.locust_env(self.start_at, **{
            contract.ENV_API_URL: t.url.rstrip("/"),
            contract.API_KEYS.env: ",".join(self.api_keys),
            contract.CALLBACK_URL.env: self.callback_url,
            contract.CALLBACK_SECRET.env: self.secret,
            contract.POLL_INTERVAL.env: f"{t.poll_interval_s:g}"})
        return await self.run_locust(cleanup, self.spec, t.url.rstrip("/"), env)

    async def started(self, locust: LocustProcesses) -> float:
        if not self.t.expect_workers:
            return self.start_at
        self.say(f"  waiting for {self.t.expect_workers} worker(s): rabbitscale worker --master "
                 f"THIS_HOST:{self.t.master_port}")
        return await self._chosen_start(locust)

    def track_windows(self) -> None:
        self._track_windows(self.start_at)

    async def progress(self) -> tuple[int, int, float | None]:
        return self.ledger.unique, self.sampler.current_depth(), self.ledger.e2e_p99_ms()

    async def drain(self) -> None:
        self.requests, self.accepted, self.unauthorised = locust_counts(self.run_dir,
                                                                         self.profile)
        self.tracked = self._tracked()
        await self._drain(sum(self.accepted.get(k, 0) for k in self.tracked), self.sampler)
        await self.sampler.stop()
        self.meters, self.meter_notes, _ = await self.meters_after()

    def measurements(self) -> output.Measurements:
        return self.ledger

    async def result(self) -> output.RunResult:
        o, t, sampler = self.opts, self.t, self.sampler
        facts = outcome.TargetFacts(
            scenario=o.scenario, duration_s=o.duration_s, rates=o.rates,
            requests=self.requests, accepted=self.accepted, unauthorised=self.unauthorised,
            tracked=self.tracked, callbacks=dict(self.ledger.final),
            duplicates=self.ledger.duplicates, progress=self.ledger.progress,
            unknown=self.ledger.unknown,
            pending=sum(d for q, d in sampler.last_depth.items() if not q.endswith(SIDE_QUEUES))
            if sampler.samples else None,
            faulted=sampler.growth(lambda q: q.endswith("_error")) if sampler.samples else None,
            burst_absorbed=tuple(self.ledger.absorbed()), peak_depth=sampler.peak_depth(),
            max_age_s=sampler.max_age_s(), peak_memory_fraction=sampler.peak_memory_fraction(),
            memory_alarm=sampler.memory_alarm(), missing_workers=self._missing_workers(),
            error=self.error, drain_timeout_s=o.drain_timeout_s)
        measured, validity = self.validity_checks()
        endpoints, keep_checks = self.endpoints(sampler, self.queues, self.consumers,
                                                self.meters)
        by_callbacks = dataclasses.replace(self.thresholds, latency=tuple(
            x for x in self.thresholds.latency if x.metric in self.measures))
        checks = keep_checks + slo.latency_checks(by_callbacks, self.ledger.histograms(),
                                                  self.scopes) \
            + slo.meter_latency_checks(self.meter_thresholds(self.thresholds), self.meters,
                                       latency_scopes(self.profile)) + measured
        for line in endpoint_lines(endpoints, self.meter_notes):
            self.say(line)
        ratios = [e.keep_up_ratio for e in endpoints if e.keep_up_ratio is not None]
        judged = outcome.judge_target(facts, self.thresholds)
        if ratios:  # the endpoints' keep-up, as find-max reads it
            judged = dataclasses.replace(judged, keep_up_ratio=min(ratios))
        return output.RunResult(
            name=self.name, profile=self.profile.name,
            scenario=o.scenario, mode=self.mode, outcome=outcome.extended(
                judged, checks),
            started_at=self.start_at, load_ended_at=self.load_ended_at,
            duration_s=o.duration_s, instances=0, workers=o.workers + t.expect_workers,
            transport="http", rates=o.rates, thresholds=self.thresholds,
            peak_depth=facts.peak_depth,
            config={"mode": self.mode, "target": t.url, "broker_source": self.source.name,
                    "rabbitmq": self.settings.where(), "options": self.options_record(),
                    "target_options": {**asdict(t), "url": masked(t.url),
                                       "callback_url": t.callback_url and
                                       masked(t.callback_url)},
                    "profile": self.profile.name, "profile_spec": profile_spec(self.profile)},
            extra={"target": t.url, "broker_source": self.source.name,
                   "callback_url": self.callback_url, "endpoints": endpoints,
                   "validity": validity})

    def _tracked(self) -> tuple[str, ...]:
        """Kinds whose tasks come back: webhooks (their URL is a callback), and kinds whose
        route carries a callback URL (or is polled)."""
        return tuple(k for k in self.kinds if self.profile.task(k).calls_back)

    def _track_windows(self, start_at: float) -> None:
        self.ledger.track_windows([
            (start_at + w0 - 0.5 / rate, start_at + w1 - 0.5 / rate)
            for w0, w1, rate, _ in outcome.burst_targets(self.opts.scenario, self.opts.rates,
                                                         self.opts.duration_s)])

    async def _chosen_start(self, locust: LocustProcesses) -> float:
        """The start the Locust master fixed once every worker joined. A worker that never
        joins ends the run after ``workers_wait_s`` (Locust's master would wait forever: a
        CI job would hang until its own timeout)."""
        path = self.run_dir / contract.START_FILE
        wait_s = self.t.workers_wait_s
        deadline = time.monotonic() + wait_s
        while locust.running:
            if path.exists():
                with contextlib.suppress(ValueError, OSError):
                    return float(json.loads(path.read_text())["start_at"])
            if wait_s and time.monotonic() >= deadline:
                raise Unavailable(f"the {self.t.expect_workers} Locust worker(s) did not all "
                                  f"join within {wait_s:g}s: start `rabbitscale worker "
                                  f"--master THIS_HOST:{self.t.master_port}` on each, or "
                                  f"give --expect-workers-max-wait more time")
            await asyncio.sleep(0.2)
        return time.time()

    async def _drain(self, owed: int, sampler: Sampler) -> None:
        """Wait for the callbacks of every accepted task (or the timeout), then for a broker
        figure taken after them: the management API's can be a statistics interval old."""
        deadline = time.time() + self.opts.drain_timeout_s
        while time.time() < deadline and self.ledger.unique < owed:
            await asyncio.sleep(0.2)
        settle = min(deadline, time.time() + STATS_INTERVAL_S + 1.0)
        while time.time() < settle:
            await asyncio.sleep(1.0)
            await sampler.sample()
            if not sum(d for q, d in sampler.last_depth.items() if not q.endswith(SIDE_QUEUES)):
                return

    def _missing_workers(self) -> tuple[str, ...]:
        path = self.run_dir / contract.WORKERS_FILE
        if not path.exists():
            return ()
        try:
            workers = json.loads(path.read_text())
        except ValueError:
            return ()
        return tuple(f"worker {w.get('index')} ({w.get('id')})" for w in workers
                     if w.get("state") == "missing")


def read_keys(flags: list[str], environ: dict[str, str] | None = None) -> list[str]:
    """--api-key flags, else RABBITSCALE_TARGET_API_KEYS (comma-separated)."""
    env = os.environ if environ is None else environ
    keys = [k.strip() for k in flags if k.strip()]
    if not keys:
        keys = [k.strip() for k in env.get(contract.API_KEYS.env, "").split(",") if k.strip()]
    return keys
