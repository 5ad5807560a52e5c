"""`rabbitscale plan --calibrate DIR [--out FILE]`: fit the model's free parameters to a
measured run and print predicted vs measured with the error in %.

Fitted: the service time per queue (the measured mean processing time) and, from a backlog run
(`rabbitscale run backlog`), the broker model's coefficients (capacity/broker.py): allocation
overhead from the peak memory growth, segment overhead from the disk the node settled at after
the fill, the node's baseline
and the publish ceiling. DIR is a run directory or a find-max directory (find_max.json plus one
run per step); with find-max data the maximum sustainable rate is compared too. ``--out FILE``
writes the fitted figures; ``plan --calibration FILE`` and ``run backlog --calibration FILE``
plan with them.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rabbitscale.capacity import broker, model
from rabbitscale.capacity.plan import endpoint_capacity_per_s
from rabbitscale.core.errors import BadInput
from rabbitscale.results.summary import LatencySummary, Summary
from rabbitscale.results.summary import read as read_summary
from rabbitscale.topology.profile_file import recorded_profile
from rabbitscale.topology.settings import RabbitSettings


class CalibrationError(BadInput):
    """The directory cannot be calibrated from (missing, unreadable, no usable step)."""


@dataclass(frozen=True)
class Comparison:
    quantity: str
    predicted: float | None
    measured: float | None
    unit: str
    note: str = ""

    @property
    def error_pct(self) -> float | None:
        if self.predicted is None or self.measured in (None, 0):
            return None
        return (self.predicted - self.measured) / self.measured * 100


def _read_json(path: Path) -> dict[str, Any]:
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        raise CalibrationError(f"{path}: not found") from None
    except (OSError, ValueError) as exc:
        raise CalibrationError(f"{path}: unreadable: {exc}") from None


def calibrate(path: str | Path) -> tuple[dict[str, Any], list[Comparison]]:
    p = Path(path)
    if not p.is_dir():
        raise CalibrationError(f"{p}: no such directory")
    fm = _read_json(p / "find_max.json") if (p / "find_max.json").exists() else None
    run_dir = _held_step(p, fm) if fm else p
    summary = _summary(run_dir)
    if summary.mode.startswith("black-box"):  # nothing of the model ran: the system did
        raise CalibrationError(f"{run_dir}: a black-box run of a deployed system, not of the "
                               f"reference stack: plan that system from it with `rabbitscale "
                               f"plan --profile-file FILE --from-run {run_dir}`")
    config = _read_json(run_dir / "config.json")
    settings = RabbitSettings.from_masked(config.get("rabbitmq", {}))
    profile = recorded_profile(config).resolved(settings)
    fitted: dict[str, Any] = {"service_time_s": {}, "run": str(run_dir)}
    capacities = _capacities(profile, summary, fitted)
    out = [Comparison(f"{q} capacity", cap, None, "msg/s", f"from fitted service time "
                      f"{fitted['service_time_s'][q] * 1000:.1f} ms")
           for q, cap in capacities.items()]
    if fm:
        out.append(_max_rate(profile, summary, capacities, fm))
    if summary.backlog:  # a backlog has no arrival process: the broker model is what it measures
        coefficients, rows = fit_broker(summary.backlog)
        fitted["broker"] = coefficients.as_dict()
        return fitted, out + rows
    return fitted, out + _depths(profile, summary, capacities)


def _held_step(p: Path, fm: dict[str, Any]) -> Path:
    """The find-max step that held at the highest rate."""
    held = [s for s in fm.get("steps", []) if s.get("held")]
    if not held:
        raise CalibrationError(f"{p}: no find-max step held")
    return Path(max(held, key=lambda s: s["rate_per_s"])["run_dir"])


def _summary(run_dir: Path) -> Summary:
    try:
        return read_summary(run_dir / "summary.json")
    except BadInput as exc:
        raise CalibrationError(str(exc)) from None


def _processing(summary: Summary, queue: str) -> LatencySummary | None:
    proc = summary.measured.latency_ms.get(queue, {}).get("processing")
    return proc if proc is not None and proc.count and proc.mean_ms is not None else None


def _capacities(profile: Any, summary: Summary, fitted: dict[str, Any]) -> dict[str, float]:
    """Per endpoint with completed messages: the capacity at its measured mean work."""
    out: dict[str, float] = {}
    for ep in profile.endpoints:
        proc = _processing(summary, ep.queue)
        if proc is None or proc.mean_ms is None:
            continue
        svc = proc.mean_ms / 1000
        fitted["service_time_s"][ep.queue] = round(svc, 6)
        out[ep.queue] = endpoint_capacity_per_s(ep, summary.instances or 1, svc)
    return out


def _max_rate(profile: Any, summary: Summary, capacities: dict[str, float],
              fm: dict[str, Any]) -> Comparison:
    task_queues = {k: profile.queues_of(k)[0] for k in profile.tasks if profile.queues_of(k)}
    mix = _mix_from_summary(summary, task_queues)
    total = sum(mix.values()) or 1.0
    predicted = min((capacities[q] / (mix.get(k, 0) / total) for k, q in task_queues.items()
                     if mix.get(k) and q in capacities), default=None)
    return Comparison("max sustainable task rate", predicted, fm.get("measured_max_per_s"),
                      "tasks/s", "find-max, last step that held")


def _depths(profile: Any, summary: Summary, capacities: dict[str, float]) -> list[Comparison]:
    dur = summary.duration_s or 1.0
    out = []
    for ep in profile.endpoints:
        proc = _processing(summary, ep.queue)
        if ep.queue not in capacities or proc is None:
            continue
        arrival = proc.count / dur
        depth = model.burst_backlog(arrival, capacities[ep.queue], dur,
                                    ep.max_length or math.inf)
        out.append(Comparison(f"{ep.queue} peak depth", depth, None, "msgs",
                              f"mean arrival {arrival:.2f}/s against capacity"))
    out.append(Comparison("peak queue depth (all queues)",
                          sum(c.predicted or 0 for c in out), summary.measured.peak_queue_depth,
                          "msgs"))
    return out


def fit_broker(backlog: dict[str, Any]) -> tuple[broker.BrokerCoefficients,
                                                 list[Comparison]]:
    """Broker coefficients from a backlog run's summary section, and the default model beside
    the fitted one on the same measurement."""
    nodes = backlog.get("nodes") or {}
    if not nodes:
        raise CalibrationError("the backlog run sampled no node: nothing to fit the broker "
                               "model to")
    worst = max(nodes.values(), key=lambda n: n["memory_growth_bytes"])
    disk = max(nodes.values(), key=lambda n: n.get("disk_settled_bytes", 0.0))
    n, size = float(backlog["queued"]), float(backlog["message_bytes"])
    fill = backlog.get("fill", {}).get("rate_per_s")
    measured_disk = disk.get("disk_settled_bytes") or None  # settled after the fill
    base = broker.BrokerCoefficients()
    fitted = broker.fit(worst["memory_growth_bytes"], n, size, measured_disk, base=base,
                        baseline_bytes=worst["baseline_memory_bytes"],
                        publish_rate_per_s=fill)
    rows = [
        Comparison("broker memory growth (default model)",
                   broker.memory_growth_bytes(n, size, c=base), worst["memory_growth_bytes"],
                   "bytes", "the peak the model bounds"),
        Comparison("broker memory growth (fitted)",
                   broker.memory_growth_bytes(n, size, c=fitted),
                   worst["memory_growth_bytes"], "bytes",
                   f"allocation overhead {fitted.alloc_overhead:g}"),
        Comparison("broker disk once written (default model)",
                   broker.stored_bytes(n, size, c=base), measured_disk, "bytes",
                   f"settled after the fill, {disk.get('disk_source', '')}"),
        Comparison("broker disk once written (fitted)", broker.stored_bytes(n, size, c=fitted),
                   measured_disk, "bytes",
                   f"segment overhead {fitted.segment_overhead_bytes:g} B/message"),
        Comparison("broker publish ceiling", broker.publish_ceiling_per_s(size, c=base),
                   fill, "msg/s", "confirmed publishes while filling"),
    ]
    return fitted, rows


def write_calibration(path: str | Path, fitted: dict[str, Any]) -> None:
    p = Path(path)
    doc = {"service_time_s": fitted.get("service_time_s", {}), "run": fitted.get("run")}
    if "broker" in fitted:
        doc["broker"] = fitted["broker"]
    try:
        p.write_text(json.dumps(doc, indent=2) + "\n")
    except OSError as exc:
        raise CalibrationError(f"{p}: cannot write the calibration: {exc.strerror or exc}") \
            from None


def read_calibration(path: str | Path) -> tuple[broker.BrokerCoefficients, dict[str, float]]:
    """(broker coefficients, service time per queue) from a file `--calibrate ... --out`
    wrote; a file from a run without a backlog keeps the measured broker defaults."""
    p = Path(path)
    doc = _read_json(p)
    service = doc.get("service_time_s", {}) if isinstance(doc, dict) else None
    if not isinstance(service, dict) or not all(
            isinstance(v, int | float) and not isinstance(v, bool) and v >= 0
            for v in service.values()):
        raise CalibrationError(f"{p}: service_time_s must map queues to seconds")
    coefficients = broker.BrokerCoefficients.from_dict(doc["broker"], str(p)) \
        if "broker" in doc else broker.BrokerCoefficients()
    return coefficients, {str(k): float(v) for k, v in service.items()}


def _mix_from_summary(summary: Summary, task_queues: dict[str, str]) -> dict[str, float]:
    counts = {k: (proc.count if (proc := _processing(summary, q)) else 0)
              for k, q in task_queues.items()}
    return {k: float(v) for k, v in counts.items() if v}


def render(fitted: dict[str, Any], rows: list[Comparison]) -> str:
    lines = [f"calibrated from {fitted['run']}"]
    for q, s in fitted["service_time_s"].items():
        lines.append(f"  service time {q}: {s * 1000:.2f} ms")
    if "broker" in fitted:
        b = fitted["broker"]
        lines.append(f"  broker: allocation overhead {b['alloc_overhead']:g}, segment overhead "
                     f"{b['segment_overhead_bytes']:g} B/message, baseline "
                     f"{b['baseline_bytes'] / 1e6:.0f} MB, publish ceiling "
                     f"{b['publish_ceiling_bytes_per_s'] / 1e6:.1f} MB/s")
    else:
        lines.append("  broker model: not fitted (needs a `rabbitscale run backlog` directory)")
    lines.append("")
    lines.append(f"  {'quantity':44s} {'predicted':>14s} {'measured':>14s} {'error':>8s}")
    def fmt(v: float | None) -> str:
        return "-" if v is None else f"{v:,.2f}" if abs(v) < 1000 else f"{v:,.0f}"

    for r in rows:
        err = f"{r.error_pct:+.1f}%" if r.error_pct is not None else ""
        lines.append(f"  {r.quantity:44s} {fmt(r.predicted):>14s} {fmt(r.measured):>14s} "
                     f"{err:>8s}  {r.unit}" + (f"  ({r.note})" if r.note else ""))
    return "\n".join(lines)
