"""`rabbitscale report runs/NAME [--baseline runs/OTHER] [--out FILE.html]`.

One self-contained HTML page: verdict banner, targets vs measured, charts over time, HDR
percentile curves, the capacity model beside the measurement, the configuration (credentials
masked) and, with a baseline, deltas with regression flags. Beside it, `report.json` holds the
model comparison and the deltas in stable field names.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jinja2

from rabbitscale.core import targets
from rabbitscale.core.rundir import REPORT_HTML, REPORT_JSON
from rabbitscale.core.verdicts import FAIL, INVALID
from rabbitscale.reports import charts
from rabbitscale.reports.compare import DEFAULT_TOLERANCE, compare
from rabbitscale.results.rundir import RunData, load
from rabbitscale.results.summary import LatencySummary, Summary

TEMPLATES = Path(__file__).resolve().parent / "templates"


def _model_rows(run: RunData) -> list[dict[str, Any]]:
    """The model's mean queue wait per queue (Allen-Cunneen G/G/c from the run's own arrivals,
    the profile's service-time distribution and the measured mean processing time) beside the
    measured wait for a slot; and, for the whole queue wait, that plus the measured transit
    (publish to delivery: the broker's part, which the model does not predict)."""
    from rabbitscale.capacity import model
    from rabbitscale.topology.profile_file import recorded_profile
    from rabbitscale.topology.settings import RabbitSettings

    cfg = run.config.get("rabbitmq", {})
    settings = RabbitSettings.from_masked(cfg)
    try:
        profile = recorded_profile(run.config).resolved(settings)
    except ValueError:
        return []
    duration = run.summary.duration_s or 1.0
    instances = run.summary.instances or 1
    arrival_scv = 1.0 if run.config.get("options", {}).get("arrivals") == "poisson" else 0.0
    rows = []
    empty = LatencySummary(count=0)
    for ep in profile.endpoints:
        lat = run.summary.measured.latency_ms.get(ep.queue, {})
        proc, wait = lat.get("processing", empty), lat.get("queue_wait", empty)
        if not proc.count or proc.mean_ms is None:
            continue
        arrival = proc.count / duration
        svc = max(proc.mean_ms / 1000, 1e-6)
        conc = model.effective_concurrency(ep.concurrency or 1, ep.prefetch or 1,
                                           ep.partitions if ep.partitioned else None)
        servers = conc * model.active_instances(instances, ep.single_active_consumer)
        service_scv = ep.service_time.scv if ep.service_time else 1.0
        waiting = model.ggc_mean_wait_s(arrival, svc, servers, arrival_scv, service_scv) * 1000
        slot = lat.get("slot_wait", empty).mean_ms
        measured = wait.mean_ms
        transit = max(0.0, measured - slot) if measured is not None and slot is not None \
            else 0.0
        predicted = waiting + transit
        error = (f"{(predicted - measured) / measured * 100:+.0f}%"
                 if measured else "n/a")
        rows.append({"queue": ep.queue, "arrival_per_s": round(arrival, 2), "servers": servers,
                     "processing_ms": round(svc * 1000, 2),
                     "utilisation": round(arrival * svc / servers, 4),
                     "predicted_slot_wait_ms": round(waiting, 3),
                     "measured_slot_wait_ms": slot, "transit_ms": round(transit, 3),
                     "predicted_wait_ms": round(predicted, 3), "measured_wait_ms": measured,
                     "error": error})
    return rows


def markers(s: Summary) -> list[tuple[float, str]]:
    """Vertical markers of the time charts: the fault's steps, the end of the load."""
    out = [(e.t, f"{e.kind or 'fault'} {e.step}") for e in (s.fault.events if s.fault else [])]
    if s.duration_s:
        out.append((s.duration_s, "load ends"))
    return out


def summary_cards(s: Summary) -> list[dict[str, str]]:
    """The figures at the top of the page: verdict, rate, p99 end to end per queue (or
    callback kind), lost, and whether the measurement can be trusted."""
    m = s.measured
    cards = [{"label": "verdict", "value": s.verdict, "cls": f"v-{s.verdict}"},
             {"label": "achieved rate", "value": f"{m.achieved_rate_per_min:,.0f}/min",
              "cls": ""}]
    for name, metrics in sorted(m.latency_ms.items()):
        e2e = metrics.get("e2e")
        if e2e is not None and e2e.p99_ms is not None:
            cards.append({"label": f"e2e p99 {name}", "value": f"{e2e.p99_ms:,.0f} ms",
                          "cls": ""})
    lost = s.ledger.get("lost")
    if lost is not None:
        cards.append({"label": "lost", "value": str(lost),
                      "cls": "v-FAIL" if lost not in (0, "0") else "v-PASS"})
    if s.validity is not None:
        ok = s.validity.valid
        cards.append({"label": "measurement", "value": "valid" if ok else "INVALID",
                      "cls": "v-PASS" if ok else "v-FAIL"})
    return cards


def ledger_items(ledger: Mapping[str, Any]) -> list[tuple[str, str]]:
    """The ledger as (field, value) pairs, tables flattened one level: it wraps as a grid
    instead of one row wider than the page."""
    out = []
    for k, v in ledger.items():
        if isinstance(v, dict):
            out += [(f"{k}: {kk}", str(vv)) for kk, vv in v.items()] or [(k, "-")]
        else:
            out.append((k, str(v)))
    return out


@dataclass(frozen=True)
class Report:
    path: Path
    regressions: list[str]


def time_charts(run: RunData, thresholds: Mapping[str, Any]) -> list[tuple[str, str | None]]:
    """The charts of the page in order: over time with the run's limits and markers (the
    backlog's against the model first), the latency curves, process memory."""
    s = run.summary
    t0 = s.started_at or (float(run.queues["t"].min()) if len(run.queues) else 0.0)
    marks = markers(s)
    limit = dict(targets_defaults(), **thresholds)
    out: list[tuple[str, str | None]] = [
        ("Throughput per queue", charts.throughput(run.throughput, t0, marks)
         or charts.consumed(run.queues, t0, marks)),
        ("Queue depth", charts.depth(run.queues, t0, limit["depth_warning"],
                                     limit["depth_critical"], marks)),
        ("Oldest message age", charts.message_age(run.queues, t0, limit["message_age_max_s"],
                                                  marks)),
        ("Node memory", charts.memory(run.node, t0, limit["memory_fraction_max"], marks)),
        ("Consumers", charts.consumers(run.queues, t0, marks)),
    ]
    if s.backlog:
        out[:0] = [("Broker memory vs model", charts.backlog_memory(
            run.node, t0, s.backlog, limit["memory_fraction_max"])),
                   ("Broker disk vs model", charts.backlog_disk(run.node, t0, s.backlog))]
    out += latency_charts(run)
    if run.processes is not None and len(run.processes):
        out.append(("Process memory", charts.processes(run.processes, t0)))
    return out


def targets_defaults() -> dict[str, float]:
    return {"depth_warning": targets.DEPTH_WARNING, "depth_critical": targets.DEPTH_CRITICAL,
            "message_age_max_s": targets.MESSAGE_AGE_MAX_S,
            "memory_fraction_max": targets.MEMORY_WARNING_FRACTION,
            "soak_min_duration_s": 600.0}


def latency_charts(run: RunData) -> list[tuple[str, str | None]]:
    """HDR percentile curves per metric, and the send delays Locust recorded."""
    hdr = {q: charts.decode_all(m) for q, m in run.hdr.items()}
    by_metric = {metric: {q: hs[metric] for q, hs in hdr.items() if metric in hs}
                 for metric in ("e2e", "queue_wait", "processing", "publish_delay")}
    delays = dict(by_metric["publish_delay"])
    delays.update({f"locust {k}": v for k, v in charts.decode_all(run.locust_hdr).items()
                   if k.endswith("send_delay")})
    return [("End-to-end latency", charts.percentile_curves(by_metric["e2e"],
                                                            "End-to-end latency (HDR)")),
            ("Queue wait", charts.percentile_curves(by_metric["queue_wait"],
                                                    "Queue wait (HDR)")),
            ("Processing", charts.percentile_curves(by_metric["processing"],
                                                    "Processing (HDR)")),
            ("Publish delay", charts.percentile_curves(delays,
                                                       "Publish delay: actual - intended"))]


def build(run_dir: str | Path, baseline_dir: str | Path | None = None,
          out: str | Path | None = None, tolerance: float = DEFAULT_TOLERANCE) -> Report:
    run = load(run_dir)
    base = load(baseline_dir) if baseline_dir else None
    s = run.summary
    thresholds = s.targets.thresholds
    chart_list = time_charts(run, thresholds)
    model_rows = _model_rows(run)
    deltas = compare(s, base.summary, tolerance) if base else None
    env = jinja2.Environment(loader=jinja2.FileSystemLoader(TEMPLATES),
                             autoescape=jinja2.select_autoescape(["html", "j2"]))
    soak_min = float(thresholds.get("soak_min_duration_s", 600.0))
    blackbox = s.mode in ("black-box", "black-box amqp")
    system = str(run.config.get("profile_spec", {}).get("name") or run.config.get("profile")
                 or "the system")
    html = env.get_template("report.html.j2").render(
        run=run, s=s, failed=s.failed((FAIL, INVALID)), cards=summary_cards(s),
        blackbox=blackbox, system=system,
        long_enough=s.duration_s >= soak_min, soak_min=soak_min, ledger=ledger_items(s.ledger),
        latency={q: {m: v.model_dump() for m, v in ms.items()}
                 for q, ms in s.measured.latency_ms.items()},
        charts=chart_list, model=model_rows, backlog=s.backlog,
        deltas=[d.as_dict() for d in deltas] if deltas is not None else None,
        baseline_name=base.name if base else "", tolerance_pct=round(tolerance * 100),
        config_json=json.dumps(run.config, indent=2))
    out_path = Path(out) if out else run.path / REPORT_HTML
    out_path.write_text(html, encoding="utf-8")
    regressions = [d.metric for d in deltas if d.regression] if deltas else []
    (out_path.parent / REPORT_JSON).write_text(json.dumps({
        "run": run.name, "verdict": s.verdict, "model_vs_measured": model_rows,
        "baseline": base.name if base else None,
        "deltas": [d.as_dict() for d in deltas] if deltas is not None else None,
        "regressions": regressions,
    }, indent=2))
    return Report(out_path, regressions)
