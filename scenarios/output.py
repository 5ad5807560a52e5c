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
from typing import Any

from rabbitscale.core import latency, rundir
from rabbitscale.scenarios import slo
from rabbitscale.scenarios.outcome import Outcome
from rabbitscale.scenarios.recorder import METRICS, Recorder


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

    @property
    def verdict(self) -> str:
        return self.outcome.verdict


def latency_summaries(recorder: Recorder) -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}
    for queue, q in sorted(recorder.queues.items()):
        out[queue] = {m: latency.summary_ms(q.histograms[m]) for m in METRICS}
    out["webhook-sink"] = {"e2e": latency.summary_ms(recorder.webhook_e2e)}
    return out


def summary(result: RunResult, recorder: Recorder, locust_hdr: dict[str, Any]) -> dict[str, Any]:
    o = result.outcome
    return {
        "run": result.name, "scenario": result.scenario, "verdict": o.verdict,
        "started_at": result.started_at, "load_ended_at": result.load_ended_at,
        "duration_s": result.duration_s, "instances": result.instances,
        "workers": result.workers, "transport": result.transport,
        "targets": {"task_rate_per_min": result.rates.task_rate * 60,
                    "webhook_rate_per_s": result.rates.webhook_rate,
                    "burst_rates_per_s": list(result.rates.burst_rates),
                    "scheduled_arrivals": round(o.scheduled_arrivals, 1),
                    "thresholds": asdict(result.thresholds)},
        "measured": {"arrivals": o.arrivals, "keep_up_ratio": round(o.keep_up_ratio, 4),
                     "achieved_rate_per_min": round(o.arrivals / result.duration_s * 60, 1),
                     "peak_queue_depth": result.peak_depth,
                     "latency_ms": latency_summaries(recorder), "locust_hdr": locust_hdr},
        "ledger": o.ledger,
        "publisher": result.publisher,
        "fault": result.fault,
        "checks": [c.as_dict() for c in o.checks],
        **result.extra,
    }


def write(run_dir: Path, result: RunResult, recorder: Recorder) -> None:
    """Everything but the broker series, which the sampler streamed while it ran."""
    run_dir.mkdir(parents=True, exist_ok=True)
    hdr_dir = run_dir / rundir.HDR_DIR
    hdr_dir.mkdir(exist_ok=True)
    for queue, q in recorder.queues.items():
        for metric in METRICS:
            (hdr_dir / f"{queue}.{metric}.hdr").write_text(latency.encode(q.histograms[metric]))
    (hdr_dir / "webhook-sink.e2e.hdr").write_text(latency.encode(recorder.webhook_e2e))
    with (run_dir / rundir.THROUGHPUT_CSV).open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["t", "queue", "completed"])
        for (sec, queue), n in sorted(recorder.per_second.items()):
            w.writerow([sec, queue, n])
        for sec, n in sorted(recorder.webhook_per_second.items()):
            w.writerow([sec, "webhook-sink", n])
    locust_summary = run_dir / rundir.LOCUST_HDR_DIR / "summary.json"
    locust_hdr = json.loads(locust_summary.read_text()) if locust_summary.exists() else {}
    (run_dir / rundir.LEDGER).write_text(json.dumps(result.outcome.ledger, indent=2))
    (run_dir / rundir.SUMMARY).write_text(
        json.dumps(summary(result, recorder, locust_hdr), indent=2))
    (run_dir / rundir.CONFIG).write_text(json.dumps(result.config, indent=2, default=str))


def render_checks(result: RunResult) -> list[str]:
    """The terminal table: checks, ledger, verdict."""
    lines = [f"\n{'check':36s} {'target':>24s} {'measured':>14s}  verdict"]
    for c in result.outcome.checks:
        lines.append(f"{c.name:36s} {c.target:>24s} {str(c.measured):>14s}  {c.verdict}"
                     + (f"  ({c.detail})" if c.detail else ""))
    lines.append("ledger: " + " ".join(f"{k}={v}" for k, v in result.outcome.ledger.items()))
    return lines
