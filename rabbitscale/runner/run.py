"""``rabbitscale run SCENARIO``: the stack, the recorder, the broker sampler and Locust
headless, in one vhost of their own, then a run directory and a verdict.

The orchestration only: what to start, in which order, and that everything started is stopped
on every path (``contextlib.AsyncExitStack``). The verdict is computed by runner/outcome.py
from plain facts and written by runner/output.py.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from rabbitscale.broker import amqp
from rabbitscale.broker.management import Management
from rabbitscale.broker.observe import ManagementSource
from rabbitscale.broker.publisher import Outcome as PublishOutcome
from rabbitscale.core import rundir
from rabbitscale.core.errors import BadInput
from rabbitscale.harness.completions import listen
from rabbitscale.harness.metrics import Metrics
from rabbitscale.harness.stack import Stack, StackOptions
from rabbitscale.harness.webhook_sink import SinkOptions
from rabbitscale.runner import nemesis, outcome, output, slo, soak, validity
from rabbitscale.runner.faults import FAULTS, Fault, FaultContext
from rabbitscale.runner.live import setup_live_metrics
from rabbitscale.runner.load import LoadSpec, LocustProcesses, amqp_publishes, start_delay_s
from rabbitscale.runner.nemesis import DEFAULT_INTERVAL_S as DEFAULT_NEMESIS_INTERVAL_S
from rabbitscale.runner.recorder import WEBHOOK_SINK, Recorder
from rabbitscale.runner.sampler import Sampler, exact_counter
from rabbitscale.runner.total_queue import TotalQueue
from rabbitscale.scenarios import contract, registry
from rabbitscale.scenarios.schedule import Rates
from rabbitscale.topology import naming
from rabbitscale.topology.profile_file import apply_overrides, profile_env, profile_spec
from rabbitscale.topology.profiles import Profile
from rabbitscale.topology.settings import RabbitSettings
from rabbitscale.topology.tasks import format_task_mix, parse_task_mix

KEEP_UP_GRACE_S = 0.5  # arrivals finished this long after the schedule still count as kept up
UNCONFIRMED = (PublishOutcome.TIMEOUT, PublishOutcome.BLOCKED, PublishOutcome.FAILED,
               PublishOutcome.UNROUTABLE)


@dataclass
class RunOptions:
    scenario: str
    duration_s: float = 60.0
    instances: int = 3
    workers: int = 0
    out: Path | None = None
    rates: Rates = field(default_factory=lambda: Rates(1000 / 60, 10.0, (50.0, 100.0)))
    payload: str = "10KB"
    task_mix: str = ""  # kind=weight,...; empty: the profile's default mix
    transport: str = "http"
    users: int | None = None
    scale_to: int = 5
    sample_interval_s: float = 1.0
    drain_timeout_s: float = 60.0
    thresholds_file: str | None = None
    vhost: str | None = None
    keep_vhost: bool = False
    profile_file: str | None = None
    quiet: bool = False  # find-max steps: no progress lines, no HTML page
    fault: str | None = None
    time_scale: float = 1.0
    prometheus_port: int | None = None  # serve /metrics while the run goes (0: any port)
    prometheus_linger_s: float = 0.0  # keep serving after the verdict, for a last scrape
    junit: Path | None = None  # the checks as JUnit XML
    threshold_exprs: tuple[str, ...] = ()  # --threshold: latency thresholds
    abort_on_fail_s: float | None = None  # --abort-on-fail GRACE: stop the load early
    nemesis: tuple[str, ...] = ()  # --nemesis: fault kinds on a schedule (needs a cluster)
    seed: int = 0
    nemesis_interval_s: float = DEFAULT_NEMESIS_INTERVAL_S
    arrivals: str = "even"  # even | poisson: how the open model spaces arrivals
    trace: bool = False  # write every completion record's timestamps (records.csv)


def run_kinds(scenario: registry.Scenario, profile: Profile, mix: dict[str, float]
              ) -> tuple[str, ...]:
    """The task kinds a run of ``scenario`` sends: its task mix, and the profile's webhook kind
    where the scenario has a webhook stream (which the profile must have)."""
    streams = scenario.streams(Rates(1.0, 1.0, (1.0,)), 10.0)
    kinds = [k for k in mix] if registry.TASKS in streams else []
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
    import csv

    with path.open("w", newline="") as f:
        out = csv.writer(f)
        out.writerow(TRACE_FIELDS)

        def write(record: Any) -> None:
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


class Run:
    def __init__(self, settings: RabbitSettings, profile: Profile, o: RunOptions) -> None:
        self.o = o
        self.name, self.run_dir = rundir.place(o.out, o.scenario)
        self.vhost = o.vhost or naming.run_vhost()
        self.settings = settings.with_vhost(self.vhost)
        self.fault: Fault | None = FAULTS[o.fault]() if o.fault else None
        if self.fault and self.fault.needs_cluster and not settings.cluster_nodes:
            raise BadInput(f"--fault {o.fault} stops a cluster node: run it with --cluster "
                           f"against `rabbitscale cluster up --nodes 3`")
        self.cluster: Any = None  # the local cluster, recorded in the run (and the nemesis')
        if o.nemesis:
            self.cluster = self._nemesis_cluster(settings)
        elif settings.cluster_nodes:
            from rabbitscale.broker import cluster

            self.cluster = cluster.load()
        self.mix = parse_task_mix(o.task_mix, profile) if o.task_mix else profile.default_mix
        self.scenario = registry.get(o.scenario)
        self.kinds = run_kinds(self.scenario, profile, self.mix)
        overrides = self.fault.overrides(profile, self.kinds) if self.fault else {}
        self.profile = apply_overrides(profile, overrides, f"fault {o.fault}") if overrides \
            else profile
        self.thresholds = slo.load_thresholds(o.thresholds_file, profile, o.threshold_exprs, **{
            "error_rate_max": max([ep.failure_probability for ep in profile.endpoints]
                                  + [0.0]) * 1.5,
            **(self.fault.thresholds if self.fault else {})})
        self.scopes = latency_scopes(profile)
        slo.check_scopes(self.thresholds, self.scopes, f"profile {profile.name!r}")
        self.aborted: slo.Check | None = None
        self.recorder = Recorder(run=self.name, burst_max_lag_s=self.thresholds.burst_max_lag_s,
                                 ordered_queues=ordered_queues(self.profile, settings))
        self.metrics = Metrics(scenario=o.scenario, run=self.name, profile=profile)
        self.locust: LocustProcesses | None = None
        self.fault_events: list[dict[str, Any]] = []
        self.fault_ctx: FaultContext | None = None
        self.nemesis: nemesis.Nemesis | None = None
        self.total_queue: TotalQueue | None = None
        self.spec = LoadSpec(
            scenario=self.scenario, duration_s=o.duration_s, rates=o.rates, payload=o.payload,
            transport=o.transport, task_mix=format_task_mix(self.mix),
            users=o.users or self.scenario.users(o.rates), workers=o.workers,
            master_port=_free_port() if o.workers else 5557, arrivals=o.arrivals)

    def say(self, text: str) -> None:
        if not self.o.quiet:
            print(text, flush=True)

    def _nemesis_cluster(self, settings: RabbitSettings) -> Any:
        """The local cluster a nemesis acts on; refused up front where it cannot run."""
        from rabbitscale.broker import cluster, partition

        o = self.o
        if not settings.cluster_nodes:
            raise BadInput("--nemesis acts on a local cluster: run with --cluster against "
                           "`rabbitscale cluster up --nodes 3`")
        if o.fault:
            raise BadInput("--nemesis and --fault do not go together: the nemesis schedules "
                           "its own faults")
        if o.transport != "http":
            raise BadInput("--nemesis keeps the total-queue ledger of the stack's publishes: "
                           "use --transport http")
        if any(k in nemesis.PARTITIONS or k == "client-link" for k in o.nemesis):
            why = partition.available()
            if why:
                raise BadInput(f"--nemesis: network partitions cannot be made here: {why}")
        return cluster.require()

    # --- the run ---------------------------------------------------------------------------

    async def execute(self) -> int:
        self.run_dir.mkdir(parents=True, exist_ok=True)
        server = None
        if self.o.prometheus_port is not None:  # first: a port in use fails before anything
            server = self.metrics.serve(self.o.prometheus_port)
            self.say(f"metrics: {server.url}")
        try:
            async with contextlib.AsyncExitStack() as cleanup:
                mgmt = await Management.for_run(self.settings, cleanup,
                                                own_vhost=self.o.vhost is None,
                                                keep=self.o.keep_vhost)
                result = await self._execute(mgmt, cleanup)
            self.metrics.set_outcome(result.outcome.ledger, result.outcome.checks)
            code = output.conclude(self.run_dir, result, self.recorder, say=self.say,
                                   quiet=self.o.quiet, junit=self.o.junit)
            if server and self.o.prometheus_linger_s:
                await asyncio.sleep(self.o.prometheus_linger_s)
            return code
        finally:
            if server:
                server.close()

    async def _execute(self, mgmt: Management, cleanup: contextlib.AsyncExitStack
                       ) -> output.RunResult:
        o, fault = self.o, self.fault
        stack = Stack(self.settings, self.profile, StackOptions(
            instances=o.instances, api_port=0, sink_port=0, run_id=self.name,
            log_path=self.run_dir / rundir.STACK_LOG,
            time_scale=fault.time_scale if fault and fault.time_scale != 1.0 else o.time_scale,
            sink=SinkOptions(latency_s=fault.sink_latency_s if fault else 0.0,
                             failure_ratio=fault.sink_failure_ratio if fault else 0.0)))
        cleanup.push_async_callback(stack.stop)
        await stack.start()
        conn = await amqp.connect(self.settings, "rabbitscale-recorder")
        cleanup.push_async_callback(conn.close)
        await listen(await conn.channel(), self.recorder.on_record, expires_s=3600,
                     queue_name=naming.RECORDER_QUEUE, durable=True)
        stack.sink.arrived.add_listener(self.recorder.on_arrival)
        if o.nemesis:
            tq = self.total_queue = TotalQueue(
                queues_of=lambda t: [ep.queue for ep in stack.profile.consumers_of(t)],
                idempotent=lambda q: stack.profile.endpoint(q).idempotent, run=self.name)
            stack.published.add_listener(tq.on_published)
            stack.recorded.add_listener(tq.on_record)
        sampler = Sampler(
            ManagementSource(mgmt), self.vhost,
            [ep.queue for ep in stack.profile.endpoints]
            + [ep.error_queue for ep in stack.profile.endpoints], self.run_dir,
            interval_s=o.sample_interval_s, exact=exact_counter(await conn.channel()),
            age=self.recorder.oldest_age_s, processes=lambda: self._process_ids(stack))
        setup_live_metrics(self.metrics, self.recorder, stack, sampler)
        if o.trace:
            cleanup.enter_context(trace_records(self.recorder, self.run_dir / rundir.RECORDS_CSV))
        sampler.start()
        cleanup.push_async_callback(sampler.stop)
        self.say(f"run {self.name}: scenario {o.scenario}, {o.duration_s:g}s, "
                 f"{o.instances} instances, {o.workers or 1} Locust process(es), "
                 f"vhost {self.vhost}, out {self.run_dir}")
        start_at = time.time() + start_delay_s(self.spec)
        self.recorder.keep_up_deadline = start_at + o.duration_s + KEEP_UP_GRACE_S
        # burst slots sit on the windows' edges: shift by half a slot to count each edge once
        self.recorder.track_windows([
            (start_at + w0 - 0.5 / rate, start_at + w1 - 0.5 / rate)
            for w0, w1, rate, _ in outcome.burst_targets(o.scenario, o.rates, o.duration_s)])
        locust = self.locust = LocustProcesses(self.spec, self.run_dir, stack.api_url,
                                               self._locust_env(stack, start_at))
        cleanup.push_async_callback(locust.close)
        await locust.start()
        error = await self._watch(locust, stack, sampler, start_at, mgmt)
        await locust.close()
        load_end = time.time()
        amqp_tasks, amqp_confirmed = self._amqp_confirmed()
        await self._drain(stack, amqp_confirmed)
        await sampler.stop()
        stack_summary = await stack.stop()
        return self._result(stack, stack_summary, sampler, start_at, load_end, error,
                            amqp_tasks, amqp_confirmed)

    def _process_ids(self, stack: Stack) -> dict[str, list[int]]:
        """The run's processes by name, for the soak figures: Locust, this process (API,
        publisher, recorder, sampler) and each consumer."""
        out = {"stack": [os.getpid()]}
        if self.locust:
            out["generator"] = [p.pid for p in self.locust.procs]
        for i, proc in enumerate(stack.procs, start=1):
            out[f"consumer-{i}"] = [proc.pid]
        return out

    def _locust_env(self, stack: Stack, start_at: float) -> dict[str, str]:
        return {**os.environ, contract.ENV_API_URL: stack.api_url,
                contract.API_SECRET.env: stack.keys.secret,
                contract.WEBHOOK_TARGET.env: stack.sink_url + "/hook",
                contract.ENV_RUN_DIR: str(self.run_dir), contract.RUN_NAME.env: self.name,
                contract.START_AT.env: f"{start_at:.3f}",
                **profile_env(stack.profile),
                "CONDUITLLM__RABBITMQ__VHOST": self.vhost}

    async def _watch(self, locust: LocustProcesses, stack: Stack, sampler: Sampler,
                     start_at: float, mgmt: Management) -> str:
        deadline = start_at + self.o.duration_s + 60
        scaled = not self.scenario.scales_out
        fault_task: asyncio.Task[None] | None = None
        if self.fault:
            self.fault_ctx = FaultContext(stack, mgmt, self.name, self.say, self.kinds)
            fault_task = asyncio.create_task(self._run_fault(start_at))
        if self.o.nemesis:
            fault_task = asyncio.create_task(self._run_nemesis(stack, mgmt, start_at))
        progress = output.Progress(self.say, "completed")
        watch = LatencyWatch(self.thresholds, self.scopes, self.o.abort_on_fail_s) \
            if self.o.abort_on_fail_s is not None and self.thresholds.latency else None
        try:
            while locust.running:
                await asyncio.sleep(1.0)
                now = time.time()
                locust.sample_cpu()
                failed = watch.due(self.recorder.histograms(), now) \
                    if watch and now > start_at else None
                if failed is not None:
                    self.aborted = slo.Check(
                        "aborted_on_fail", "no latency threshold failing for "
                        f"{self.o.abort_on_fail_s:g}s", f"{now - start_at:.0f}s", slo.FAIL,
                        f"the load stopped at {now - start_at:.0f}s of "
                        f"{self.o.duration_s:g}s: {failed.detail}")
                    self.say(f"  abort: {failed.name} {failed.measured} ms, target "
                             f"{failed.target}: stopping the load, draining")
                    await locust.stop()
                    break
                if not scaled and now >= start_at + self.o.duration_s / 2:
                    scaled = True
                    for _ in range(self.o.instances, self.o.scale_to):
                        self.say(f"  scale out: started {await stack.add_instance()}")
                if now > deadline:
                    return "Locust did not finish in time"
                progress.tick(now, start_at, self.recorder.finished, sampler.current_depth(),
                              self.recorder.e2e_p99_ms())
            error = await locust.wait()
            if fault_task:
                await fault_task
            return error
        finally:
            if fault_task and not fault_task.done():
                fault_task.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await fault_task  # the nemesis heals what it applied

    async def _run_fault(self, start_at: float) -> None:
        assert self.fault and self.fault_ctx
        await asyncio.sleep(max(0.0, start_at + self.o.duration_s * self.fault.at_fraction
                                - time.time()))
        for step, action in (("inject", self.fault.inject), ("recover", self.fault.recover)):
            try:
                text = await action(self.fault_ctx)
            except Exception as exc:  # reported in the run, judged by the checks
                text = f"failed: {type(exc).__name__}: {exc}"
            self.fault_events.append({"t": round(time.time() - start_at, 2), "step": step,
                                      "what": text})
            self.say(f"  fault {self.fault.name}: {step}: {text}")
            if step == "inject":
                await asyncio.sleep(self.fault.recover_after_s)

    async def _run_nemesis(self, stack: Stack, mgmt: Management, start_at: float) -> None:
        o = self.o
        events = nemesis.schedule(o.nemesis, len(self.cluster.nodes), o.duration_s,
                                  o.nemesis_interval_s, o.seed, o.instances)
        self.say(f"  nemesis: seed {o.seed}, {len(events)} faults: "
                 + ", ".join(f"{e.kind}@{e.at_s:g}s" for e in events))

        def on_event(ev: nemesis.Event, step: str, what: str) -> None:
            self.fault_events.append({"t": round(time.time() - start_at, 2), "step": step,
                                      "what": what, "kind": ev.kind, "index": ev.index})

        self.nemesis = nemesis.Nemesis(self.cluster, events, self.name, stack, mgmt, self.say)
        await self.nemesis.run(start_at, on_event)

    async def _drain(self, stack: Stack, amqp_confirmed: int) -> None:
        """Wait until every confirmed message has a completion record (or the timeout)."""
        deadline = time.time() + self.o.drain_timeout_s
        extra = self.fault_ctx.extra_published if self.fault_ctx else 0
        while time.time() < deadline:
            owed = stack.ledger.confirmed + amqp_confirmed + extra + self.recorder.spawned
            if self.recorder.finished >= owed:
                return
            await asyncio.sleep(0.2)

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

    # --- the facts, once, at the end ---------------------------------------------------------

    def _result(self, stack: Stack, stack_summary: dict[str, Any], sampler: Sampler,
                start_at: float, load_end: float, error: str, amqp_tasks: int,
                amqp_confirmed: int) -> output.RunResult:
        o, rec = self.o, self.recorder
        counts = rec.counts()
        extra = self.fault_ctx.extra_published if self.fault_ctx else 0
        publisher = stack_summary.get("publisher", {})
        facts = outcome.Facts(
            scenario=o.scenario, duration_s=o.duration_s, rates=o.rates,
            published=stack_summary["published"] + amqp_confirmed + extra,
            accepted=stack_summary["accepted"] + amqp_tasks,
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
            webhook_duplicates=rec.webhook_duplicates, spawned=rec.spawned, error=error,
            drain_timeout_s=o.drain_timeout_s,
            process_growth=soak.growth(soak.read(self.run_dir)))
        send_delays = validity.read_send_delays(self.run_dir)
        measured = validity.checks(send_delays, self.locust.cpu_fractions() if self.locust
                                   else {}, self.locust.clock_offsets() if self.locust else {})
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
            name=self.name, scenario=o.scenario,
            outcome=outcome.extended(outcome.judge(facts, self.thresholds), checks),
            started_at=start_at, load_ended_at=load_end, duration_s=o.duration_s,
            instances=o.instances, workers=o.workers, transport=o.transport, rates=o.rates,
            thresholds=self.thresholds, peak_depth=facts.peak_depth, publisher=publisher,
            fault=self._fault_summary(start_at),
            config={"rabbitmq": self.settings.masked(), "profile": self.profile.name,
                    "profile_spec": profile_spec(stack.profile),
                    "options": {**{k: (str(v) if isinstance(v, Path) else v)
                                   for k, v in asdict(o).items()},
                                "task_mix": format_task_mix(self.mix)}},
            extra={"peak_backlog": rec.peak_backlog(), "processes": facts.process_growth,
                   "validity": validity.summary(send_delays, measured), **sections})

    def _fault_summary(self, start_at: float) -> dict[str, Any] | None:
        if self.fault:
            return {"name": self.fault.name, "description": self.fault.description,
                    "events": self.fault_events}
        if self.nemesis is None:
            return None
        per_second: dict[int, int] = {}
        for (t, _), n in self.recorder.done_per_second.items():
            per_second[t] = per_second.get(t, 0) + n
        return {"name": "nemesis", "description": f"kinds {', '.join(self.o.nemesis)}; seed "
                f"{self.o.seed}; a fault every {self.o.nemesis_interval_s:g}s",
                "events": self.fault_events, "seed": self.o.seed,
                "nemesis": self.nemesis.summary(per_second, start_at, self.o.duration_s)}
