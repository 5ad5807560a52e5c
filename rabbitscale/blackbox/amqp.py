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
import time
from dataclasses import asdict, dataclass
from typing import Any

from rabbitscale.blackbox import meters as app_metrics
from rabbitscale.blackbox.base import BlackBoxRun
from rabbitscale.broker import amqp
from rabbitscale.broker.management import Management
from rabbitscale.broker.observe import ManagementSource
from rabbitscale.core.errors import BadInput, ConfigError
from rabbitscale.core.urls import check_url, masked
from rabbitscale.engine import output
from rabbitscale.engine.base import LoadOptions
from rabbitscale.engine.load import amqp_publishes, start_delay_s
from rabbitscale.engine.sampler import Probes, Sampler
from rabbitscale.engine.stack import latency_scopes
from rabbitscale.judge import outcome, slo
from rabbitscale.topology import naming
from rabbitscale.topology.profiles import Profile
from rabbitscale.topology.settings import (
    ENV_PREFIX,
    STATS_INTERVAL_S,
    RabbitSettings,
    settings_from_env,
)

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


class AmqpTargetRun(BlackBoxRun):
    mode = "black-box amqp"
    counted = "consumed"
    watch_grace_s = 120.0
    measures = {"e2e": "MassTransit's delivery.duration (--app-metrics)",
                "processing": "MassTransit's consume.duration (--app-metrics)"}

    def __init__(self, settings: RabbitSettings, profile: Profile, o: LoadOptions,
                 t: AmqpTargetOptions) -> None:
        super().__init__(o, profile)
        if t.app_metrics:
            check_url(t.app_metrics, "the application's metrics", "--app-metrics")
        self.settings = target_settings(settings, t)
        self.t = t
        self.queues = sorted({ep.queue for k in self.kinds
                              for ep in profile.consumers_of(profile.task(k).message)})
        self.thresholds = slo.load_thresholds(
            o.thresholds_file, profile, o.threshold_exprs, error_rate_max=max(
                [ep.failure_probability for ep in profile.endpoints] + [0.0]) * 1.5)
        self.check_thresholds(self.thresholds)
        self.scopes = latency_scopes(profile)
        slo.check_scopes(self.thresholds, self.scopes, f"profile {profile.name!r}")
        self.spec = o.spec(self.scenario.users(o.rates), "amqp", self.mix_text)

    async def check(self) -> None:
        """The broker's AMQP port and management API answer, the vhost exists and holds every
        exchange the run publishes to and every queue it counts: before any load (exit 3,
        or 2 for a profile that does not describe the vhost)."""
        conn = await amqp.connect(self.settings, "rabbitscale-check")
        await conn.close()
        async with Management(self.settings, read_only=True) as mgmt:
            await mgmt.require_vhost(self.settings.vhost, "--target")
            await self._check_topology(mgmt)

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

    async def prepare(self, cleanup: contextlib.AsyncExitStack) -> None:
        mgmt = self.mgmt = Management(self.settings, read_only=True)
        cleanup.push_async_callback(mgmt.close)
        self.before = await read_counts(mgmt, self.settings.vhost)
        self.app_before = await app_metrics.scrape(self.t.app_metrics) \
            if self.t.app_metrics else None

    async def observe(self, cleanup: contextlib.AsyncExitStack) -> None:
        self.sampler = Sampler(ManagementSource(self.mgmt), self.settings.vhost,
                               list(self.queues), self.run_dir,
                               interval_s=max(self.opts.sample_interval_s, 1.0),
                               probes=Probes(main_queue=lambda q: not q.endswith(SIDE_QUEUES)))
        self.sampler.start()
        cleanup.push_async_callback(self.sampler.stop)

    async def load(self, cleanup: contextlib.AsyncExitStack) -> str:
        o, t, vhost = self.opts, self.t, self.settings.vhost
        self.say(f"run {self.name}: scenario {o.scenario}, {o.duration_s:g}s, publishing "
                 f"{self.mix_text} to the message-type exchanges of vhost {vhost!r}"
                 f" on {self.settings.host}:{self.settings.port} (confirmed; nothing declared),"
                 f" counting {len(self.queues)} queue(s) read-only")
        self.start_at = time.time() + start_delay_s(self.spec)
        own = ("HOST", "PORT", "USERNAME", "PASSWORD", "VHOST")  # the URL says where
        env = {k: v for k, v in self.locust_env(self.start_at, AMQP_URL=t.url).items()
               if k.removeprefix(ENV_PREFIX) not in own or not k.startswith(ENV_PREFIX)}
        return await self.run_locust(cleanup, self.spec, NO_API, env)

    async def progress(self) -> tuple[int, int, float | None]:
        counts = await read_counts(self.mgmt, self.settings.vhost)
        consumed = sum(max(0, counts.get(q, Counts()).acked - self.before[q].acked)
                       for q in self.queues if q in self.before)
        return consumed, self.sampler.current_depth(), None

    async def drain(self) -> None:
        self.publishes = amqp_publishes(self.run_dir)
        self.owed = sum(ok * self.profile.fanout(self.profile.task(k).message)
                        for k, (_, ok) in self.publishes.items() if k in self.profile.tasks)
        self.after = await self._drain(self.mgmt, self.before, self.owed, self.sampler)
        await self.sampler.stop()
        self.app = None
        if self.t.app_metrics and self.app_before is not None:
            self.app = app_metrics.difference(self.app_before,
                                              await app_metrics.scrape(self.t.app_metrics))

    def measurements(self) -> output.Measurements:
        return _NoRecords()

    async def result(self) -> output.RunResult:
        o, t, before, after, sampler = self.opts, self.t, self.before, self.after, self.sampler

        def delta(name: str, field: str) -> int:
            return max(0, getattr(after.get(name, Counts()), field)
                       - getattr(before.get(name, Counts()), field))

        facts = outcome.AmqpFacts(
            scenario=o.scenario, duration_s=o.duration_s, rates=o.rates,
            published={k: n for k, (n, _) in self.publishes.items()},
            confirmed={k: ok for k, (_, ok) in self.publishes.items()}, owed=self.owed,
            consumed=sum(delta(q, "acked") for q in self.queues),
            arrived=sum(delta(q, "arrived") for q in self.queues),
            faulted=sum(delta(naming.error_queue(q), "arrived") for q in self.queues),
            skipped=sum(delta(naming.skipped_queue(q), "arrived") for q in self.queues),
            still_queued=sum(delta(q, "messages") for q in self.queues),
            peak_depth=sampler.peak_depth(), queue_wait_s=sampler.max_age_s(),
            peak_memory_fraction=sampler.peak_memory_fraction(),
            memory_alarm=sampler.memory_alarm(), app=self.app, error=self.error,
            drain_timeout_s=o.drain_timeout_s)
        measured, validity = self.validity_checks(clock=False)
        checks = measured
        target = {**asdict(t), "url": masked(t.url)}
        latency = {"queue_wait_derived_s": round(facts.queue_wait_s, 3),
                   **({"application": self.app} if self.app is not None else {})}
        for line in _latency_lines(latency):
            self.say(line)
        return output.RunResult(
            name=self.name, scenario=o.scenario, mode=self.mode,
            outcome=outcome.extended(outcome.judge_amqp(facts, self.thresholds), checks),
            started_at=self.start_at, load_ended_at=self.load_ended_at,
            duration_s=o.duration_s, instances=0, workers=o.workers, transport="amqp",
            rates=o.rates, thresholds=self.thresholds, peak_depth=facts.peak_depth,
            config={"mode": self.mode, "target": target["url"],
                    "rabbitmq": self.settings.masked(), "options": self.options_record(),
                    "target_options": target, "profile": self.profile.name},
            extra={"target": target["url"], "queues": self.queues, "latency": latency,
                   "validity": validity})

    async def _drain(self, mgmt: Management, before: dict[str, Counts], owed: int,
                     sampler: Sampler) -> dict[str, Counts]:
        """Until every owed delivery is acked and the queues are back to their depth before
        the run (or the timeout); then one statistics interval more, since the management
        API's counters can be that old."""
        deadline = time.time() + self.opts.drain_timeout_s

        async def done() -> bool:
            counts = await read_counts(mgmt, self.settings.vhost)
            acked = sum(max(0, counts.get(q, Counts()).acked - before.get(q, Counts()).acked)
                        for q in self.queues)
            queued = sum(max(0, counts.get(q, Counts()).messages
                             - before.get(q, Counts()).messages) for q in self.queues)
            return acked >= owed and not queued

        await self.drain_until(done, interval_s=1.0)
        await sampler.sample()
        await asyncio.sleep(min(STATS_INTERVAL_S, max(0.0, deadline - time.time())))
        return await read_counts(mgmt, self.settings.vhost)


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
