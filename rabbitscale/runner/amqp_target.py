"""``rabbitscale run SCENARIO --target amqp://USER:PASS@HOST:PORT/VHOST``: load any MassTransit
system through its broker, from outside.

Locust's users publish MassTransit envelopes (camelCase, as a .NET publisher writes them) to
the system's message-type exchanges on the scenario's schedule, with publisher confirms; the
run declares, purges and consumes nothing, and reads the broker through the management API
read-only. The ledger comes from the broker's own counters on the queues each message type
reaches, taken before the load and after the drain: owed (confirmed x queues reached) =
consumed (acks; MassTransit acks a message it moves to ``_error`` or ``_skipped``) + still
queued + lost. Latency is what the broker shows (queue wait derived from depth and ack rate)
and, with ``--app-metrics``, what the application's MassTransit meters recorded.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import os
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from rabbitscale.broker.management import Management
from rabbitscale.broker.observe import ManagementSource
from rabbitscale.core import rundir
from rabbitscale.core.errors import BadInput, ConfigError
from rabbitscale.core.urls import check_url
from rabbitscale.runner import app_metrics, outcome, output, slo, validity
from rabbitscale.runner.load import LoadSpec, LocustProcesses, amqp_publishes, start_delay_s
from rabbitscale.runner.run import RunOptions, latency_scopes, run_kinds
from rabbitscale.runner.sampler import Sampler
from rabbitscale.scenarios import contract, registry
from rabbitscale.topology import naming
from rabbitscale.topology.profile_file import profile_env
from rabbitscale.topology.profiles import Profile
from rabbitscale.topology.settings import (
    ENV_PREFIX,
    STATS_INTERVAL_S,
    RabbitSettings,
    settings_from_env,
)
from rabbitscale.topology.tasks import format_task_mix, parse_task_mix

SIDE_QUEUES = ("_error", "_skipped")
NO_API = "http://127.0.0.1:9"  # Locust wants a host; an AMQP run calls none


@dataclass
class AmqpTargetOptions:
    url: str  # amqp://USER:PASS@HOST:PORT/VHOST
    management_url: str | None = None  # default: http://HOST:15672
    app_metrics: str | None = None  # the application's Prometheus endpoint


def target_settings(base: RabbitSettings, t: AmqpTargetOptions) -> RabbitSettings:
    """The profile's settings with the target's host, credentials and vhost."""
    try:
        settings = settings_from_env({"AMQP_URL": t.url}, base)
    except ConfigError as exc:
        raise BadInput(f"--target: {str(exc).removeprefix('AMQP_URL: ')}") from None
    if t.management_url:
        check_url(t.management_url, "the management API", "--management")
        settings = dataclasses.replace(settings, management_url=t.management_url)
    return settings


@dataclass(frozen=True)
class Counts:
    """A queue's cumulative counters and depth, as the management API shows them."""

    acked: int = 0
    arrived: int = 0
    messages: int = 0


async def read_counts(mgmt: Management, vhost: str) -> dict[str, Counts]:
    out = {}
    for q in await mgmt.queues(vhost):
        stats = q.get("message_stats") or {}
        out[q["name"]] = Counts(int(stats.get("ack") or 0), int(stats.get("publish") or 0),
                                int(q.get("messages") or 0))
    return out


class AmqpTargetRun:
    def __init__(self, settings: RabbitSettings, profile: Profile, o: RunOptions,
                 t: AmqpTargetOptions) -> None:
        if o.fault:
            raise BadInput("--target: faults act on the reference stack; a black-box run may "
                           "not touch the system under test")
        self.scenario = registry.get(o.scenario)
        if self.scenario.scales_out:
            raise BadInput(f"--target: {o.scenario} starts consumer instances, which a "
                           f"black-box run cannot do; use {registry.SUSTAINED_TASKS.name} with "
                           f"stepped --task-rate")
        if t.app_metrics:
            check_url(t.app_metrics, "the application's metrics", "--app-metrics")
        self.settings = target_settings(settings, t)
        self.o, self.t, self.profile = o, t, profile
        # no mix given: every task kind (discover writes one per message type) at an equal share
        self.mix = parse_task_mix(o.task_mix, profile) if o.task_mix else {
            k: 1.0 for k, kind in profile.tasks.items() if kind.stream == registry.TASKS}
        if not self.mix:
            raise BadInput(f"--target: profile {profile.name!r} has no task kind to publish")
        self.kinds = run_kinds(self.scenario, profile, self.mix)
        self.queues = sorted({ep.queue for k in self.kinds
                              for ep in profile.consumers_of(profile.task(k).message)})
        self.name, self.run_dir = rundir.place(o.out, o.scenario)
        self.thresholds = slo.load_thresholds(
            o.thresholds_file, profile, o.threshold_exprs, error_rate_max=max(
                [ep.failure_probability for ep in profile.endpoints] + [0.0]) * 1.5)
        self.scopes = latency_scopes(profile)
        slo.check_scopes(self.thresholds, self.scopes, f"profile {profile.name!r}")
        self.spec = LoadSpec(
            scenario=self.scenario, duration_s=o.duration_s, rates=o.rates, payload=o.payload,
            transport="amqp", task_mix=format_task_mix(self.mix),
            users=o.users or self.scenario.users(o.rates), workers=o.workers)

    def say(self, text: str) -> None:
        if not self.o.quiet:
            print(text, flush=True)

    async def execute(self) -> int:
        self.run_dir.mkdir(parents=True, exist_ok=True)
        async with contextlib.AsyncExitStack() as cleanup:
            mgmt = Management(self.settings, read_only=True)
            cleanup.push_async_callback(mgmt.close)
            await mgmt.require_vhost(self.settings.vhost, "--target")
            await self._check_topology(mgmt)
            result = await self._execute(mgmt, cleanup)
        return output.conclude(self.run_dir, result, _NoRecords(), say=self.say,
                               quiet=self.o.quiet, junit=self.o.junit)

    async def _check_topology(self, mgmt: Management) -> None:
        """Every exchange the run publishes to, and every queue it counts, exists: the run
        declares nothing, so a wrong file is refused before the load, not found lost after."""
        exchanges = {x["name"] for x in await mgmt.exchanges(self.settings.vhost)}
        queues = {q["name"] for q in await mgmt.queues(self.settings.vhost)}
        for kind in self.kinds:
            mt = self.profile.messages[self.profile.task(kind).message]
            if mt.exchange not in exchanges:
                raise BadInput(f"--target: vhost {self.settings.vhost!r} has no exchange "
                               f"{mt.exchange!r} (message type {mt.name} of task kind "
                               f"{kind!r}); does the profile file describe this system?")
        missing = [q for q in self.queues if q not in queues]
        if missing:
            raise BadInput(f"--target: vhost {self.settings.vhost!r} has no queue "
                           f"{missing[0]!r}; does the profile file describe this system?")

    async def _execute(self, mgmt: Management, cleanup: contextlib.AsyncExitStack
                       ) -> output.RunResult:
        o, t, vhost = self.o, self.t, self.settings.vhost
        before = await read_counts(mgmt, vhost)
        app_before = await app_metrics.scrape(t.app_metrics) if t.app_metrics else None
        sampler = Sampler(ManagementSource(mgmt), vhost, list(self.queues), self.run_dir,
                          interval_s=max(o.sample_interval_s, 1.0),
                          main_queue=lambda q: not q.endswith(SIDE_QUEUES))
        sampler.start()
        cleanup.push_async_callback(sampler.stop)
        self.say(f"run {self.name}: scenario {o.scenario}, {o.duration_s:g}s, publishing "
                 f"{format_task_mix(self.mix)} to the message-type exchanges of vhost {vhost!r}"
                 f" on {self.settings.host}:{self.settings.port} (confirmed; nothing declared),"
                 f" counting {len(self.queues)} queue(s) read-only")
        start_at = time.time() + start_delay_s(self.spec)
        own = ("HOST", "PORT", "USERNAME", "PASSWORD", "VHOST")  # the URL says where
        env = {**{k: v for k, v in os.environ.items()
                  if k.removeprefix(ENV_PREFIX) not in own or not k.startswith(ENV_PREFIX)},
               "AMQP_URL": t.url, contract.RUN_NAME.env: self.name,
               contract.ENV_RUN_DIR: str(self.run_dir), contract.START_AT.env: f"{start_at:.3f}",
               **profile_env(self.profile)}
        locust = LocustProcesses(self.spec, self.run_dir, NO_API, env)
        cleanup.push_async_callback(locust.close)
        await locust.start()
        error = await self._watch(locust, mgmt, sampler, before, start_at)
        await locust.close()
        load_end = time.time()
        publishes = amqp_publishes(self.run_dir)
        owed = sum(ok * self.profile.fanout(self.profile.task(k).message)
                   for k, (_, ok) in publishes.items() if k in self.profile.tasks)
        after = await self._drain(mgmt, before, owed, sampler)
        await sampler.stop()
        app = None
        if t.app_metrics and app_before is not None:
            app = app_metrics.difference(app_before, await app_metrics.scrape(t.app_metrics))

        def delta(name: str, field: str) -> int:
            return max(0, getattr(after.get(name, Counts()), field)
                       - getattr(before.get(name, Counts()), field))

        facts = outcome.AmqpFacts(
            scenario=o.scenario, duration_s=o.duration_s, rates=o.rates,
            published={k: n for k, (n, _) in publishes.items()},
            confirmed={k: ok for k, (_, ok) in publishes.items()}, owed=owed,
            consumed=sum(delta(q, "acked") for q in self.queues),
            arrived=sum(delta(q, "arrived") for q in self.queues),
            faulted=sum(delta(naming.error_queue(q), "arrived") for q in self.queues),
            skipped=sum(delta(naming.skipped_queue(q), "arrived") for q in self.queues),
            still_queued=sum(delta(q, "messages") for q in self.queues),
            peak_depth=sampler.peak_depth(), queue_wait_s=sampler.max_age_s(),
            peak_memory_fraction=sampler.peak_memory_fraction(),
            memory_alarm=sampler.memory_alarm(), app=app, error=error,
            drain_timeout_s=o.drain_timeout_s)
        options = {k: (str(v) if isinstance(v, Path) else v) for k, v in asdict(o).items()}
        send_delays = validity.read_send_delays(self.run_dir)
        measured = validity.checks(send_delays, locust.cpu_fractions(), {})
        # no completion records: a latency threshold is "not measured" (the application's
        # meters are reported beside, not judged against the run's own metrics)
        checks = slo.latency_checks(self.thresholds, {}, self.scopes) + measured
        target = {**asdict(t), "url": _masked(t.url)}
        latency = {"queue_wait_derived_s": round(facts.queue_wait_s, 3),
                   **({"application": app} if app is not None else {})}
        for line in _latency_lines(latency):
            self.say(line)
        return output.RunResult(
            name=self.name, scenario=o.scenario,
            outcome=outcome.extended(outcome.judge_amqp(facts, self.thresholds), checks),
            started_at=start_at,
            load_ended_at=load_end, duration_s=o.duration_s, instances=0, workers=o.workers,
            transport="amqp", rates=o.rates, thresholds=self.thresholds,
            peak_depth=facts.peak_depth,
            config={"mode": "black-box amqp", "target": target["url"],
                    "rabbitmq": self.settings.masked(), "options": options,
                    "target_options": target, "profile": self.profile.name},
            extra={"mode": "black-box amqp", "target": target["url"], "queues": self.queues,
                   "latency": latency, "validity": validity.summary(send_delays, measured)})

    async def _watch(self, locust: LocustProcesses, mgmt: Management, sampler: Sampler,
                     before: dict[str, Counts], start_at: float) -> str:
        progress = output.Progress(self.say, "consumed")
        while locust.running:
            await asyncio.sleep(1.0)
            now = time.time()
            if now > start_at + self.o.duration_s + 120:
                return "Locust did not finish in time"
            locust.sample_cpu()
            if progress.due(now, start_at):
                counts = await read_counts(mgmt, self.settings.vhost)
                consumed = sum(max(0, counts.get(q, Counts()).acked - before[q].acked)
                               for q in self.queues if q in before)
                progress.tick(now, start_at, consumed, sampler.current_depth(), None)
        return await locust.wait()

    async def _drain(self, mgmt: Management, before: dict[str, Counts], owed: int,
                     sampler: Sampler) -> dict[str, Counts]:
        """Until every owed delivery is acked and the queues are back to their depth before
        the run (or the timeout); then one statistics interval more, since the management
        API's counters can be that old."""
        deadline = time.time() + self.o.drain_timeout_s
        while True:
            counts = await read_counts(mgmt, self.settings.vhost)
            acked = sum(max(0, counts.get(q, Counts()).acked - before.get(q, Counts()).acked)
                        for q in self.queues)
            queued = sum(max(0, counts.get(q, Counts()).messages
                             - before.get(q, Counts()).messages) for q in self.queues)
            if (acked >= owed and not queued) or time.time() >= deadline:
                break
            await asyncio.sleep(1.0)
        await sampler.sample()
        await asyncio.sleep(min(STATS_INTERVAL_S, max(0.0, deadline - time.time())))
        return await read_counts(mgmt, self.settings.vhost)


def _masked(url: str) -> str:
    from urllib.parse import urlsplit, urlunsplit

    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.replace(f":{parts.password}@", ":***@")
    return urlunsplit(parts._replace(netloc=netloc))


def _latency_lines(latency: dict[str, Any]) -> list[str]:
    lines = [f"latency: queue wait (derived from depth / ack rate) at most "
             f"{latency['queue_wait_derived_s']:g}s"]
    for name, h in (latency.get("application") or {}).items():
        if isinstance(h, dict) and h.get("count"):
            lines.append(f"latency: {name} (the application's meter): {h['count']} recorded, "
                         f"p50 {_ms(h['p50_ms'])}, p99 {_ms(h['p99_ms'])}")
    return lines


def _ms(v: float | None) -> str:
    return "-" if v is None else f"{v:.3g} ms"


class _NoRecords:
    """A black-box AMQP run has no completion records: its figures are the broker's."""

    def histograms(self) -> dict[str, dict[str, Any]]:
        return {}

    def throughput(self) -> dict[tuple[int, str], int]:
        return {}
