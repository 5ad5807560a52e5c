"""``rabbitscale run SCENARIO --target URL``: load a system rabbitscale did not start and may
not touch.

Locust drives the target's API with the user's keys; every task carries a callback URL of its
own under rabbitscale's receiver (runner/callbacks.py), which measures end-to-end latency
on rabbitscale's clock; the broker is only observed, read-only, in the target's vhost, through
the management API or rabbitmq_prometheus: nothing is declared, purged, published or
consumed there. The checks, run directory and report are those of any run; what black-box mode
cannot know is reported as "not measured".
"""

from __future__ import annotations

import asyncio
import contextlib
import csv
import json
import os
import socket
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

from rabbitscale.broker.management import Management
from rabbitscale.broker.observe import BrokerSource, ManagementSource
from rabbitscale.broker.prometheus import PrometheusSource
from rabbitscale.core import rundir
from rabbitscale.core.errors import (
    BadInput,
    Unavailable,
)
from rabbitscale.core.urls import check_url
from rabbitscale.runner import outcome, output, slo, validity
from rabbitscale.runner.callbacks import CallbackLedger, CallbackReceiver
from rabbitscale.runner.load import LoadSpec, LocustProcesses, start_delay_s
from rabbitscale.runner.run import RunOptions, run_kinds
from rabbitscale.runner.sampler import Sampler
from rabbitscale.scenarios import contract, registry
from rabbitscale.scenarios.callback_urls import CallbackPlan, new_secret
from rabbitscale.topology.profile_file import profile_env
from rabbitscale.topology.profiles import Profile
from rabbitscale.topology.settings import STATS_INTERVAL_S, RabbitSettings
from rabbitscale.topology.tasks import format_task_mix, parse_task_mix

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


class TargetRun:
    def __init__(self, settings: RabbitSettings, profile: Profile, o: RunOptions,
                 t: TargetOptions, api_keys: list[str]) -> None:
        if o.transport != "http":
            raise BadInput("--target: the AMQP transport publishes to the broker; a black-box "
                           "run only calls the target's API (use --transport http)")
        if o.fault:
            raise BadInput("--target: faults act on the reference stack; a black-box run may "
                           "not touch the system under test")
        self.scenario = registry.get(o.scenario)
        if self.scenario.scales_out:
            raise BadInput(f"--target: {o.scenario} starts consumer instances, which a "
                           f"black-box run cannot do; use {registry.SUSTAINED_TASKS.name} with "
                           f"stepped --task-rate")
        self.target_host, self.target_port = check_url(t.url, "the target", "--target")
        if t.callback_url:
            check_url(t.callback_url, "the callback URL", "--callback-url")
        if not api_keys:
            raise BadInput(f"--target: no API key: pass --api-key or set "
                           f"{contract.API_KEYS.env} (comma-separated)")
        self.o, self.t = o, t
        self.profile = profile
        self.mix = parse_task_mix(o.task_mix, profile) if o.task_mix else profile.default_mix
        self.kinds = run_kinds(self.scenario, profile, self.mix)
        unrouted = [k for k in self.kinds if profile.task(k).route is None]
        if unrouted:
            raise BadInput(f"--target: task kind {unrouted[0]!r} of profile {profile.name!r} "
                           f"has no route to send it to over HTTP")
        self.api_keys = api_keys
        self.settings = settings
        self.vhost = settings.vhost
        self.name, self.run_dir = rundir.place(o.out, o.scenario)
        self.thresholds = slo.load_thresholds(o.thresholds_file, profile, o.threshold_exprs)
        self.scopes = {k: [f"callback-{k}"] for k in profile.tasks}  # callbacks, by kind
        slo.check_scopes(self.thresholds, self.scopes, f"the task kinds of profile "
                                                       f"{profile.name!r} (a black-box run "
                                                       f"measures latency per kind)")
        self.ledger = CallbackLedger(burst_max_lag_s=self.thresholds.burst_max_lag_s,
                                     burst_kind=profile.webhook_kind)
        self.secret = new_secret()
        self.spec = LoadSpec(
            scenario=self.scenario, duration_s=o.duration_s, rates=o.rates, payload=o.payload,
            transport="http", task_mix=format_task_mix(self.mix),
            users=o.users or self.scenario.users(o.rates), workers=o.workers,
            expect_workers=t.expect_workers, master_port=t.master_port)

    def say(self, text: str) -> None:
        if not self.o.quiet:
            print(text, flush=True)

    def _check_target(self) -> None:
        try:
            with socket.create_connection((self.target_host, self.target_port), timeout=5):
                pass
        except OSError as exc:
            raise Unavailable(f"cannot reach the target at {self.t.url}: "
                              f"{exc.strerror or exc}; check --target") from None

    async def _source(self, cleanup: contextlib.AsyncExitStack) -> BrokerSource:
        if self.t.prometheus:
            for url in self.t.prometheus:
                check_url(url, "a rabbitmq_prometheus endpoint", "--prometheus")
            prom = PrometheusSource(self.t.prometheus)
            cleanup.push_async_callback(prom.close)
            await prom.nodes()  # reachable, or Unavailable
            return prom
        mgmt = Management(self.settings, read_only=True)
        cleanup.push_async_callback(mgmt.close)
        await mgmt.require_vhost(self.vhost)
        return ManagementSource(mgmt)

    async def execute(self) -> int:
        self._check_target()
        self.run_dir.mkdir(parents=True, exist_ok=True)
        async with contextlib.AsyncExitStack() as cleanup:
            source = await self._source(cleanup)
            result = await self._execute(source, cleanup)
        return output.conclude(self.run_dir, result, self.ledger, say=self.say,
                               quiet=self.o.quiet, junit=self.o.junit)

    async def _execute(self, source: BrokerSource, cleanup: contextlib.AsyncExitStack
                       ) -> output.RunResult:
        o, t = self.o, self.t
        receiver = CallbackReceiver(CallbackPlan("", self.name, self.secret), self.ledger)
        if t.callback_url:
            parts = urlsplit(t.callback_url)
            port = await receiver.start("0.0.0.0", parts.port or 80)
            callback_url = t.callback_url.rstrip("/")
        else:
            port = await receiver.start("127.0.0.1", 0)
            callback_url = f"http://127.0.0.1:{port}"
        cleanup.push_async_callback(receiver.close)
        sampler = Sampler(source, self.vhost, None, self.run_dir,
                          interval_s=max(o.sample_interval_s, 1.0),
                          main_queue=lambda q: not q.endswith(SIDE_QUEUES))
        sampler.start()
        cleanup.push_async_callback(sampler.stop)
        self.say(f"run {self.name}: scenario {o.scenario} against {t.url}, {o.duration_s:g}s, "
                 f"vhost {self.vhost!r} observed read-only through {source.name}, callbacks to "
                 f"{callback_url}")
        distributed = bool(t.expect_workers)
        start_at = 0.0 if distributed else time.time() + start_delay_s(self.spec)
        env = {**os.environ, contract.ENV_API_URL: t.url.rstrip("/"),
               contract.API_KEYS.env: ",".join(self.api_keys),
               contract.CALLBACK_URL.env: callback_url,
               contract.CALLBACK_SECRET.env: self.secret,
               contract.RUN_NAME.env: self.name, contract.ENV_RUN_DIR: str(self.run_dir),
               contract.START_AT.env: f"{start_at:.3f}",
               contract.POLL_INTERVAL.env: f"{t.poll_interval_s:g}",
               **profile_env(self.profile)}
        locust = LocustProcesses(self.spec, self.run_dir, t.url.rstrip("/"), env)
        cleanup.push_async_callback(locust.close)
        await locust.start()
        if distributed:
            self.say(f"  waiting for {t.expect_workers} worker(s): rabbitscale worker --master "
                     f"THIS_HOST:{t.master_port}")
            start_at = await self._chosen_start(locust)
        self._track_windows(start_at)
        error = await self._watch(locust, sampler, start_at)
        await locust.close()
        load_end = time.time()
        requests, accepted, unauthorised = locust_counts(self.run_dir, self.profile)
        tracked = self._tracked()
        await self._drain(sum(accepted.get(k, 0) for k in tracked), sampler)
        await sampler.stop()
        facts = outcome.TargetFacts(
            scenario=o.scenario, duration_s=o.duration_s, rates=o.rates, requests=requests,
            accepted=accepted, unauthorised=unauthorised, tracked=tracked,
            callbacks=dict(self.ledger.final), duplicates=self.ledger.duplicates,
            progress=self.ledger.progress, unknown=self.ledger.unknown,
            pending=sum(d for q, d in sampler.last_depth.items() if not q.endswith(SIDE_QUEUES))
            if sampler.samples else None,
            faulted=sampler.growth(lambda q: q.endswith("_error")) if sampler.samples else None,
            burst_absorbed=tuple(self.ledger.absorbed()), peak_depth=sampler.peak_depth(),
            max_age_s=sampler.max_age_s(), peak_memory_fraction=sampler.peak_memory_fraction(),
            memory_alarm=sampler.memory_alarm(), missing_workers=self._missing_workers(),
            error=error, drain_timeout_s=o.drain_timeout_s)
        options = {k: (str(v) if isinstance(v, Path) else v) for k, v in asdict(o).items()}
        send_delays = validity.read_send_delays(self.run_dir)
        measured = validity.checks(send_delays, locust.cpu_fractions(), locust.clock_offsets())
        checks = slo.latency_checks(self.thresholds, self.ledger.histograms(), self.scopes) \
            + measured
        return output.RunResult(
            name=self.name, scenario=o.scenario, outcome=outcome.extended(
                outcome.judge_target(facts, self.thresholds), checks),
            started_at=start_at, load_ended_at=load_end, duration_s=o.duration_s, instances=0,
            workers=o.workers + t.expect_workers, transport="http", rates=o.rates,
            thresholds=self.thresholds, peak_depth=facts.peak_depth,
            config={"mode": "black-box", "target": t.url, "broker_source": source.name,
                    "rabbitmq": {**self.settings.masked(), "vhost": self.vhost},
                    "options": options, "target_options": asdict(t)},
            extra={"mode": "black-box", "target": t.url, "broker_source": source.name,
                   "callback_url": callback_url,
                   "validity": validity.summary(send_delays, measured)})

    def _tracked(self) -> tuple[str, ...]:
        """Kinds whose tasks come back: webhooks (their URL is a callback), and kinds whose
        route carries a callback URL (or is polled)."""
        return tuple(k for k in self.kinds if self.profile.task(k).calls_back)

    def _track_windows(self, start_at: float) -> None:
        self.ledger.track_windows([
            (start_at + w0 - 0.5 / rate, start_at + w1 - 0.5 / rate)
            for w0, w1, rate, _ in outcome.burst_targets(self.o.scenario, self.o.rates,
                                                         self.o.duration_s)])

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

    async def _watch(self, locust: LocustProcesses, sampler: Sampler, start_at: float) -> str:
        progress = output.Progress(self.say, "callbacks")
        while locust.running:
            await asyncio.sleep(1.0)
            now = time.time()
            if start_at and now > start_at + self.o.duration_s + 120:
                return "Locust did not finish in time"
            locust.sample_cpu()
            progress.tick(now, start_at, self.ledger.unique, sampler.current_depth(),
                          self.ledger.e2e_p99_ms())
        return await locust.wait()

    async def _drain(self, owed: int, sampler: Sampler) -> None:
        """Wait for the callbacks of every accepted task (or the timeout), then for a broker
        figure taken after them: the management API's can be a statistics interval old."""
        deadline = time.time() + self.o.drain_timeout_s
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
