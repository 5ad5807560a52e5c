"""``rabbitscale run backlog``: does the broker hold the guide's "100,000 total queued
messages", and does the broker model (capacity/broker.py) predict what it costs?

Consumers paused (the stack starts with none), the task mix is published with confirms until
the queues hold ``--queued`` messages, the node is sampled throughout (memory and its
breakdown, disk free, the data directory's size where this machine can read it), then the
consumers start and the drain is timed. Checks: memory below 75% of the watermark, no alarm,
disk free above its limit, the drain within the plan's drain time (the endpoint model with the
credit hold the run's consumers showed: each delivery's prefetch credit stays taken until its
ack, after the completion record is confirmed), nothing lost; and the model
beside the measurement: its memory peak must bound the measured one, its disk figure be within
25%. ``plan --calibrate RUN`` fits the model from the run directory this writes.
"""

from __future__ import annotations

import asyncio
import contextlib
import csv
import math
import statistics
import time
from collections import defaultdict
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from rabbitscale.broker import amqp
from rabbitscale.broker.management import Management
from rabbitscale.broker.observe import ManagementSource
from rabbitscale.broker.publisher import Publisher
from rabbitscale.capacity import broker
from rabbitscale.capacity.plan import endpoint_capacity_per_s
from rabbitscale.core import rundir, targets
from rabbitscale.core.errors import BadInput
from rabbitscale.core.units import format_bytes, parse_size_bytes
from rabbitscale.engine import output
from rabbitscale.engine.base import LoadOptions, RunEngine
from rabbitscale.engine.recorder import Recorder
from rabbitscale.engine.sampler import Probes, Sampler, exact_counter
from rabbitscale.harness.completions import listen
from rabbitscale.harness.stack import Stack, StackOptions
from rabbitscale.judge import slo
from rabbitscale.judge.outcome import Facts, Outcome, ledger
from rabbitscale.scenarios import registry
from rabbitscale.scenarios.drivers import Task, message_for
from rabbitscale.scenarios.schedule import Rates
from rabbitscale.topology import naming
from rabbitscale.topology.policy import parse_service_time
from rabbitscale.topology.profile_file import apply_overrides, profile_spec
from rabbitscale.topology.profiles import Endpoint, Profile
from rabbitscale.topology.settings import RabbitSettings
from rabbitscale.topology.tasks import parse_task_mix, shares

NAME = "backlog"
# consumers do this much simulated work per message during the drain, so the drain is bound
# by the plan's capacity (instances x concurrency / service time), not by this machine's CPU
DRAIN_SERVICE_TIME = "fixed:50ms"
IN_FLIGHT = 500  # publishes awaiting their confirm at once while filling
SETTLE_S = 10.0  # samples kept after the fill: the WAL's rollover peak comes after the last
DRAIN_TOLERANCE = 0.25  # measured drain may exceed the plan's by this share
MODEL_DISK_TOLERANCE = 0.25  # |predicted - measured| / measured
MODEL_MEMORY_MAX_RATIO = 2.0  # the memory bound may be at most this loose (CI test)


@dataclass
class BacklogOptions:
    queued: int = targets.QUEUED_MESSAGES
    payload: str = "10KB"
    task_mix: str = ""  # kind=weight,...; empty: backlog_mix(profile, queued)
    instances: int = 3
    out: Path | None = None
    force: bool = False
    vhost: str | None = None
    keep_vhost: bool = False
    quiet: bool = False
    sample_interval_s: float = 1.0
    drain_timeout_s: float = 600.0
    service_time: str = DRAIN_SERVICE_TIME
    settle_s: float = SETTLE_S
    replicas: int = 1  # quorum replicas (run --cluster --replicas)
    junit: Path | None = None
    coefficients: broker.BrokerCoefficients = field(default_factory=broker.BrokerCoefficients)


# --- pure parts: the fill plan, the drain prediction, the measurement, the verdict ------------


def backlog_mix(profile: Profile, queued: int) -> dict[str, float]:
    """The default mix of a backlog: the profile's, without the kinds whose share an endpoint's
    x-max-length could not hold (conduit's spend updates: a queue of 10,000 and 40% of the
    guide's 100,000 would drop 30,000 confirmed messages)."""
    mix = shares(profile.default_mix)
    fits = {k: w for k, w in mix.items()
            if all(ep.max_length is None or queued * w <= ep.max_length
                   for ep in profile.consumers_of(profile.task(k).message))}
    if not fits:
        raise BadInput(f"run backlog: no task kind of profile {profile.name!r} has queues that "
                       f"hold its share of {queued:,} messages; give --task-mix")
    return fits


def fill_plan(profile: Profile, mix_text: str, queued: int) -> dict[str, tuple[str, int]]:
    """queue -> (task kind, messages it holds): the kinds' publishes split by largest
    remainder so they sum to ``queued``; a kind whose message type reaches several endpoints
    fills each. A queue whose share exceeds its x-max-length cannot hold it: one line, before
    anything is published."""
    if queued < 1:
        raise BadInput("run backlog: --queued must be at least 1")
    mix = shares(parse_task_mix(mix_text, profile) if mix_text
                 else backlog_mix(profile, queued))
    exact = {kind: queued * share for kind, share in mix.items()}
    counts = {kind: int(v) for kind, v in exact.items()}
    for kind in sorted(exact, key=lambda k: counts[k] - exact[k])[:queued - sum(counts.values())]:
        counts[kind] += 1
    plan: dict[str, tuple[str, int]] = {}
    for kind, n in counts.items():
        if not n:
            continue
        for ep in profile.consumers_of(profile.task(kind).message):
            if ep.max_length is not None and n > ep.max_length:
                what = "the oldest are dropped" if ep.overflow == "drop-head" else \
                    "publishes refused"
                raise BadInput(
                    f"run backlog: {ep.queue} would get {n:,} of {queued:,} messages but its "
                    f"x-max-length is {ep.max_length:,} ({ep.overflow}: {what}); choose a "
                    f"--task-mix without {kind} or a smaller --queued")
            plan[ep.queue] = (kind, n)
    return plan


def publishes(plan: dict[str, tuple[str, int]]) -> dict[str, int]:
    """Messages to publish per task kind (a kind filling several queues is published once)."""
    return dict(plan.values())


def with_service_time(profile: Profile, spec: str) -> Profile:
    """Endpoints without a configured service time get ``spec`` (the drain's known work)."""
    parse_service_time(spec)  # a bad one is bad input before anything starts
    return apply_overrides(profile, {ep.queue: {"service_time": spec}
                                     for ep in profile.endpoints if ep.service_time is None},
                           "--drain-service-time")


def predicted_drain_s(profile: Profile, plan: dict[str, tuple[str, int]], instances: int,
                      message_bytes: float, c: broker.BrokerCoefficients,
                      replicas: int = 1,
                      hold_s: dict[str, float] | None = None) -> dict[str, Any]:
    """The plan's drain time: each queue at its endpoint's capacity (instances, concurrency,
    prefetch, single-active-consumer, service time), all of them within the broker's
    delivery ceiling; the slowest decides. ``hold_s``: per queue, how long a delivery's
    prefetch credit stays taken after its work ends (the ack's delay: the consumer confirms
    its completion record first)."""
    per_queue: dict[str, float] = {}
    for queue, (_, n) in plan.items():
        ep: Endpoint = profile.endpoint(queue)
        svc = ep.service_time.mean_s if ep.service_time else 0.0
        cap = endpoint_capacity_per_s(ep, instances, svc, (hold_s or {}).get(queue, 0.0))
        per_queue[queue] = n / cap if cap and not math.isinf(cap) else 0.0
    total = sum(n for _, n in plan.values())
    ceiling = broker.publish_ceiling_per_s(message_bytes, replicas, c)
    broker_s = total / ceiling
    return {"drain_s": max([broker_s, *per_queue.values()]), "per_queue_s": per_queue,
            "broker_s": broker_s, "broker_ceiling_per_s": ceiling}


def measure(rows: list[dict[str, Any]], fill_start: float,
            drain_start: float = math.inf) -> dict[str, Any]:
    """Node figures from the sampled series: per node, the baseline (last sample before the
    fill), the peaks after it, and the disk it settled at (the last sample before the drain).
    Memory is the larger of ``mem_used`` and the breakdown's ``rss`` (``mem_used`` is
    refreshed every few seconds and misses short peaks)."""
    def num(v: Any) -> float | None:
        return None if v in (None, "") else float(v)

    nodes: dict[str, dict[str, Any]] = {}
    for r in sorted(rows, key=lambda r: float(r["t"])):
        n = nodes.setdefault(r["node"], {"before": None, "after": []})
        if float(r["t"]) >= fill_start:
            n["after"].append(r)
        elif num(r.get("mem_used")) is not None:  # the node's statistics have started
            n["before"] = r
    out: dict[str, Any] = {}
    for name, n in nodes.items():
        base, after = n["before"] or (n["after"][0] if n["after"] else None), n["after"]
        if base is None or not after:
            continue

        def mem(r: dict[str, Any]) -> float:
            return max(num(r.get("rss")) or 0.0, num(r.get("mem_used")) or 0.0)

        dirs = [num(r.get("data_dir_bytes")) for r in after]
        base_dir = num(base.get("data_dir_bytes"))
        free = [v for v in (num(r.get("disk_free")) for r in after) if v is not None]
        base_free = num(base.get("disk_free"))
        readable = [d for d in dirs if d is not None]
        filled = [r for r in after if float(r["t"]) < drain_start] or after
        if base_dir is not None and len(readable) == len(dirs):
            source, disk_growth = "data directory", max(readable) - base_dir
            settled = (num(filled[-1].get("data_dir_bytes")) or base_dir) - base_dir
        else:  # the whole filesystem's change: other writers count too
            source = "disk_free drop"
            disk_growth = base_free - min(free) if base_free is not None and free else 0.0
            last_free = num(filled[-1].get("disk_free"))
            settled = base_free - last_free if base_free is not None and last_free is not None \
                else 0.0
        limit = num(base.get("mem_limit"))
        peak_mem = max(mem(r) for r in after)
        out[name] = {
            "baseline_memory_bytes": mem(base), "peak_memory_bytes": peak_mem,
            "memory_growth_bytes": max(0.0, peak_mem - mem(base)),
            "peak_binary_bytes": max((num(r.get("binary")) or 0.0) for r in after),
            "mem_limit": limit,
            "peak_memory_fraction": peak_mem / limit if limit else None,
            "memory_alarm": any(str(r.get("mem_alarm")) == "True" for r in after),
            "disk_source": source, "disk_growth_bytes": max(0.0, disk_growth),
            "disk_settled_bytes": max(0.0, settled),
            "min_disk_free": min(free) if free else None,
            "disk_free_limit": num(base.get("disk_free_limit")),
            "disk_alarm": any(str(r.get("disk_alarm")) == "True" for r in after),
        }
    return out


@dataclass(frozen=True)
class BacklogFacts:
    queued: int
    published: int
    unconfirmed: int
    message_bytes: float  # mean body on the wire, measured by the broker
    fill_s: float
    drain_s: float | None  # None: did not drain within the timeout
    predicted_drain_s: float
    completed: int
    faulted: int
    still_queued: int
    duplicates: int
    nodes: dict[str, dict[str, Any]]
    predicted_memory_growth_bytes: float
    predicted_disk_bytes: float  # the peak, with a WAL being flushed
    predicted_stored_bytes: float = 0.0  # what the node settles at once the fill is over
    error: str = ""


def judge(f: BacklogFacts) -> tuple[dict[str, Any], list[slo.Check]]:
    led = ledger(Facts(scenario=NAME, duration_s=1.0, rates=Rates(0, 0, ()),
                       published=f.published, accepted=f.published, rejected=0,
                       unconfirmed=f.unconfirmed,
                       still_queued=f.still_queued, completed=f.completed, faulted=f.faulted,
                       skipped=0, duplicates=f.duplicates, done_in_time=f.completed))
    checks = [slo.at_least("queued_ratio", f.published / f.queued, 1.0,
                           f"{f.published:,} of {f.queued:,} confirmed into the queues")]
    for name, n in sorted(f.nodes.items()):
        who = f" ({name})" if len(f.nodes) > 1 else ""
        if n["peak_memory_fraction"] is not None:
            checks.append(slo.at_most(f"peak_memory_fraction_of_watermark{who}",
                                      n["peak_memory_fraction"],
                                      targets.MEMORY_WARNING_FRACTION,
                                      f"peak {format_bytes(n['peak_memory_bytes'])} of "
                                      f"watermark {format_bytes(n['mem_limit'])}"))
        checks.append(slo.at_most(f"memory_alarm{who}", int(n["memory_alarm"]), 0))
        if n["min_disk_free"] is not None and n["disk_free_limit"] is not None:
            checks.append(slo.Check(
                f"disk_free_above_limit{who}", f"> {format_bytes(n['disk_free_limit'])}",
                format_bytes(n["min_disk_free"]),
                slo.PASS if n["min_disk_free"] > n["disk_free_limit"] and not n["disk_alarm"]
                else slo.FAIL, "lowest disk free during the run"))
    allowed = round(f.predicted_drain_s * (1 + DRAIN_TOLERANCE), 1)
    if f.drain_s is None:
        checks.append(slo.Check("drain_time_s", f"<= {allowed:g}", "did not drain", slo.FAIL))
    else:
        checks.append(slo.at_most("drain_time_s", f.drain_s, allowed,
                                  f"model {f.predicted_drain_s:.1f}s (with the credit hold "
                                  f"measured) + {DRAIN_TOLERANCE:.0%}"))
    checks += [slo.at_most("unfinished_after_drain", f.still_queued, 0),
               slo.at_most("lost", led["lost"], 0,
                           "published = completed + faulted + still queued + lost")]
    checks += model_checks(f)
    if f.error:
        checks.append(slo.Check("run_error", "none", f.error, slo.FAIL))
    return led, checks


def model_checks(f: BacklogFacts) -> list[slo.Check]:
    """The model beside the measurement (the node that grew most). A miss is a WARN: the run
    still says whether the broker held; the model needs `plan --calibrate` for this broker."""
    if not f.nodes:
        return []
    worst = max(f.nodes.values(), key=lambda n: n["memory_growth_bytes"])
    measured_mem = worst["memory_growth_bytes"]
    ratio = f.predicted_memory_growth_bytes / measured_mem if measured_mem else math.inf
    checks = [slo.Check(
        "model_memory_bound", f"1 <= predicted/measured <= {MODEL_MEMORY_MAX_RATIO:g}",
        round(ratio, 3), slo.PASS if 1.0 <= ratio <= MODEL_MEMORY_MAX_RATIO else slo.WARN,
        f"predicted peak growth {format_bytes(f.predicted_memory_growth_bytes)}, measured "
        f"{format_bytes(measured_mem)}")]
    disk = max(f.nodes.values(), key=lambda n: n["disk_settled_bytes"])
    settled = disk["disk_settled_bytes"]
    err = (f.predicted_stored_bytes - settled) / settled if settled > 0 else math.inf
    checks.append(slo.Check(
        "model_disk_error", f"within +-{MODEL_DISK_TOLERANCE:.0%}", f"{err:+.1%}",
        slo.PASS if abs(err) <= MODEL_DISK_TOLERANCE else slo.WARN,
        f"predicted {format_bytes(f.predicted_stored_bytes)} once written, the node settled "
        f"at {format_bytes(settled)} after the fill ({disk['disk_source']})"))
    peak = max(n["disk_growth_bytes"] for n in f.nodes.values())
    checks.append(slo.Check(
        "model_disk_bound", f"<= {format_bytes(f.predicted_disk_bytes)}", format_bytes(peak),
        slo.PASS if peak <= f.predicted_disk_bytes else slo.WARN,
        "the peak disk growth against the model's peak (with a whole WAL being flushed)"))
    return checks


# --- the run ---------------------------------------------------------------------------------


class BacklogRun(RunEngine):
    mode = "backlog"

    def __init__(self, settings: RabbitSettings, profile: Profile, o: BacklogOptions) -> None:
        super().__init__(LoadOptions(registry.BACKLOG, out=o.out, force=o.force, quiet=o.quiet,
                                     junit=o.junit,
                                     sample_interval_s=o.sample_interval_s,
                                     drain_timeout_s=o.drain_timeout_s, payload=o.payload),
                         profile, NAME)
        self.o = o
        self.vhost = o.vhost or naming.run_vhost()
        self.settings = settings.with_vhost(self.vhost)
        self.profile = with_service_time(profile, o.service_time).resolved(self.settings)
        self.plan = fill_plan(self.profile, o.task_mix, o.queued)
        self.payload_bytes = parse_size_bytes(o.payload)
        self.recorder = Recorder(run=self.name)
        self.phases: dict[str, float] = {}
        # per queue: each record's arrival here minus its work's end, the credit's hold
        self.holds: dict[str, list[float]] = defaultdict(list)
        self.recorder.counted.add_listener(self._on_counted)
        self.peak_depth = 0
        self.published = self.unconfirmed = 0
        self.message_bytes = float(self.payload_bytes)
        self.drain_s: float | None = None

    async def prepare(self, cleanup: contextlib.AsyncExitStack) -> None:
        self.mgmt = await Management.for_run(self.settings, cleanup,
                                             own_vhost=self.o.vhost is None,
                                             keep=self.o.keep_vhost)
        stack = self.stack = Stack(self.settings, self.profile, StackOptions(
            instances=0, api_port=0, sink_port=0, run_id=self.name,
            log_path=self.run_dir / rundir.STACK_LOG))
        cleanup.push_async_callback(stack.stop)
        await stack.start()

    async def observe(self, cleanup: contextlib.AsyncExitStack) -> None:
        o = self.o
        conn = await amqp.connect(self.settings, "rabbitscale-recorder")
        cleanup.push_async_callback(conn.close)
        await listen(await conn.channel(), self.recorder.on_record, expires_s=3600,
                     queue_name=naming.RECORDER_QUEUE, durable=True)
        self.exact = exact_counter(await conn.channel())
        queues = list(self.plan)
        self.sampler = Sampler(ManagementSource(self.mgmt, detail=True), self.vhost,
                               queues + [self.profile.endpoint(q).error_queue for q in queues],
                               self.run_dir, interval_s=o.sample_interval_s,
                               probes=Probes(exact=self.exact, age=self.recorder.oldest_age_s))
        self.sampler.start()
        cleanup.push_async_callback(self.sampler.stop)
        self.say(f"run {self.name}: backlog of {o.queued:,} x {o.payload} "
                 f"({', '.join(f'{q} {n:,}' for q, (_, n) in self.plan.items())}), "
                 f"vhost {self.vhost}, out {self.run_dir}")
        await self._baseline(self.mgmt)

    async def load(self, cleanup: contextlib.AsyncExitStack) -> str:
        """The fill: publish the plan with confirms, then let the node settle."""
        o = self.o
        try:
            self.phases["fill_start"] = time.time()
            self.published, self.unconfirmed = await self._fill(self.sampler)
            self.phases["fill_end"] = time.time()
            took = self.phases["fill_end"] - self.phases["fill_start"]
            self.say(f"  filled: {self.published:,} confirmed in {took:.1f}s "
                     f"({self.published / max(1e-6, took):,.0f}/s); settling {o.settle_s:g}s")
            self.message_bytes = await self._message_bytes(self.mgmt)
            await asyncio.sleep(o.settle_s)
        except BadInput:
            raise
        except Exception as exc:  # reported as the run's error; what was measured stands
            return f"{type(exc).__name__}: {exc}"
        return ""

    async def drain(self) -> None:
        """The consumers start; timed until every queue is empty and every message has its
        completion record."""
        if not self.error:
            try:
                self.phases["drain_start"] = time.time()
                for _ in range(self.o.instances):
                    self.say(f"  drain: started {await self.stack.add_instance()}")
                self.drain_s = await self._drain(self.exact, self.published)
                self.phases["drain_end"] = time.time()
            except Exception as exc:  # as in the fill
                self.error = f"{type(exc).__name__}: {exc}"
        await self.sampler.stop()
        self.peak_depth = self.sampler.peak_depth()
        self.stack_summary = await self.stack.stop()

    async def result(self) -> output.RunResult:
        return self._result(self.stack_summary, self.published, self.unconfirmed,
                            self.message_bytes, self.drain_s, self.error)

    def measurements(self) -> output.Measurements:
        return self.recorder

    async def _baseline(self, mgmt: Management) -> None:
        """Wait until every node reports its figures (a node started seconds ago has none
        until its first statistics interval), then keep a few samples as the baseline."""
        deadline = time.time() + 60
        while time.time() < deadline:
            nodes = [n for n in await mgmt.nodes() if n.get("running", True)]
            if nodes and all(n.get("mem_used") is not None and n.get("disk_free") is not None
                             for n in nodes):
                break
            await asyncio.sleep(1.0)
        await asyncio.sleep(max(3.0, 3 * self.o.sample_interval_s))

    async def _fill(self, sampler: Sampler) -> tuple[int, int]:
        """Publish the plan with confirms, IN_FLIGHT at a time, kinds interleaved."""
        publisher = await Publisher(self.settings, self.profile, run_id=self.name).start()
        try:
            # kinds interleaved in proportion, as a mixed stream would arrive
            order = [kind for _, kind in sorted((j / n, kind) for kind, n in
                                                publishes(self.plan).items() for j in range(n))]
            confirmed = failed = 0
            sem = asyncio.Semaphore(IN_FLIGHT)
            bodies = {kind: self._body(kind) for kind in {k for k, _ in self.plan.values()}}

            async def one(i: int, kind: str) -> None:
                nonlocal confirmed, failed
                try:
                    type_name, body = bodies[kind]
                    r = await publisher.publish(type_name, dict(body), key=str(i % 100))
                    if r.ok:  # once in each queue it reaches
                        confirmed += self.profile.fanout(type_name)
                    else:
                        failed += 1
                finally:
                    sem.release()

            tasks: set[asyncio.Task[None]] = set()
            last = time.time()
            for i, kind in enumerate(order):
                await sem.acquire()
                t = asyncio.create_task(one(i, kind))
                tasks.add(t)
                t.add_done_callback(tasks.discard)
                if time.time() - last >= 5:
                    last = time.time()
                    self.say(f"  fill: {confirmed:,} confirmed  depth {sampler.current_depth():,}")
            if tasks:
                await asyncio.gather(*tasks)
            return confirmed, failed
        finally:
            await publisher.close()

    def _body(self, kind: str) -> tuple[str, dict[str, Any]]:
        """One body per kind, published again and again: the fill is bound by the broker."""
        return message_for(self.profile, Task(kind, 1, "backlog", self.payload_bytes, 0.0))

    async def _message_bytes(self, mgmt: Management) -> float:
        """Mean body size in the queues, as the broker counts it (``message_bytes``)."""
        for _ in range(20):  # queue stats lag the confirms by up to 5 s
            qs = {q["name"]: q for q in await mgmt.queues(self.vhost)}
            total = sum(int(qs.get(q, {}).get("messages") or 0) for q in self.plan)
            size = sum(int(qs.get(q, {}).get("message_bytes") or 0) for q in self.plan)
            if total >= sum(n for _, n in self.plan.values()) and size:
                return size / total
            await asyncio.sleep(0.5)
        return float(self.payload_bytes)

    def _on_counted(self, record: Any) -> None:
        self.holds[record.queue].append(max(0.0, time.time() - record.finished))

    async def _drain(self, exact: Any, published: int) -> float | None:
        """Seconds from the first consumer's start until every queue is empty and every
        message has its completion record; None after the timeout."""
        start = self.phases["drain_start"]
        deadline = start + self.o.drain_timeout_s
        last = time.time()
        while time.time() < deadline:
            depth = 0
            for q in self.plan:
                depth += await exact(q) or 0
            if depth == 0 and self.recorder.finished >= published + self.recorder.spawned:
                return time.time() - start
            if time.time() - last >= 5:
                last = time.time()
                self.say(f"  drain: {self.recorder.finished:,} done, depth {depth:,}, "
                         f"{time.time() - start:.0f}s")
            await asyncio.sleep(0.25)
        return None

    def _result(self, summary: dict[str, Any], published: int,
                unconfirmed: int, message_bytes: float, drain_s: float | None,
                error: str) -> output.RunResult:
        o, c, rec = self.o, self.o.coefficients, self.recorder
        with (self.run_dir / rundir.NODE_CSV).open(newline="") as f:
            nodes = measure(list(csv.DictReader(f)),
                            self.phases.get("fill_start", math.inf),
                            self.phases.get("drain_start", math.inf))
        total = sum(n for _, n in self.plan.values())
        drain = predicted_drain_s(self.profile, self.plan, o.instances, message_bytes, c,
                                  o.replicas)
        # the same model with the credit hold this run's consumers showed (they confirm a
        # completion record before each ack): what the drain is judged against
        hold = {q: statistics.median(v) for q, v in self.holds.items() if v}
        held = predicted_drain_s(self.profile, self.plan, o.instances, message_bytes, c,
                                 o.replicas, hold_s=hold)
        mem_growth = broker.memory_growth_bytes(total, message_bytes, c=c)
        disk = broker.disk_bytes(total, message_bytes, 1, c=c)
        stored = broker.stored_bytes(total, message_bytes, 1, c=c)
        counts = rec.counts()
        facts = BacklogFacts(
            queued=total, published=published, unconfirmed=unconfirmed,
            message_bytes=message_bytes,
            fill_s=self.phases.get("fill_end", 0) - self.phases.get("fill_start", 0),
            drain_s=drain_s, predicted_drain_s=held["drain_s"],
            completed=counts["completed"], faulted=counts["faulted"],
            still_queued=summary["still_queued"], duplicates=counts["duplicates"],
            nodes=nodes, predicted_memory_growth_bytes=mem_growth,
            predicted_disk_bytes=disk, predicted_stored_bytes=stored, error=error)
        led, checks = judge(facts)
        outcome = Outcome(led, checks, slo.verdict(checks), float(total),
                          published + unconfirmed, published / max(1, total))
        started = self.phases.get("fill_start", time.time())
        end = self.phases.get("drain_end", time.time())
        section = {
            "queued": total, "payload": o.payload, "message_bytes": round(message_bytes, 1),
            "plan": {q: n for q, (_, n) in self.plan.items()},
            "phases": self.phases, "replicas": o.replicas,
            "fill": {"seconds": round(facts.fill_s, 3),
                     "rate_per_s": round(published / facts.fill_s, 1) if facts.fill_s else None},
            "drain": {"seconds": None if drain_s is None else round(drain_s, 3),
                      "rate_per_s": round(published / drain_s, 1) if drain_s else None,
                      "predicted": drain, "predicted_with_hold": held,
                      "hold_ms": {q: round(v * 1000, 2) for q, v in hold.items()},
                      "service_time": o.service_time,
                      "instances": o.instances},
            "nodes": nodes,
            "model": {"memory_growth_bytes": mem_growth, "disk_bytes": disk,
                      "stored_bytes": stored,
                      "node_memory_bytes": broker.node_memory_bytes(total, message_bytes, c=c),
                      "bodies_in_memory_bytes": broker.bodies_in_memory_bytes(
                          total, message_bytes, c=c),
                      "coefficients": c.as_dict()},
            "guide_note": (f"the guide allows {targets.QUEUED_MESSAGES:,} queued messages "
                           f"but calls depth above {targets.DEPTH_CRITICAL:,} critical"),
        }
        return output.RunResult(
            name=self.name, profile=self.profile.name,
            scenario=NAME, mode=self.mode, outcome=outcome, started_at=started,
            load_ended_at=end, duration_s=max(1.0, end - started), instances=o.instances,
            workers=0, transport="amqp", rates=Rates(0, 0, ()),
            thresholds=slo.Thresholds(), peak_depth=self.peak_depth,
            publisher=summary.get("publisher", {}),
            config={"rabbitmq": self.settings.masked(), "profile": self.profile.name,
                    "profile_spec": profile_spec(self.profile),
                    "options": {k: (str(v) if isinstance(v, Path) else v)
                                for k, v in asdict(o).items()}},
            extra={"backlog": section})
