"""``rabbitscale run SCENARIO``: the reference stack, the recorder, the broker sampler and Locust
headless, in one vhost of their own, then a run directory and a verdict.

A kind of ``RunEngine`` (engine/base.py): what to start, in which order, and that everything
started is stopped on every path. The verdict is computed by judge/outcome.py from plain facts
and written by engine/output.py. Faults (``--fault``) and the nemesis are fault objects on a
schedule (faults/): the same injector runs both.
"""

from __future__ import annotations

import contextlib
import csv
import math
import os
import random
import socket
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rabbitscale.broker import amqp
from rabbitscale.broker.cluster import Cluster
from rabbitscale.broker.management import Management
from rabbitscale.broker.observe import ManagementSource
from rabbitscale.broker.publisher import Outcome as PublishOutcome
from rabbitscale.core import rundir
from rabbitscale.core.errors import BadInput
from rabbitscale.engine import output
from rabbitscale.engine.base import LoadOptions, RunEngine
from rabbitscale.engine.live import setup_live_metrics
from rabbitscale.engine.load import LocustProcesses, amqp_publishes, start_delay_s
from rabbitscale.engine.recorder import WEBHOOK_SINK, Recorder
from rabbitscale.engine.sampler import Probes, Sampler, exact_counter
from rabbitscale.faults import nemesis
from rabbitscale.faults.base import Fault, FaultContext, Target
from rabbitscale.faults.catalogue import fault_class, needs_iptables
from rabbitscale.faults.nemesis import DEFAULT_INTERVAL_S as DEFAULT_NEMESIS_INTERVAL_S
from rabbitscale.harness.completions import Completion, listen
from rabbitscale.harness.metrics import Metrics
from rabbitscale.harness.stack import Stack, StackOptions
from rabbitscale.harness.webhook_sink import SinkOptions
from rabbitscale.judge import outcome, slo, soak
from rabbitscale.judge.total_queue import TotalQueue
from rabbitscale.scenarios import contract, registry
from rabbitscale.scenarios.drivers import TRANSPORTS
from rabbitscale.scenarios.schedule import Rates
from rabbitscale.topology import naming
from rabbitscale.topology.profile_file import apply_overrides, profile_spec
from rabbitscale.topology.profiles import Profile
from rabbitscale.topology.settings import RabbitSettings
from rabbitscale.topology.tasks import format_task_mix, parse_task_mix

KEEP_UP_GRACE_S = 0.5  # arrivals finished this long after the schedule still count as kept up
UNCONFIRMED = (PublishOutcome.TIMEOUT, PublishOutcome.BLOCKED, PublishOutcome.FAILED,
               PublishOutcome.UNROUTABLE)


@dataclass(frozen=True)
class StackRunOptions:
    """The reference stack's own options, beside the shared ``LoadOptions``."""

    instances: int = 3
    transport: str = "http"
    scale_to: int = 5
    vhost: str | None = None
    keep_vhost: bool = False
    fault: str | None = None
    time_scale: float = 1.0
    prometheus_port: int | None = None  # serve /metrics while the run goes (0: any port)
    prometheus_linger_s: float = 0.0  # keep serving after the verdict, for a last scrape
    nemesis: tuple[str, ...] = ()  # fault kinds on a schedule (needs a cluster)
    seed: int = 0
    nemesis_interval_s: float = DEFAULT_NEMESIS_INTERVAL_S

    def __post_init__(self) -> None:
        rules = (
            (1 <= self.instances <= 1000, "--instances must be between 1 and 1000"),
            (self.transport in TRANSPORTS, f"--transport must be one of {', '.join(TRANSPORTS)}"),
            (1 <= self.scale_to <= 1000, "--scale-to must be between 1 and 1000"),
            (math.isfinite(self.time_scale) and 0.0001 <= self.time_scale <= 100,
             "--time-scale must be between 0.0001 and 100"),
            (math.isfinite(self.nemesis_interval_s) and 4 <= self.nemesis_interval_s <= 86400,
             "--nemesis-interval must be between 4s and a day"),
            (math.isfinite(self.prometheus_linger_s) and 0 <= self.prometheus_linger_s <= 3600,
             "--prometheus-linger must be between 0s and 1h"),
            (not (self.nemesis and self.fault), "--nemesis and --fault do not go together: "
                                                "the nemesis schedules its own faults"),
            (not self.nemesis or self.transport == "http",
             "--nemesis keeps the total-queue ledger of the stack's publishes: use "
             "--transport http"),
            (self.vhost is None or self.vhost.strip() != "", "--vhost must not be empty"),
        )
        for ok, message in rules:
            if not ok:
                raise BadInput(f"rabbitscale run: {message}")
        if self.fault:
            fault_class(self.fault)


def run_kinds(scenario: registry.Scenario, profile: Profile, mix: dict[str, float]
              ) -> tuple[str, ...]:
    """The task kinds a run of ``scenario`` sends: its task mix, and the profile's webhook kind
    where the scenario has a webhook stream (which the profile must have)."""
    streams = scenario.streams(Rates(1.0, 1.0, (1.0,)), 10.0)
    kinds = list(mix) if registry.TASKS in streams else []
    if registry.WEBHOOKS in streams:
        if profile.webhook_kind is None:
            raise BadInput(f"scenario {scenario.name} sends webhooks: profile {profile.name!r} "
                           f"has no task kind with stream = \"webhooks\"")
        kinds.append(profile.webhook_kind)
    return tuple(dict.fromkeys(kinds))


def ordered_queues(profile: Profile, settings: RabbitSettings) -> frozenset[str]:
    """Endpoints that apply messages in key order: what the order check watches."""
    return frozenset(ep.queue for ep in profile.resolved(settings).endpoints if ep.ordered)


def latency_scopes(profile: Profile) -> dict[str, list[str]]:
    """What a latency threshold's scope names: a task kind (the queues its message reaches),
    a queue, or the webhook sink."""
    scopes: dict[str, list[str]] = {ep.queue: [ep.queue] for ep in profile.endpoints}
    scopes.update({k: list(profile.queues_of(k)) for k in profile.tasks})
    scopes[WEBHOOK_SINK] = [WEBHOOK_SINK]
    return scopes


class LatencyWatch:
    """--abort-on-fail: evaluated every second on the live histograms; says when a latency
    threshold has failed for ``grace_s`` without a break."""

    def __init__(self, thresholds: slo.Thresholds, scopes: dict[str, list[str]],
                 grace_s: float) -> None:
        self.thresholds, self.scopes, self.grace_s = thresholds, scopes, grace_s
        self.failing_since: dict[str, float] = {}

    def due(self, histograms: dict[str, dict[str, Any]], now: float) -> slo.Check | None:
        failed = None
        for c in slo.latency_checks(self.thresholds, histograms, self.scopes):
            if c.verdict != slo.FAIL:
                self.failing_since.pop(c.name, None)
                continue
            since = self.failing_since.setdefault(c.name, now)
            if now - since >= self.grace_s and failed is None:
                failed = c
        return failed


TRACE_FIELDS = ("queue", "status", "attempts", "sent", "delivered", "started", "finished",
                "recorded", "spawned")


@contextlib.contextmanager
def trace_records(recorder: Recorder, path: Path) -> Iterator[None]:
    """records.csv: each counted completion record's timestamps, and when the recorder got
    it (``recorded``: after the record's confirmed publish, so ``recorded - finished`` is
    about the time the consumer held the message's prefetch credit after its work)."""
    with path.open("w", newline="") as f:
        out = csv.writer(f)
        out.writerow(TRACE_FIELDS)

        def write(record: Completion) -> None:
            out.writerow((record.queue, record.status, record.attempts, f"{record.sent:.6f}",
                          f"{record.delivered:.6f}", f"{record.started:.6f}",
                          f"{record.finished:.6f}", f"{time.time():.6f}", record.spawned))

        recorder.counted.add_listener(write)
        try:
            yield
        finally:
            recorder.counted.remove_listener(write)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class StackRun(RunEngine):
    mode = "stack"
    counted = "completed"

    def __init__(self, settings: RabbitSettings, profile: Profile, opts: LoadOptions,
                 s: StackRunOptions | None = None) -> None:
        s = s or StackRunOptions()
        super().__init__(opts, profile)
        self.s = s
        self.scenario = registry.get(opts.scenario)
        self.vhost = s.vhost or naming.run_vhost()
        self.settings = settings.with_vhost(self.vhost)
        self.cluster: Cluster | None = self._cluster(settings)
        self.mix = parse_task_mix(opts.task_mix, profile) if opts.task_mix \
            else profile.default_mix
        self.kinds = run_kinds(self.scenario, profile, self.mix)
        self.fault: Fault | None = self._fault()
        overrides = self.fault.overrides(profile, self.kinds) if self.fault else {}
        if overrides:
            self.profile = apply_overrides(profile, overrides, f"fault {s.fault}")
        self.thresholds = slo.load_thresholds(opts.thresholds_file, profile, opts.threshold_exprs,
                                              **{"error_rate_max": max(
                                                  [ep.failure_probability
                                                   for ep in profile.endpoints] + [0.0]) * 1.5,
                                                 **(self.fault.thresholds if self.fault
                                                    else {})})
        self.scopes = latency_scopes(profile)
        slo.check_scopes(self.thresholds, self.scopes, f"profile {profile.name!r}")
        self.aborted: slo.Check | None = None
        self.recorder = Recorder(run=self.name, burst_max_lag_s=self.thresholds.burst_max_lag_s,
                                 ordered_queues=ordered_queues(self.profile, settings))
        self.metrics = Metrics(scenario=opts.scenario, run=self.name, profile=profile)
        self.fault_events: list[dict[str, Any]] = []
        self.fault_ctx: FaultContext | None = None
        self.injector: nemesis.Injector | None = None
        self.total_queue: TotalQueue | None = None
        self.spec = opts.spec(self.scenario.users(opts.rates), s.transport,
                              format_task_mix(self.mix),
                              master_port=_free_port() if opts.workers else 5557)
        self.watcher = LatencyWatch(self.thresholds, self.scopes, opts.abort_on_fail_s) \
            if opts.abort_on_fail_s is not None and self.thresholds.latency else None
        self._scaled = not self.scenario.scales_out
        self._fault_task: Any = None

    def _cluster(self, settings: RabbitSettings) -> Cluster | None:
        """The local cluster the run is on (and the nemesis acts on); refused up front where
        the run's faults cannot act."""
        from rabbitscale.broker import cluster

        s = self.s
        names = s.nemesis or ((fault_class(s.fault).name,) if s.fault else ())
        if s.nemesis and not settings.cluster_nodes:
            raise BadInput("--nemesis acts on a local cluster: run with --cluster against "
                           "`rabbitscale cluster up --nodes 3`")
        if s.fault and fault_class(s.fault).needs_cluster and not settings.cluster_nodes:
            raise BadInput(f"--fault {fault_class(s.fault).name} acts on a cluster node: run "
                           f"it with --cluster against `rabbitscale cluster up --nodes 3`")
        if needs_iptables(names):
            from rabbitscale.faults import partition

            why = partition.available()
            if why:
                raise BadInput(f"network partitions cannot be made here: {why}")
        if s.nemesis:
            return cluster.require()
        return cluster.load() if settings.cluster_nodes else None

    def _fault(self) -> Fault | None:
        if not self.s.fault:
            return None
        cls = fault_class(self.s.fault)
        target = cls.choose(random.Random(self.s.seed), len(self.cluster.nodes),
                            self.s.instances) if self.cluster is not None and cls.nemesis \
            else Target()
        return cls(target)

    # --- the phases ------------------------------------------------------------------------

    async def execute(self) -> int:
        server = None
        if self.s.prometheus_port is not None:  # first: a port in use fails before anything
            server = self.metrics.serve(self.s.prometheus_port)
            self.say(f"metrics: {server.url}")
        try:
            code = await super().execute()
            if server and self.s.prometheus_linger_s:
                import asyncio

                await asyncio.sleep(self.s.prometheus_linger_s)
            return code
        finally:
            if server:
                server.close()

    async def prepare(self, cleanup: contextlib.AsyncExitStack) -> None:
        s, fault = self.s, self.fault
        self.mgmt = await Management.for_run(self.settings, cleanup, own_vhost=s.vhost is None,
                                             keep=s.keep_vhost)
        stack = self.stack = Stack(self.settings, self.profile, StackOptions(
            instances=s.instances, api_port=0, sink_port=0, run_id=self.name,
            log_path=self.run_dir / rundir.STACK_LOG,
            time_scale=fault.time_scale if fault and fault.time_scale != 1.0 else s.time_scale,
            sink=SinkOptions(latency_s=fault.sink_latency_s if fault else 0.0,
                             failure_ratio=fault.sink_failure_ratio if fault else 0.0)))
        cleanup.push_async_callback(stack.stop)
        await stack.start()
        if s.nemesis:
            tq = self.total_queue = TotalQueue(
                queues_of=lambda t: [ep.queue for ep in stack.profile.consumers_of(t)],
                idempotent=lambda q: stack.profile.endpoint(q).idempotent, run=self.name)
            stack.published.add_listener(tq.on_published)
            stack.recorded.add_listener(tq.on_record)

    async def observe(self, cleanup: contextlib.AsyncExitStack) -> None:
        stack = self.stack
        conn = await amqp.connect(self.settings, "rabbitscale-recorder")
        cleanup.push_async_callback(conn.close)
        await listen(await conn.channel(), self.recorder.on_record, expires_s=3600,
                     queue_name=naming.RECORDER_QUEUE, durable=True)
        stack.sink.arrived.add_listener(self.recorder.on_arrival)
        sampler = self.sampler = Sampler(
            ManagementSource(self.mgmt), self.vhost,
            [ep.queue for ep in stack.profile.endpoints]
            + [ep.error_queue for ep in stack.profile.endpoints], self.run_dir,
            interval_s=self.opts.sample_interval_s, probes=Probes(
                exact=exact_counter(await conn.channel()), age=self.recorder.oldest_age_s,
                processes=self._process_ids))
        setup_live_metrics(self.metrics, self.recorder, stack, sampler)
        if self.opts.trace:
            cleanup.enter_context(trace_records(self.recorder, self.run_dir / rundir.RECORDS_CSV))
        sampler.start()
        cleanup.push_async_callback(sampler.stop)

    async def load(self, cleanup: contextlib.AsyncExitStack) -> str:
        import asyncio

        o, s, stack = self.opts, self.s, self.stack
        self.say(f"run {self.name}: scenario {o.scenario}, {o.duration_s:g}s, profile "
                 f"{self.profile.name!r} simulated on the reference stack, "
                 f"{s.instances} instances, {o.workers or 1} Locust process(es), "
                 f"vhost {self.vhost}, out {self.run_dir}")
        self.start_at = time.time() + start_delay_s(self.spec)
        self.recorder.keep_up_deadline = self.start_at + o.duration_s + KEEP_UP_GRACE_S
        events = nemesis.schedule(s.nemesis, len(self.cluster.nodes), o.duration_s,
                                  s.nemesis_interval_s, s.seed, s.instances) \
            if s.nemesis and self.cluster else \
            nemesis.single(self.fault, o.duration_s) if self.fault else []
        if events:
            self.fault_ctx = FaultContext(stack, self.mgmt, self.name, self.say, self.kinds,
                                          cluster=self.cluster)
            self.injector = nemesis.Injector(events, self.fault_ctx,
                                             "nemesis" if s.nemesis else f"fault {events[0].kind}")
            if s.nemesis:
                self.say(f"  nemesis: seed {s.seed}, {len(events)} faults: "
                         + ", ".join(f"{e.kind}@{e.at_s:g}s" for e in events))
            self._fault_task = asyncio.create_task(
                self.injector.run(self.start_at, self._on_fault_event))
        try:
            error = await self.run_locust(cleanup, self.spec, stack.api_url, self.locust_env(
                self.start_at, **{contract.ENV_API_URL: stack.api_url,
                                  contract.API_SECRET.env: stack.keys.secret,
                                  contract.WEBHOOK_TARGET.env: stack.sink_url + "/hook",
                                  "CONDUITLLM__RABBITMQ__VHOST": self.vhost}))
            if self._fault_task is not None:
                await self._fault_task
            return error
        finally:
            if self._fault_task is not None and not self._fault_task.done():
                self._fault_task.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await self._fault_task  # the injector heals what it applied

    def track_windows(self) -> None:
        o = self.opts
        # burst slots sit on the windows' edges: shift by half a slot to count each edge once
        self.recorder.track_windows([
            (self.start_at + w0 - 0.5 / rate, self.start_at + w1 - 0.5 / rate)
            for w0, w1, rate, _ in outcome.burst_targets(o.scenario, o.rates, o.duration_s)])

    def _on_fault_event(self, ev: nemesis.Event, step: str, what: str) -> None:
        record: dict[str, Any] = {"t": round(time.time() - self.start_at, 2), "step": step,
                                  "what": what}
        if self.s.nemesis:
            record.update(kind=ev.kind, index=ev.index)
        self.fault_events.append(record)

    async def tick(self, now: float, locust: LocustProcesses) -> bool:
        o = self.opts
        failed = self.watcher.due(self.recorder.histograms(), now) \
            if self.watcher and now > self.start_at else None
        if failed is not None:
            self.aborted = slo.Check(
                "aborted_on_fail", f"no latency threshold failing for {o.abort_on_fail_s:g}s",
                f"{now - self.start_at:.0f}s", slo.FAIL,
                f"the load stopped at {now - self.start_at:.0f}s of {o.duration_s:g}s: "
                f"{failed.detail}")
            self.say(f"  abort: {failed.name} {failed.measured} ms, target {failed.target}: "
                     f"stopping the load, draining")
            await locust.stop()
            return True
        if not self._scaled and now >= self.start_at + o.duration_s / 2:
            self._scaled = True
            for _ in range(self.s.instances, self.s.scale_to):
                self.say(f"  scale out: started {await self.stack.add_instance()}")
        return False

    async def progress(self) -> tuple[int, int, float | None]:
        return self.recorder.finished, self.sampler.current_depth(), self.recorder.e2e_p99_ms()

    async def drain(self) -> None:
        """Until every confirmed message has a completion record (or the timeout)."""
        self.amqp_tasks, self.amqp_confirmed = self._amqp_confirmed()
        extra = self.fault_ctx.extra_published if self.fault_ctx else 0

        async def done() -> bool:
            owed = self.stack.ledger.confirmed + self.amqp_confirmed + extra \
                + self.recorder.spawned
            return self.recorder.finished >= owed

        await self.drain_until(done)
        await self.sampler.stop()
        self.stack_summary = await self.stack.stop()

    def _process_ids(self) -> dict[str, list[int]]:
        """The run's processes by name, for the soak figures: Locust, this process (API,
        publisher, recorder, sampler) and each consumer."""
        out = {"stack": [os.getpid()]}
        if self.locust:
            out["generator"] = [p.pid for p in self.locust.procs]
        for i, proc in enumerate(self.stack.procs, start=1):
            out[f"consumer-{i}"] = [proc.pid]
        return out

    def _amqp_confirmed(self) -> tuple[int, int]:
        """(tasks, messages) Locust's users published straight to the broker and had
        confirmed (the AMQP transport, and task kinds without a route); a message counts once
        in each queue it reaches."""
        tasks = messages = 0
        for kind, (_, ok) in amqp_publishes(self.run_dir).items():
            fanout = self.profile.fanout(self.profile.task(kind).message) \
                if kind in self.profile.tasks else 1
            tasks += ok
            messages += ok * fanout
        return tasks, messages

    def measurements(self) -> output.Measurements:
        return self.recorder

    def concluded(self, result: output.RunResult) -> None:
        self.metrics.set_outcome(result.outcome.ledger, result.outcome.checks)

    # --- the facts, once, at the end ---------------------------------------------------------

    def facts(self) -> outcome.Facts:
        o, rec, stack_summary, sampler = self.opts, self.recorder, self.stack_summary, \
            self.sampler
        counts = rec.counts()
        extra = self.fault_ctx.extra_published if self.fault_ctx else 0
        publisher = stack_summary.get("publisher", {})
        return outcome.Facts(
            scenario=o.scenario, duration_s=o.duration_s, rates=o.rates,
            published=stack_summary["published"] + self.amqp_confirmed + extra,
            accepted=stack_summary["accepted"] + self.amqp_tasks,
            rejected=stack_summary["rejected"],
            unconfirmed=sum(int(publisher.get(k.value, 0)) for k in UNCONFIRMED),
            still_queued=stack_summary["still_queued"],
            completed=counts["completed"], faulted=counts["faulted"],
            skipped=counts["skipped"], duplicates=counts["duplicates"],
            done_in_time=rec.done_in_time, burst_absorbed=tuple(rec.absorbed()),
            peak_depth=sampler.peak_depth(), max_age_s=sampler.max_age_s(),
            peak_memory_fraction=sampler.peak_memory_fraction(),
            # the management API shows an alarm only at its next statistics interval (5 s):
            # a short one is seen by the publisher as connection.blocked
            memory_alarm=sampler.memory_alarm() or bool(publisher.get("blocked_events")),
            order_violations=rec.order_violations,
            redelivered=rec.redelivered, completed_after_retry=rec.completed_after_retry,
            faults_by_reason=dict(rec.fault_reasons), webhooks_arrived=rec.webhook_arrivals,
            webhook_duplicates=rec.webhook_duplicates, spawned=rec.spawned, error=self.error,
            drain_timeout_s=o.drain_timeout_s,
            process_growth=soak.growth(soak.read(self.run_dir)))

    async def result(self) -> output.RunResult:
        o, s, rec = self.opts, self.s, self.recorder
        facts = self.facts()
        measured, validity = self.validity_checks()
        checks = slo.latency_checks(self.thresholds, rec.histograms(), self.scopes) + measured \
            + ([self.aborted] if self.aborted else [])
        sections: dict[str, Any] = {}
        if self.total_queue is not None:
            tq = self.total_queue.counts()
            checks += self.total_queue.checks(tq)
            sections["total_queue"] = tq
        if self.cluster is not None:
            sections["cluster"] = self.cluster.settings()
        return output.RunResult(
            name=self.name, profile=self.profile.name,
            scenario=o.scenario, mode=self.mode,
            outcome=outcome.extended(outcome.judge(facts, self.thresholds), checks),
            started_at=self.start_at, load_ended_at=self.load_ended_at,
            duration_s=o.duration_s, instances=s.instances, workers=o.workers,
            transport=s.transport, rates=o.rates, thresholds=self.thresholds,
            peak_depth=facts.peak_depth, publisher=self.stack_summary.get("publisher", {}),
            fault=self._fault_summary(),
            config={"rabbitmq": self.settings.masked(), "profile": self.profile.name,
                    "profile_spec": profile_spec(self.stack.profile),
                    "options": self.options_record(**{
                        k: v for k, v in vars(s).items()}, task_mix=format_task_mix(self.mix))},
            extra={"peak_backlog": rec.peak_backlog(), "processes": facts.process_growth,
                   "validity": validity, **sections})

    def _fault_summary(self) -> dict[str, Any] | None:
        if self.injector is None:
            return None
        if not self.s.nemesis:
            assert self.fault is not None
            return {"name": self.fault.name, "description": self.fault.description,
                    "events": self.fault_events}
        per_second: dict[int, int] = {}
        for (t, _), n in self.recorder.done_per_second.items():
            per_second[t] = per_second.get(t, 0) + n
        return {"name": "nemesis", "description": f"kinds {', '.join(self.s.nemesis)}; seed "
                f"{self.s.seed}; a fault every {self.s.nemesis_interval_s:g}s",
                "events": self.fault_events, "seed": self.s.seed,
                "nemesis": self.injector.summary(per_second, self.start_at, self.opts.duration_s)}
