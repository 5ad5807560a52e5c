"""Writing a run directory, in one place (layout: docs/run-directory.md, names: core/rundir.py).

``RunResult`` is everything a run concluded; ``write`` saves it with the recorder's histograms
and throughput and the sampler's broker series. Credentials never reach these files: settings
are written masked, API keys not at all.
"""

from __future__ import annotations

import csv
import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Protocol

from rabbitscale.core import latency, rundir
from rabbitscale.judge import slo
from rabbitscale.judge.outcome import Outcome
from rabbitscale.results.summary import Summary


class Measurements(Protocol):
    """Where a run's latency and throughput come from: the recorder (completion records of
    the reference stack) or the callback ledger (a black-box run)."""

    def histograms(self) -> dict[str, dict[str, Any]]:
        """name (a queue, the sink, a callback kind) -> metric -> HDR histogram"""

    def throughput(self) -> dict[tuple[int, str], int]:
        """(epoch second, name) -> finished in that second"""


@dataclass
class RunResult:
    name: str
    scenario: str
    outcome: Outcome
    started_at: float
    load_ended_at: float
    duration_s: float
    instances: int
    workers: int
    transport: str
    rates: Any  # schedule.Rates
    thresholds: slo.Thresholds
    peak_depth: int
    publisher: dict[str, Any] = field(default_factory=dict)
    fault: dict[str, Any] | None = None
    config: dict[str, Any] = field(default_factory=dict)  # settings masked, profile, options
    extra: dict[str, Any] = field(default_factory=dict)  # mode-specific summary sections
    mode: str = "stack"  # stack | backlog | black-box | black-box amqp
    profile: str = ""  # the system's profile: simulated (stack, backlog) or loaded (black-box)

    @property
    def verdict(self) -> str:
        return self.outcome.verdict


PROGRESS_EVERY_S = 5  # the terminal's progress line, every this many seconds of the schedule


class Progress:
    """The progress line a run prints while the load goes: count, rate since the last line,
    depth and p99 end-to-end latency."""

    def __init__(self, say: Any, counted: str) -> None:
        self.say, self.counted = say, counted
        self.last_count, self.last_t = 0, 0.0

    @staticmethod
    def due(now: float, start_at: float) -> bool:
        return bool(start_at and now > start_at and int(now - start_at) % PROGRESS_EVERY_S == 0)

    def tick(self, now: float, start_at: float, count: int, depth: int,
             p99_ms: float | None) -> None:
        """``p99_ms`` None: the run has no end-to-end latency of its own (black-box AMQP)."""
        if not self.due(now, start_at):
            return
        rate = (count - self.last_count) / max(1e-6, now - (self.last_t or start_at))
        self.last_count, self.last_t = count, now
        self.say(f"  {now - start_at:5.0f}s  {self.counted} {count:6d}  {rate:6.1f}/s  "
                 f"depth {depth:5d}" + ("" if p99_ms is None else f"  e2e p99 {p99_ms:7.1f} ms"))


def latency_summaries(m: Measurements) -> dict[str, dict[str, Any]]:
    return {name: {metric: latency.summary_ms(h) for metric, h in metrics.items()}
            for name, metrics in sorted(m.histograms().items())}


def summary(result: RunResult, m: Measurements, locust_hdr: dict[str, Any]) -> Summary:
    """summary.json, as the typed model every reader reads (results/summary.py)."""
    o = result.outcome
    return Summary.model_validate({
        "run": result.name, "scenario": result.scenario, "verdict": o.verdict,
        "mode": result.mode, "profile": result.profile, "started_at": result.started_at,
        "load_ended_at": result.load_ended_at, "duration_s": result.duration_s,
        "instances": result.instances, "workers": result.workers,
        "transport": result.transport,
        "targets": {"task_rate_per_min": result.rates.task_rate * 60,
                    "webhook_rate_per_s": result.rates.webhook_rate,
                    "burst_rates_per_s": list(result.rates.burst_rates),
                    "scheduled_arrivals": round(o.scheduled_arrivals, 1),
                    "thresholds": asdict(result.thresholds)},
        "measured": {"arrivals": o.arrivals, "keep_up_ratio": round(o.keep_up_ratio, 4),
                     "achieved_rate_per_min": round(o.arrivals / result.duration_s * 60, 1),
                     "peak_queue_depth": result.peak_depth,
                     "latency_ms": latency_summaries(m), "locust_hdr": locust_hdr},
        "ledger": o.ledger,
        "publisher": result.publisher,
        "fault": result.fault,
        "checks": o.checks,
        **result.extra,
    })


def write(run_dir: Path, result: RunResult, m: Measurements) -> None:
    """Everything but the broker series, which the sampler streamed while it ran."""
    run_dir.mkdir(parents=True, exist_ok=True)
    hdr_dir = run_dir / rundir.HDR_DIR
    hdr_dir.mkdir(exist_ok=True)
    for name, metrics in m.histograms().items():
        for metric, h in metrics.items():
            rundir.inside(hdr_dir, f"{name}.{metric}.hdr").write_text(latency.encode(h))
    with (run_dir / rundir.THROUGHPUT_CSV).open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["t", "queue", "completed"])
        for (sec, name), n in sorted(m.throughput().items()):
            w.writerow([sec, name, n])
    locust_summary = run_dir / rundir.LOCUST_HDR_DIR / "summary.json"
    locust_hdr = json.loads(locust_summary.read_text()) if locust_summary.exists() else {}
    (run_dir / rundir.LEDGER).write_text(json.dumps(result.outcome.ledger, indent=2))
    (run_dir / rundir.SUMMARY).write_text(summary(result, m, locust_hdr).to_json())
    (run_dir / rundir.CONFIG).write_text(json.dumps(result.config, indent=2, default=str))


def render_checks(result: RunResult) -> list[str]:
    """The terminal table: checks, ledger, verdict."""
    lines = [f"\n{'check':36s} {'target':>24s} {'measured':>14s}  verdict"]
    for c in result.outcome.checks:
        lines.append(f"{c.name:36s} {c.target:>24s} {str(c.measured):>14s}  {c.verdict}"
                     + (f"  ({c.detail})" if c.detail else ""))
    lines.append("ledger: " + " ".join(f"{k}={v}" for k, v in result.outcome.ledger.items()))
    return lines


def conclude(run_dir: Path, result: RunResult, m: Measurements, *, say: Any,
             quiet: bool = False, junit: Path | None = None) -> int:
    """The end of every kind of run, in one place: write the run directory, print the checks
    and the verdict, the JUnit file when asked, the HTML page unless quiet (find-max steps),
    and the exit code (4 when the run itself failed, 1 when a check did)."""
    from rabbitscale.core.errors import (
        EXIT_CHECK_FAILED,
        EXIT_INVALID,
        EXIT_OK,
        EXIT_RUN_FAILED,
    )

    write(run_dir, result, m)
    for line in render_checks(result):
        say(line)
    say(f"verdict: {result.verdict}   run directory: {run_dir}")
    if junit:
        from rabbitscale.reports.junit import write_junit

        say(f"junit: {write_junit(junit, run_dir)}")
    if not quiet:
        from rabbitscale.reports.report import build as build_report

        try:
            say(f"report: {build_report(run_dir).path}")
        except Exception as exc:  # the run's verdict stands even if the page fails
            say(f"report not written: {type(exc).__name__}: {exc}")
    if any(c.name == "run_error" for c in result.outcome.checks):
        return EXIT_RUN_FAILED
    if result.verdict == slo.INVALID:
        say("the run is INVALID: the load generator did not hold its schedule (see the "
            "generator_* checks); nothing is said of the system under test")
        return EXIT_INVALID
    return EXIT_OK if result.verdict == slo.PASS else EXIT_CHECK_FAILED
