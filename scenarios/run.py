"""``rabbitscale run SCENARIO``: the stack, the recorder, the broker sampler and Locust
headless, in one vhost of their own, then a run directory and a verdict.

Run directory (stable names, documented in docs/run-directory.md):
config.json, locust_stats.csv (+ Locust's other CSVs), locust_hdr/, hdr/, broker_queues.csv,
broker_node.csv, throughput.csv, ledger.json, summary.json, stack.log, locust.log.
"""

from __future__ import annotations

import asyncio
import contextlib
import csv
import json
import math
import os
import sys
import time
import uuid
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import aio_pika

from rabbitscale.core import latency
from rabbitscale.harness.completions import listen
from rabbitscale.harness.config import RabbitSettings
from rabbitscale.harness.management import Management
from rabbitscale.harness.overrides import apply_overrides
from rabbitscale.harness.profiles import Profile
from rabbitscale.harness.stack import Stack, StackOptions
from rabbitscale.harness.webhook_sink import SinkOptions
from rabbitscale.scenarios import slo
from rabbitscale.scenarios.recorder import METRICS, Recorder
from rabbitscale.scenarios.sampler import Sampler
from rabbitscale.scenarios.schedule import Rates, burst_windows, expected_arrivals, streams

EXIT_PASS, EXIT_SLO, EXIT_ERROR = 0, 1, 4
SCENARIO_DIR = Path(__file__).resolve().parent
START_DELAY_S = 3.0  # time for Locust (and its workers) to start before the first slot


@dataclass
class RunOptions:
    scenario: str
    duration_s: float = 60.0
    instances: int = 3
    workers: int = 0
    out: Path | None = None
    rates: Rates = field(default_factory=lambda: Rates(1000 / 60, 10.0, (50.0, 100.0)))
    payload: str = "10KB"
    task_mix: str = "video=0.3,image=0.3,spend=0.4"
    transport: str = "http"
    users: int | None = None
    scale_to: int = 5
    sample_interval_s: float = 1.0
    drain_timeout_s: float = 60.0
    thresholds_file: str | None = None
    vhost: str | None = None
    keep_vhost: bool = False
    profile_file: str | None = None
    quiet: bool = False
    fault: str | None = None
    time_scale: float = 1.0


def _users(o: RunOptions) -> int:
    if o.users:
        return o.users
    peak = max(o.rates.task_rate, max((o.rates.webhook_rate, *o.rates.burst_rates)))
    return max(10, math.ceil(peak * 0.3)) + (10 if o.scenario == "mixed_peak" else 0)


def _locust_commands(o: RunOptions, run_dir: Path, host: str) -> list[list[str]]:
    # Locust's run time covers the start delay and the last replies; the schedule itself
    # (scenarios/schedule.py) spans exactly [start_at, start_at + duration).
    run_time = math.ceil(o.duration_s + START_DELAY_S + (2 if o.workers else 0) + 2)
    base = [sys.executable, "-m", "locust", "-f", str(SCENARIO_DIR / f"{o.scenario}.py"),
            "--host", host, "--headless", "--run-time", f"{run_time}s",
            "--users", str(_users(o)), "--spawn-rate", str(_users(o)),
            "--stop-timeout", "5", "--only-summary", "--loglevel", "WARNING",
            "--task-rate", f"{o.rates.task_rate}/s", "--webhook-rate", f"{o.rates.webhook_rate}/s",
            "--burst-rates", ",".join(f"{r}/s" for r in o.rates.burst_rates),
            "--payload-size", o.payload, "--transport", o.transport, "--task-mix", o.task_mix,
            "--schedule-time", f"{o.duration_s}"]
    if not o.workers:
        return [base + ["--csv", str(run_dir / "locust")]]
    master = base + ["--master", "--expect-workers", str(o.workers),
                     "--csv", str(run_dir / "locust")]
    worker = [sys.executable, "-m", "locust", "-f", str(SCENARIO_DIR / f"{o.scenario}.py"),
              "--worker", "--loglevel", "WARNING", "--host", host]
    return [master] + [worker] * o.workers


class Run:
    def __init__(self, settings: RabbitSettings, profile: Profile, o: RunOptions) -> None:
        self.o = o
        self.name = o.out.name if o.out else f"{o.scenario}-{time.strftime('%Y%m%d-%H%M%S')}"
        self.run_dir = o.out or Path("runs") / self.name
        self.vhost = o.vhost or f"rabbitscale-run-{uuid.uuid4().hex[:8]}"
        self.settings = settings.with_vhost(self.vhost)
        self.profile = profile
        self.recorder = Recorder(run=self.name)
        from rabbitscale.scenarios.faults import FAULTS

        self.fault = FAULTS[o.fault]() if o.fault else None
        self.overrides = dict(self.fault.profile_overrides) if self.fault else {}
        if self.overrides:
            self.profile = apply_overrides(profile, self.overrides, f"fault {o.fault}")
        self.thresholds = slo.load_thresholds(o.thresholds_file, **{
            "error_rate_max": max([ep.failure_probability for ep in profile.endpoints]
                                  + [0.0]) * 1.5,
            **(self.fault.thresholds if self.fault else {})})
        self.fault_events: list[dict[str, Any]] = []
        self.fault_ctx: Any = None

    def say(self, text: str) -> None:
        if not self.o.quiet:
            print(text, flush=True)

    async def execute(self) -> int:
        self.run_dir.mkdir(parents=True, exist_ok=True)
        mgmt = Management(self.settings)
        created = False
        if self.o.vhost is None:
            await mgmt.create_vhost(self.vhost)
            created = True
        try:
            return await self._execute(mgmt)
        finally:
            if created and not self.o.keep_vhost:
                with contextlib.suppress(Exception):
                    await mgmt.delete_vhost(self.vhost)
            await mgmt.close()

    async def _execute(self, mgmt: Management) -> int:
        o = self.o
        fault = self.fault
        stack = Stack(self.settings, self.profile, StackOptions(
            instances=o.instances, profile=self.profile.name, profile_file=o.profile_file,
            api_port=0, sink_port=0, run_id=self.name, log_path=self.run_dir / "stack.log",
            endpoint_overrides=self.overrides,
            time_scale=fault.time_scale if fault and fault.time_scale != 1.0 else o.time_scale,
            sink=SinkOptions(latency_s=fault.sink_latency_s if fault else 0.0,
                             failure_ratio=fault.sink_failure_ratio if fault else 0.0)))
        await stack.start()
        conn = await aio_pika.connect_robust(self.settings.amqp_url, reconnect_interval=1)
        await listen(await conn.channel(), self.recorder.on_record,
                     queue_name="rabbitscale.recorder", durable=True)
        stack.sink.arrived.add_listener(lambda arrival: self.recorder.on_arrival(arrival))
        sampler = Sampler(mgmt, await conn.channel(),
                          [ep.queue for ep in stack.profile.endpoints]
                          + [ep.error_queue for ep in stack.profile.endpoints],
                          self.recorder, o.sample_interval_s)
        sampler.start()
        self.say(f"run {self.name}: scenario {o.scenario}, {o.duration_s:g}s, "
                 f"{o.instances} instances, {o.workers or 1} Locust process(es), "
                 f"vhost {self.vhost}, out {self.run_dir}")
        start_at = time.time() + START_DELAY_S + (2.0 if o.workers else 0.0)
        env = {**os.environ, "RABBITSCALE_API_URL": stack.api_url,
               "RABBITSCALE_API_SECRET": stack.keys.secret,
               "RABBITSCALE_WEBHOOK_URL": stack.sink_url + "/hook",
               "RABBITSCALE_RUN_DIR": str(self.run_dir), "RABBITSCALE_RUN": self.name,
               "RABBITSCALE_WORKERS": str(max(1, o.workers)),
               "RABBITSCALE_START_AT": f"{start_at:.3f}",
               "RABBITSCALE_PROFILE": self.profile.name,
               "CONDUITLLM__RABBITMQ__VHOST": self.vhost}
        log = (self.run_dir / "locust.log").open("w", encoding="utf-8")
        procs = [await asyncio.create_subprocess_exec(*cmd, env=env, stdout=log,
                                                      stderr=asyncio.subprocess.STDOUT)
                 for cmd in _locust_commands(o, self.run_dir, stack.api_url)]
        error = ""
        try:
            error = await self._watch(procs, stack, sampler, start_at)
        finally:
            for p in procs:
                if p.returncode is None:
                    with contextlib.suppress(ProcessLookupError):
                        p.kill()
                    await p.wait()
            log.close()
        load_end = time.time()
        await self._drain(stack)
        await sampler.stop()
        stack_summary = await stack.stop()
        await conn.close()
        return self._finish(stack_summary, sampler, start_at, load_end, error)

    async def _watch(self, procs: list[asyncio.subprocess.Process], stack: Stack,
                     sampler: Sampler, start_at: float) -> str:
        deadline = start_at + self.o.duration_s + 60
        scaled = self.o.scenario != "scale_out"
        fault_task: asyncio.Task[None] | None = None
        if self.fault:
            from rabbitscale.scenarios.faults import FaultContext

            self.fault_ctx = FaultContext(stack, sampler.management, self.name, self.say)
            fault_task = asyncio.create_task(self._run_fault(start_at))
        last_count, last_t = 0, time.time()
        while procs[0].returncode is None:
            await asyncio.sleep(1.0)
            now = time.time()
            if not scaled and now >= start_at + self.o.duration_s / 2:
                scaled = True
                for _ in range(self.o.instances, self.o.scale_to):
                    self.say(f"  scale out: started {await stack.add_instance()}")
            if now > deadline:
                return "Locust did not finish in time"
            if int(now - start_at) % 5 == 0 and now > start_at:
                count = len(self.recorder.finished)
                rate = (count - last_count) / max(1e-6, now - last_t)
                last_count, last_t = count, now
                depth = sum(r["ready_now"] or 0 for r in sampler.queue_rows[-len(sampler.queues):])
                p99 = max((q.histograms["e2e"].get_value_at_percentile(99)
                           for q in self.recorder.queues.values()), default=0) / 1000
                self.say(f"  {now - start_at:5.0f}s  completed {count:6d}  {rate:6.1f}/s  "
                         f"depth {depth:5d}  e2e p99 {p99:7.1f} ms")
        await asyncio.gather(*(p.wait() for p in procs[1:]))
        if fault_task:
            await fault_task
        rc = procs[0].returncode
        if rc not in (0, 1):  # Locust: 1 = some requests failed, judged by the checks
            return f"Locust exited with code {rc} (see {self.run_dir / 'locust.log'})"
        return ""

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

    async def _drain(self, stack: Stack) -> None:
        """Wait until every confirmed message has a completion record (or the timeout)."""
        deadline = time.time() + self.o.drain_timeout_s
        while time.time() < deadline:
            if len(self.recorder.finished) >= stack.ledger.confirmed + self._amqp_confirmed():
                return
            await asyncio.sleep(0.2)

    def _amqp_confirmed(self) -> int:
        path = self.run_dir / "locust_stats.csv"
        if self.o.transport != "amqp" or not path.exists():
            return 0
        with path.open() as f:
            return sum(int(r["Request Count"]) - int(r["Failure Count"])
                       for r in csv.DictReader(f) if r["Type"] == "AMQP")

    def _finish(self, stack_summary: dict[str, Any], sampler: Sampler, start_at: float,
                load_end: float, error: str) -> int:
        o, rec, t = self.o, self.recorder, self.thresholds
        sampler.write(self.run_dir)
        hdr_dir = self.run_dir / "hdr"
        hdr_dir.mkdir(exist_ok=True)
        latencies: dict[str, Any] = {}
        for queue, q in sorted(rec.queues.items()):
            latencies[queue] = {}
            for metric in METRICS:
                h = q.histograms[metric]
                (hdr_dir / f"{queue}.{metric}.hdr").write_text(latency.encode(h))
                latencies[queue][metric] = latency.summary_ms(h)
        (hdr_dir / "webhook-sink.e2e.hdr").write_text(latency.encode(rec.webhook_e2e))
        latencies["webhook-sink"] = {"e2e": latency.summary_ms(rec.webhook_e2e)}
        with (self.run_dir / "throughput.csv").open("w", newline="") as f:
            w = csv.writer(f)
            w.writerow(["t", "queue", "completed"])
            for (sec, queue), n in sorted(rec.per_second.items()):
                w.writerow([sec, queue, n])
            for sec, n in sorted(rec.webhook_per_second.items()):
                w.writerow([sec, "webhook-sink", n])

        counts = rec.counts()
        extra = self.fault_ctx.extra_published if self.fault_ctx else 0
        confirmed = stack_summary["published"] + self._amqp_confirmed() + extra
        outcomes = stack_summary.get("publisher", {})
        unconfirmed = sum(int(outcomes.get(k, 0)) for k in ("timeout", "blocked", "failed",
                                                            "unroutable"))
        queued = stack_summary["still_queued"]
        finished = counts["completed"] + counts["faulted"] + counts["skipped"]
        ledger = {"published": confirmed, "rejected_at_publish": stack_summary["rejected"],
                  "failed_at_publish": unconfirmed,
                  **counts, "still_queued": queued,
                  "lost": max(0, confirmed - finished - queued),
                  # a publish reported as failed that the broker had in fact taken
                  "delivered_unconfirmed": max(0, finished + queued - confirmed),
                  "order_violations": rec.order_violations,
                  "redelivered": rec.redelivered,
                  "completed_after_retry": rec.completed_after_retry,
                  "faults_by_reason": dict(rec.fault_reasons),
                  "webhooks_arrived": rec.webhook_arrivals,
                  "webhook_duplicates": rec.webhook_duplicates}
        (self.run_dir / "ledger.json").write_text(json.dumps(ledger, indent=2))

        # share of arrivals finished by the end of the schedule (+0.5 s): below ~0.97 the
        # consumers did not keep up with the arrival rate (find-max's saturation signal)
        schedule_end = start_at + o.duration_s + 0.5
        done_in_time = sum(n for (sec, _), n in rec.per_second.items() if sec < schedule_end)
        keep_up = done_in_time / max(1, confirmed)
        rate_fns = streams(o.scenario, o.rates, o.duration_s)
        expected = sum(expected_arrivals(fn, 0, o.duration_s) for fn in rate_fns.values())
        attempted = confirmed + stack_summary["rejected"] + unconfirmed
        checks = [slo.at_least("achieved_rate_ratio", attempted / max(1.0, expected),
                               t.rate_ratio_min,
                               f"{attempted} arrivals of {expected:.0f} scheduled "
                               f"({attempted / o.duration_s * 60:.0f}/min)")]
        for i, (w0, w1, rate) in enumerate(burst_windows(o.duration_s, o.rates.burst_rates)
                                           if "webhooks" in rate_fns else []):
            want = expected_arrivals(rate_fns["webhooks"], w0, w1)
            half_gap = 0.5 / rate  # slots sit on the window's edges: count each edge once
            got = rec.absorbed(start_at + w0 - half_gap, start_at + w1 - half_gap,
                               t.burst_max_lag_s)
            checks.append(slo.at_least(
                f"burst_{i + 1}_absorbed", got / max(1.0, want), t.burst_ratio_min,
                f"{got} of {want:.0f} webhooks at {rate:g}/s delivered within "
                f"{t.burst_max_lag_s:g}s"))
        peak_depth = max((max(int(r["messages"] or 0), int(r["ready_now"] or 0))
                          for r in sampler.queue_rows if not r["queue"].endswith("_error")),
                         default=0)
        checks.append(slo.depth_check("peak_queue_depth", peak_depth, t))
        checks.append(slo.at_most("max_message_age_s", max(
            (r["oldest_age_s"] for r in sampler.queue_rows), default=0.0), t.message_age_max_s))
        mem = [r["mem_used"] / r["mem_limit"] for r in sampler.node_rows
               if r["mem_used"] and r["mem_limit"]]
        checks.append(slo.at_most("peak_memory_fraction_of_watermark", max(mem, default=0.0),
                                  t.memory_fraction_max))
        checks.append(slo.at_most("memory_alarm", int(any(r["mem_alarm"]
                                                           for r in sampler.node_rows)), 0))
        checks.append(slo.at_most("error_rate", counts["faulted"] / max(1, finished),
                                  t.error_rate_max, f"{counts['faulted']} in _error"))
        checks.append(slo.at_most("unfinished_after_drain", queued, 0,
                                  f"still queued after draining (up to {o.drain_timeout_s:g}s)"))
        checks.append(slo.at_most("lost", ledger["lost"], t.lost_max,
                                  "published = completed + faulted + still queued + lost"))
        checks.append(slo.at_most("order_violations", rec.order_violations, 0))
        if error:
            checks.append(slo.Check("run_error", "none", error, slo.FAIL))
        verdict = slo.verdict(checks)
        locust_hdr = self.run_dir / "locust_hdr" / "summary.json"
        summary = {
            "run": self.name, "scenario": o.scenario, "verdict": verdict,
            "started_at": start_at, "load_ended_at": load_end, "duration_s": o.duration_s,
            "instances": o.instances, "workers": o.workers, "transport": o.transport,
            "targets": {"task_rate_per_min": o.rates.task_rate * 60,
                        "webhook_rate_per_s": o.rates.webhook_rate,
                        "burst_rates_per_s": list(o.rates.burst_rates),
                        "scheduled_arrivals": round(expected, 1),
                        "thresholds": asdict(t)},
            "measured": {"arrivals": attempted, "keep_up_ratio": round(keep_up, 4),
                         "achieved_rate_per_min":
                         round(attempted / o.duration_s * 60, 1), "peak_queue_depth": peak_depth,
                         "latency_ms": latencies,
                         "locust_hdr": json.loads(locust_hdr.read_text())
                         if locust_hdr.exists() else {}},
            "ledger": ledger,
            "publisher": outcomes,
            "fault": {"name": self.fault.name, "description": self.fault.description,
                      "events": self.fault_events} if self.fault else None,
            "checks": [c.as_dict() for c in checks],
        }
        (self.run_dir / "summary.json").write_text(json.dumps(summary, indent=2))
        (self.run_dir / "config.json").write_text(json.dumps({
            "rabbitmq": self.settings.masked(), "profile": self.profile.name,
            "options": {k: (str(v) if isinstance(v, Path) else v)
                        for k, v in asdict(o).items()}}, indent=2, default=str))
        self.say(f"\n{'check':36s} {'target':>24s} {'measured':>14s}  verdict")
        for c in checks:
            self.say(f"{c.name:36s} {c.target:>24s} {str(c.measured):>14s}  {c.verdict}"
                     + (f"  ({c.detail})" if c.detail else ""))
        self.say("ledger: " + " ".join(f"{k}={v}" for k, v in ledger.items()))
        self.say(f"verdict: {verdict}   run directory: {self.run_dir}")
        if o.quiet:  # find-max steps: the verdict is what counts, skip the page
            return EXIT_ERROR if error else EXIT_PASS if verdict == slo.PASS else EXIT_SLO
        try:
            from rabbitscale.reports.report import build as build_report

            self.say(f"report: {build_report(self.run_dir)}")
        except Exception as exc:  # the run's verdict stands even if the page fails
            self.say(f"report not written: {type(exc).__name__}: {exc}")
        if error:
            return EXIT_ERROR
        return EXIT_PASS if verdict == slo.PASS else EXIT_SLO
