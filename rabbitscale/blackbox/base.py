"""What the two black-box kinds share: the guards on what a run against a system it did not
start may do, the task mix (the profile's weights, as ``plan`` uses them), the kinds it sends,
and the thresholds it can judge."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from rabbitscale.blackbox import meters
from rabbitscale.broker.management import Management
from rabbitscale.core.errors import BadInput
from rabbitscale.core.urls import check_url
from rabbitscale.engine.base import LoadOptions, RunEngine
from rabbitscale.engine.sampler import Sampler
from rabbitscale.engine.stack import run_kinds
from rabbitscale.judge import keep_up, slo
from rabbitscale.results.summary import EndpointResult
from rabbitscale.scenarios import registry
from rabbitscale.topology.profiles import Profile
from rabbitscale.topology.tasks import format_task_mix, parse_task_mix


@dataclass(frozen=True)
class MeterSources:
    """Where MassTransit's meters come from: each instance's Prometheus endpoint, or the
    team's Prometheus server (asked with PromQL over the run's window)."""

    app_metrics: tuple[str, ...] = ()
    app_prometheus: str | None = None

    def __post_init__(self) -> None:
        for url in self.app_metrics:
            check_url(url, "an instance's metrics endpoint", "--app-metrics")
        if self.app_prometheus:
            check_url(self.app_prometheus, "a Prometheus server", "--app-prometheus")
        if self.app_metrics and self.app_prometheus:
            raise BadInput("--app-metrics and --app-prometheus: give one source of "
                           "MassTransit's meters")

    @property
    def given(self) -> bool:
        return bool(self.app_metrics or self.app_prometheus)


@dataclass(frozen=True)
class Consumers:
    """An endpoint's consumers as the broker shows them when the run starts."""

    count: int
    prefetch: int  # summed; 0 when one of them takes unlimited
    instances: int  # distinct connections

    @classmethod
    async def read(cls, mgmt: Management, vhost: str) -> dict[str, Consumers]:
        by_queue: dict[str, list[dict[str, Any]]] = {}
        for c in await mgmt.consumers(vhost):
            by_queue.setdefault((c.get("queue") or {}).get("name", ""), []).append(c)
        out = {}
        for queue, cs in by_queue.items():
            prefetches = [int(c.get("prefetch_count") or 0) for c in cs]
            out[queue] = cls(len(cs), 0 if 0 in prefetches else sum(prefetches),
                             len({(c.get("channel_details") or {}).get("connection_name")
                                  for c in cs}))
        return out


class BlackBoxRun(RunEngine):
    """A run against a deployed system: nothing of it is started, declared or consumed."""

    #: what measures each latency metric in this kind without MassTransit's meters (a
    #: threshold on any other is refused before the run, naming what would measure it)
    measures: dict[str, str] = {}

    def __init__(self, opts: LoadOptions, profile: Profile,
                 sources: MeterSources | None = None) -> None:
        super().__init__(opts, profile)
        self.sources = sources or MeterSources()
        self._meters_before: meters.Scrape | None = None
        self.scenario = registry.get(opts.scenario)
        if self.scenario.scales_out:
            raise BadInput(f"--target: {opts.scenario} starts consumer instances, which a "
                           f"black-box run cannot do; use {registry.SUSTAINED_TASKS.name} with "
                           f"stepped --task-rate")
        self.mix = parse_task_mix(opts.task_mix, profile) if opts.task_mix \
            else profile.default_mix
        if not self.mix and registry.TASKS in self.scenario.streams(opts.rates, 1.0):
            raise BadInput(f"--target: profile {profile.name!r} has no task kind to send")
        self.kinds = run_kinds(self.scenario, profile, self.mix)
        self.mix_text = format_task_mix(self.mix)

    async def meters_before(self) -> None:
        """Each instance's meters before the load (what they counted before does not count);
        unreachable: Unavailable, before any load."""
        if self.sources.app_metrics:
            self._meters_before = await meters.scrape(list(self.sources.app_metrics))
        elif self.sources.app_prometheus:
            import time

            await meters.from_prometheus(self.sources.app_prometheus, 60.0, time.time())

    async def meters_after(self) -> tuple[dict[str, Any], list[str], dict[str, float]]:
        """(queue -> MassTransit's meters over the run, attribution notes, totals)."""
        import time

        if self._meters_before is not None:
            recorded = (await meters.scrape(list(self.sources.app_metrics))).minus(
                self._meters_before)
        elif self.sources.app_prometheus:
            now = time.time()
            recorded = await meters.from_prometheus(self.sources.app_prometheus,
                                                    now - self.start_at + 1.0, now)
        else:
            return {}, [], {}
        per, notes = meters.per_endpoint(recorded, self.profile)
        totals = {what: sum(v for (base, _), v in recorded.counters.items() if base == c)
                  for c, what in meters.COUNTERS.items()}
        return per, notes, totals

    def endpoints(self, sampler: Sampler, queues: list[str], consumers: dict[str, Consumers],
                  meters: dict[str, Any] | None = None
                  ) -> tuple[list[EndpointResult], list[slo.Check]]:
        """Each endpoint over the load's window (the schedule, not the drain): its keep-up
        check and what summary.json says of it."""
        start, end = self.start_at, self.start_at + self.opts.duration_s
        results, checks = [], []
        for queue in queues:
            c = consumers.get(queue)
            k = keep_up.keep_up(queue, sampler.counters.get(queue, []), start, end,
                                c.prefetch if c else 0)
            checks.append(keep_up.check(k, queue, "" if sampler.samples else
                                        "the broker source answered no sample"))
            if k is None:
                continue
            results.append(EndpointResult(
                queue=queue, arrived=k.arrived, consumed=k.consumed,
                arrival_rate_per_s=round(k.arrival_rate_per_s, 3),
                consumed_rate_per_s=round(k.consumed_rate_per_s, 3),
                keep_up_ratio=None if k.ratio is None else round(k.ratio, 4),
                backlog_growth=k.backlog_growth, kept_up=k.kept_up,
                window_s=round(k.window_s, 2),
                queue_wait_derived_ms=None if k.queue_wait_derived_ms is None
                else round(k.queue_wait_derived_ms, 1),
                consumers=c.count if c else None, instances=c.instances if c else None,
                prefetch=c.prefetch if c else None,
                meters=(meters or {}).get(queue)))
        return results, checks

    def measured_by(self) -> dict[str, str]:
        """Latency metric -> what measures it in this run."""
        out = dict(self.measures)
        if self.sources.given:
            out.setdefault("e2e", "MassTransit's delivery.duration (its meters)")
            out.setdefault("processing", "MassTransit's consume.duration (its meters)")
        return out

    def meter_thresholds(self, thresholds: slo.Thresholds) -> slo.Thresholds:
        """The thresholds MassTransit's meters judge (those of no other measurement)."""
        import dataclasses

        return dataclasses.replace(thresholds, latency=tuple(
            t for t in thresholds.latency if t.metric not in self.measures))

    def check_thresholds(self, thresholds: slo.Thresholds) -> None:
        """A latency threshold this run cannot measure is bad input (exit 2), naming what
        would measure it; never a SKIP that leaves the verdict PASS."""
        can = self.measured_by()
        for t in thresholds.latency:
            if t.metric not in can:
                how = "; ".join(f"{m}: {why}" for m, why in can.items()) or "nothing"
                raise BadInput(f"{t.source}: {t.text}: a {self.mode} run does not measure "
                               f"{t.metric} (what it measures: {how}; --app-metrics or "
                               f"--app-prometheus add MassTransit's e2e and processing)")
            if t.metric not in self.measures and t.stat not in slo.METER_STATS:
                raise BadInput(f"{t.source}: {t.text}: MassTransit's histograms give "
                               f"{', '.join(slo.METER_STATS)} only (bucketed)")
