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
from dataclasses import dataclass
from typing import Any

from rabbitscale.blackbox.base import BlackBoxRun, Consumers, MeterSources
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
from rabbitscale.results.summary import EndpointResult
from rabbitscale.topology import naming
from rabbitscale.topology.profile_file import profile_spec
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
    meters: MeterSources = MeterSources()  # MassTransit's meters


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
    measures: dict[str, str] = {}  # without MassTransit's meters: no latency of its own

    def __init__(self, settings: RabbitSettings, profile: Profile, o: LoadOptions,
                 t: AmqpTargetOptions) -> None:
        super().__init__(o, profile, t.meters)
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
        self.consumers = await Consumers.read(mgmt, self.settings.vhost)
        await self.meters_before()

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
        self.meters, self.meter_notes, self.meter_totals = await self.meters_after()

    def measurements(self) -> output.Measurements:
        return _NoRecords()

    async def result(self) -> output.RunResult:
        o, t, before, after, sampler = self.opts, self.t, self.before, self.after, self.sampler

        def delta(name: str, field: str) -> int:
            return max(0, getattr(after.get(name, Counts()), field)
                       - getattr(before.get(name, Counts()), field))

        endpoints, keep_checks = self.endpoints(sampler, self.queues, self.consumers,
                                                self.meters)
        waits = [e.queue_wait_derived_ms for e in endpoints
                 if e.queue_wait_derived_ms is not None]
        facts = outcome.AmqpFacts(
            scenario=o.scenario, duration_s=o.duration_s, rates=o.rates,
            published={k: n for k, (n, _) in self.publishes.items()},
            confirmed={k: ok for k, (_, ok) in self.publishes.items()}, owed=self.owed,
            consumed=sum(delta(q, "acked") for q in self.queues),
            arrived=sum(delta(q, "arrived") for q in self.queues),
            faulted=sum(delta(naming.error_queue(q), "arrived") for q in self.queues),
            skipped=sum(delta(naming.skipped_queue(q), "arrived") for q in self.queues),
            still_queued=sum(delta(q, "messages") for q in self.queues),
            peak_depth=sampler.peak_depth(), queue_wait_s=max(waits, default=0.0) / 1000,
            peak_memory_fraction=sampler.peak_memory_fraction(),
            memory_alarm=sampler.memory_alarm(), app=self.meter_totals or None,
            error=self.error, drain_timeout_s=o.drain_timeout_s)
        measured, validity = self.validity_checks(clock=False)
        checks = keep_checks + slo.meter_latency_checks(
            self.meter_thresholds(self.thresholds), self.meters, self.scopes) + measured
        for line in endpoint_lines(endpoints, self.meter_notes):
            self.say(line)
        judged = outcome.judge_amqp(facts, self.thresholds)
        ratios = [e.keep_up_ratio for e in endpoints if e.keep_up_ratio is not None]
        return output.RunResult(
            name=self.name, profile=self.profile.name,
            scenario=o.scenario, mode=self.mode,
            outcome=outcome.extended(dataclasses.replace(
                judged, keep_up_ratio=min(ratios, default=0.0)), checks),
            started_at=self.start_at, load_ended_at=self.load_ended_at,
            duration_s=o.duration_s, instances=max((e.instances or 0 for e in endpoints),
                                                  default=0),
            workers=o.workers, transport="amqp", rates=o.rates, thresholds=self.thresholds,
            peak_depth=facts.peak_depth,
            config={"mode": self.mode, "target": masked(t.url),
                    "rabbitmq": self.settings.where(), "options": self.options_record(),
                    "target_options": {"url": masked(t.url),
                                       "management_url": t.management_url and
                                       masked(t.management_url),
                                       "app_metrics": [masked(u) for u in
                                                       t.meters.app_metrics],
                                       "app_prometheus": t.meters.app_prometheus and
                                       masked(t.meters.app_prometheus)},
                    "profile": self.profile.name, "profile_spec": profile_spec(self.profile)},
            extra={"target": masked(t.url), "queues": self.queues,
                   "latency": {"queue_wait_derived_s": round(facts.queue_wait_s, 3),
                               "meter_notes": self.meter_notes},
                   "endpoints": endpoints, "validity": validity})

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


def endpoint_lines(endpoints: list[EndpointResult], notes: list[str]) -> list[str]:
    """The terminal's lines per endpoint: what arrived and what it consumed, and where
    MassTransit's meters were read, its work and end-to-end latency."""
    lines = []
    for e in endpoints:
        lines.append(f"endpoint {e.queue}: {e.arrival_rate_per_s:.1f}/s arrived, "
                     f"{e.consumed_rate_per_s:.1f}/s consumed, backlog {e.backlog_growth:+,} "
                     f"over {e.window_s:.0f}s ({'kept up' if e.kept_up else 'FELL BEHIND'}); "
                     f"queue wait {_ms(e.queue_wait_derived_ms)} (derived)")
        m = e.meters or {}
        for what in ("work", "e2e"):
            h = m.get(what)
            if h:
                lines.append(f"  MassTransit {what}: p50 {_ms(h['p50_ms'])}, p99 "
                             f"{_ms(h['p99_ms'])} over {h['count']:,} ({m.get('consumed') or 0:,}"
                             f" consumed, {m.get('consume faults') or 0:,} faulted)")
    return lines + [f"meters: {n}" for n in notes]


def _ms(v: float | None) -> str:
    return "-" if v is None else f"{v:.3g} ms"


class _NoRecords:
    """A black-box AMQP run has no completion records: its figures are the broker's."""

    def histograms(self) -> dict[str, dict[str, Any]]:
        return {}

    def throughput(self) -> dict[tuple[int, str], int]:
        return {}
