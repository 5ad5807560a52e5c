"""`rabbitscale plan --calibrate DIR`: fit the model's free parameters to a measured run and
print predicted vs measured with the error in %.

Fitted: the service time per queue (the measured mean processing time) and the broker's
memory per queued message (least-squares slope of node memory over total queue depth, when
the depth varied enough to tell). DIR is a run directory or a find-max directory
(find_max.json plus one run per step); with find-max data the maximum sustainable rate is
compared too.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rabbitscale.capacity import model
from rabbitscale.capacity.plan import endpoint_capacity_per_s
from rabbitscale.core.errors import BadInput
from rabbitscale.harness.config import RabbitSettings
from rabbitscale.harness.overrides import recorded_profile
from rabbitscale.harness.tasks import TASK_KINDS, queue_for

MIN_DEPTH_RANGE = 200  # messages of depth variation needed to fit memory per message


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


def memory_per_message(run_dir: Path) -> tuple[float | None, float | None, str, float | None]:
    """(bytes per queued message, baseline bytes, note, peak node memory) from the sampled
    series."""
    import pandas as pd

    try:
        q = pd.read_csv(run_dir / "broker_queues.csv")
        n = pd.read_csv(run_dir / "broker_node.csv")
    except (OSError, ValueError) as exc:
        raise CalibrationError(f"{run_dir}: broker series unreadable: {exc}") from None
    q = q[~q["queue"].str.endswith("_error")]
    depth = q.assign(d=q["ready_now"].fillna(q["messages"])).groupby("t")["d"].sum()
    joined = pd.merge_asof(n.sort_values("t"), depth.rename("depth").reset_index()
                           .sort_values("t"), on="t").dropna(subset=["depth", "mem_used"])
    peak = float(n["mem_used"].max()) if len(n) else None
    if joined.empty:
        return None, None, "no samples", peak
    span = joined["depth"].max() - joined["depth"].min()
    baseline = float(joined.loc[joined["depth"].idxmin(), "mem_used"])
    if span < MIN_DEPTH_RANGE:
        return None, baseline, (f"depth varied by {span:.0f} messages only; a run with a "
                                f"backlog (e.g. webhook_burst over capacity) is needed"), peak
    x, y = joined["depth"].astype(float), joined["mem_used"].astype(float)
    slope = float(((x - x.mean()) * (y - y.mean())).sum() / ((x - x.mean()) ** 2).sum())
    return (slope, float(y.mean() - slope * x.mean()),
            f"fitted over a depth range of {span:.0f}", peak)


def calibrate(path: str | Path) -> tuple[dict[str, Any], list[Comparison]]:
    p = Path(path)
    if not p.is_dir():
        raise CalibrationError(f"{p}: no such directory")
    fm = _read_json(p / "find_max.json") if (p / "find_max.json").exists() else None
    if fm:
        held = [s for s in fm["steps"] if s["held"]]
        if not held:
            raise CalibrationError(f"{p}: no find-max step held")
        run_dir = Path(max(held, key=lambda s: s["rate_per_s"])["run_dir"])
    else:
        run_dir = p
    summary = _read_json(run_dir / "summary.json")
    config = _read_json(run_dir / "config.json")
    cfg = config.get("rabbitmq", {})
    settings = RabbitSettings.from_masked(cfg)
    profile = recorded_profile(config).resolved(settings)
    instances = int(summary.get("instances") or 1)
    latency = summary.get("measured", {}).get("latency_ms", {})

    fitted: dict[str, Any] = {"service_time_s": {}, "run": str(run_dir)}
    out: list[Comparison] = []
    capacities: dict[str, float] = {}
    for ep in profile.endpoints:
        proc = latency.get(ep.queue, {}).get("processing", {})
        if not proc.get("count"):
            continue
        svc = proc["mean_ms"] / 1000
        fitted["service_time_s"][ep.queue] = round(svc, 6)
        capacities[ep.queue] = endpoint_capacity_per_s(ep, instances, svc)
        out.append(Comparison(f"{ep.queue} capacity", capacities[ep.queue], None, "msg/s",
                              f"from fitted service time {svc * 1000:.1f} ms"))
    if fm:
        task_queues = {k: queue_for(profile, k) for k in TASK_KINDS}
        mix = _mix_from_summary(summary, task_queues)
        total = sum(mix.values()) or 1.0
        predicted = min((capacities[q] / (mix.get(k, 0) / total)
                         for k, q in task_queues.items()
                         if mix.get(k) and q in capacities), default=None)
        out.append(Comparison("max sustainable task rate", predicted,
                              fm.get("measured_max_per_s"), "tasks/s",
                              "find-max, last step that held"))
    per_msg, baseline, note, measured_peak_mem = memory_per_message(run_dir)
    fitted["broker_bytes_per_message"] = per_msg
    peak_depth = float(summary.get("measured", {}).get("peak_queue_depth") or 0)
    predicted_mem = None
    if baseline is not None:
        bpm = per_msg if per_msg is not None else model.ASSUMED_BROKER_BYTES_PER_MESSAGE["quorum"]
        predicted_mem = baseline + model.broker_queue_memory_bytes(peak_depth, 0, "quorum", bpm)
    out.append(Comparison("broker memory at peak depth", predicted_mem, measured_peak_mem,
                          "bytes", note if per_msg is None else
                          f"{per_msg:.0f} B/message, {note}"))
    dur = float(summary.get("duration_s") or 1)
    for ep in profile.endpoints:
        if ep.queue not in capacities:
            continue
        count = latency.get(ep.queue, {}).get("processing", {}).get("count", 0)
        arrival = count / dur
        backlog = model.burst_backlog(arrival, capacities[ep.queue], dur,
                                      ep.max_length or math.inf)
        out.append(Comparison(f"{ep.queue} peak depth", backlog, None, "msgs",
                              f"mean arrival {arrival:.2f}/s against capacity"))
    out.append(Comparison("peak queue depth (all queues)",
                          sum(c.predicted or 0 for c in out
                              if c.unit == "msgs" and c.quantity.endswith(" peak depth")),
                          peak_depth, "msgs"))
    return fitted, out


def _mix_from_summary(summary: dict[str, Any], task_queues: dict[str, str]
                      ) -> dict[str, float]:
    lat = summary.get("measured", {}).get("latency_ms", {})
    counts = {k: lat.get(q, {}).get("processing", {}).get("count", 0)
              for k, q in task_queues.items()}
    return {k: float(v) for k, v in counts.items() if v}


def render(fitted: dict[str, Any], rows: list[Comparison]) -> str:
    lines = [f"calibrated from {fitted['run']}"]
    for q, s in fitted["service_time_s"].items():
        lines.append(f"  service time {q}: {s * 1000:.2f} ms")
    bpm = fitted.get("broker_bytes_per_message")
    lines.append(f"  broker memory per queued message: "
                 f"{f'{bpm:.0f} B' if bpm is not None else 'not identifiable'}")
    lines.append("")
    lines.append(f"  {'quantity':44s} {'predicted':>14s} {'measured':>14s} {'error':>8s}")
    def fmt(v: float | None) -> str:
        return "-" if v is None else f"{v:,.2f}" if abs(v) < 1000 else f"{v:,.0f}"

    for r in rows:
        err = f"{r.error_pct:+.1f}%" if r.error_pct is not None else ""
        lines.append(f"  {r.quantity:44s} {fmt(r.predicted):>14s} {fmt(r.measured):>14s} "
                     f"{err:>8s}  {r.unit}" + (f"  ({r.note})" if r.note else ""))
    return "\n".join(lines)
