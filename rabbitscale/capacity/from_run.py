"""`rabbitscale plan --profile-file F --from-run RUN`: a system planned from what a run of it
measured, every input labelled measured, estimated, stated or assumed with its source.

Per endpoint the run (a black-box run's summary.json: the broker's counters and MassTransit's
meters per endpoint) gives the arrival rate, the consumers and their prefetch, the instances
(consuming connections) and the work per message (MassTransit's consume.duration; where the
consume meters cannot be told apart by endpoint, its receive.duration, estimated; without
meters no work is taken from the broker: it is asked for). The profile gives the concurrency
limit (MassTransit's ConcurrentMessageLimit, which no broker shows; discover estimates it as
the prefetch) and the policies. What-ifs change instances, prefetch and concurrency; the model
(capacity/plan.py's endpoint capacity, capacity/queueing.py's queue-wait percentiles) predicts
each endpoint's capacity and queue wait at the run's rates or at ``target_rate``; ``recommend``
gives per endpoint the fewest instances, with the prefetch and concurrency, that carry it with
headroom and within an SLO.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from rabbitscale.capacity import queueing
from rabbitscale.capacity.plan import endpoint_capacity_per_s
from rabbitscale.core.errors import BadInput
from rabbitscale.results.summary import EndpointResult, Summary
from rabbitscale.topology.policy import ServiceTime
from rabbitscale.topology.profiles import Endpoint, Profile

MEASURED, ESTIMATED, STATED, ASSUMED, MISSING = \
    "measured", "estimated", "stated", "assumed", "missing"
MAX_INSTANCES = 1000
WAIT_PERCENTILES = (50.0, 95.0, 99.0)


@dataclass(frozen=True)
class Input:
    """One input of the plan: its value, how it is known, and from where."""

    value: float | None
    label: str
    source: str

    def as_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclass(frozen=True)
class WhatIf:
    """Changes to plan with: instances (all endpoints, or per endpoint), prefetch and
    concurrency per endpoint, a target task rate and the SLO a recommendation must keep."""

    instances: int | None = None
    endpoint_instances: Mapping[str, int] = field(default_factory=dict)
    prefetch: Mapping[str, int] = field(default_factory=dict)
    concurrency: Mapping[str, int] = field(default_factory=dict)
    target_rate_per_s: float | None = None
    slo_queue_wait_ms: float | None = None  # queue_wait.p99 < this
    slo_stat: float = 99.0
    headroom: float = 0.3


@dataclass(frozen=True)
class EndpointPlan:
    queue: str
    inputs: dict[str, Input]
    capacity_per_s: float | None
    arrival_per_s: float
    utilisation: float | None
    queue_wait_ms: dict[str, float | None]
    method: str
    holds: bool | None  # None: the work is missing, nothing is predicted
    recommend: dict[str, Any] | None = None

    def as_dict(self) -> dict[str, Any]:
        return {"queue": self.queue, "inputs": {k: v.as_dict() for k, v in self.inputs.items()},
                "capacity_per_s": _round(self.capacity_per_s),
                "arrival_per_s": round(self.arrival_per_s, 3),
                "utilisation": _round(self.utilisation), "queue_wait_ms": self.queue_wait_ms,
                "method": self.method, "holds": self.holds, "recommend": self.recommend}


def _round(v: float | None, digits: int = 4) -> float | None:
    return None if v is None or math.isinf(v) else round(v, digits)


def _result(summary: Summary, queue: str) -> EndpointResult | None:
    return next((e for e in summary.endpoints or [] if e.queue == queue), None)


def inputs(ep: Endpoint, profile: Profile, summary: Summary, run: str,
           what: WhatIf) -> dict[str, Input]:
    """The endpoint's inputs with their labels (the what-ifs replace them, stated)."""
    got = _result(summary, ep.queue)
    estimates = profile.estimates
    work = (got.meters or {}).get("work") if got else None
    receive = (got.meters or {}).get("receive") if got else None
    out = {"arrival_per_s": Input(got.arrival_rate_per_s, MEASURED,
                                  f"the broker's counters over the load of {run}")
           if got else Input(0.0, MISSING, f"{run} has no figures for {ep.queue}")}
    if ep.queue in what.endpoint_instances or what.instances:
        out["instances"] = Input(what.endpoint_instances.get(ep.queue, what.instances),
                                 STATED, "what-if")
    elif got and got.instances:
        out["instances"] = Input(got.instances, MEASURED,
                                 f"consuming connections when {run} started")
    else:
        out["instances"] = Input(1, ASSUMED, "no consumer was seen: one instance")
    out["prefetch"] = Input(what.prefetch[ep.queue], STATED, "what-if") \
        if ep.queue in what.prefetch else \
        Input(got.prefetch // got.consumers, MEASURED, f"the consumers' prefetch in {run}") \
        if got and got.consumers and got.prefetch else \
        Input(ep.prefetch, STATED, "the profile")
    key = f"endpoints.{ep.queue}.concurrency"
    out["concurrency"] = Input(what.concurrency[ep.queue], STATED, "what-if") \
        if ep.queue in what.concurrency else \
        Input(ep.concurrency, ESTIMATED, estimates[key]) if key in estimates else \
        Input(ep.concurrency, STATED, "the profile")
    if work and work.get("mean_ms") is not None:
        out["work_s"] = Input(work["mean_ms"] / 1000, MEASURED,
                              f"MassTransit's consume.duration over {work['count']:,} messages "
                              f"in {run} (mean)")
    elif receive and receive.get("mean_ms") is not None:
        out["work_s"] = Input(receive["mean_ms"] / 1000, ESTIMATED,
                              f"MassTransit's receive.duration over {receive['count']:,} "
                              f"messages in {run} (mean; the whole receive, the consume "
                              f"included: the consume meters could not be told apart by "
                              f"endpoint; give it consumer_types in the profile)")
    elif ep.service_time is not None:
        skey = f"endpoints.{ep.queue}.service_time"
        out["work_s"] = Input(ep.service_time.mean_s, ESTIMATED if skey in estimates
                              else STATED, estimates.get(skey, "the profile's service_time"))
    else:
        out["work_s"] = Input(None, MISSING, "no work per message: run with --app-metrics (or "
                                             "--app-prometheus), or set service_time in the "
                                             "profile")
    return out


def _endpoint(ep: Endpoint, i: dict[str, Input]) -> Endpoint:
    return dataclasses.replace(ep, prefetch=int(i["prefetch"].value or 1),
                               concurrency=int(i["concurrency"].value or 1))


def _load(ep: Endpoint, i: dict[str, Input], arrival: float, instances: int
          ) -> queueing.EndpointLoad:
    work = ServiceTime("exponential", float(i["work_s"].value or 0.0))
    return queueing.endpoint_load(_endpoint(ep, i), instances, arrival, work, "poisson")


def predict(ep: Endpoint, i: dict[str, Input], arrival: float, instances: int
            ) -> tuple[float, dict[str, float | None], str]:
    """(capacity, queue-wait percentiles in ms, method) of the endpoint at ``arrival``."""
    work = float(i["work_s"].value or 0.0)
    cap = endpoint_capacity_per_s(_endpoint(ep, i), instances, work)
    waits, method = queueing.predict(_load(ep, i, arrival, instances), WAIT_PERCENTILES,
                                     messages=8_000)
    return cap, {f"p{p:g}": None if math.isinf(w) else round(w * 1000, 2)
                 for p, w in waits.items()}, method


def recommend(ep: Endpoint, i: dict[str, Input], arrival: float, what: WhatIf
              ) -> dict[str, Any]:
    """The fewest instances that carry ``arrival`` with the headroom and the SLO, at the
    concurrency given and, where the work waits on I/O rather than CPU (assumed), at twice
    it; prefetch at least the concurrency (MassTransit cannot run more than it holds)."""
    options = []
    base = int(i["concurrency"].value or 1)
    for conc in dict.fromkeys((base, base * 2)):
        trial = {**i, "concurrency": Input(conc, STATED, "recommendation"),
                 "prefetch": Input(max(conc, int(i["prefetch"].value or 1)), STATED,
                                   "recommendation")}
        for n in range(1, MAX_INSTANCES + 1):
            cap, waits, _ = predict(ep, trial, arrival, n)
            wait = waits.get(f"p{what.slo_stat:g}")
            if arrival <= (1 - what.headroom) * cap and (
                    what.slo_queue_wait_ms is None or
                    (wait is not None and wait < what.slo_queue_wait_ms)):
                options.append({"instances": n, "concurrency": conc,
                                "prefetch": int(trial["prefetch"].value or conc),
                                "capacity_per_s": round(cap, 3),
                                "queue_wait_ms": waits,
                                "assumes": "" if conc == base else
                                "the work waits on I/O, not CPU: twice the concurrency "
                                "doubles what one instance does"})
                break
        if ep.single_active_consumer:
            break  # one instance consumes: more do not help
    return {"arrival_per_s": round(arrival, 3), "options": options,
            "note": "" if options else f"no instance count up to {MAX_INSTANCES} carries it"
                                       + (" (single active consumer: one consumes)"
                                          if ep.single_active_consumer else "")}


def plan(profile: Profile, summary: Summary, run: str, what: WhatIf = WhatIf()
         ) -> list[EndpointPlan]:
    """Every endpoint the run measured (or the profile has), planned."""
    if not summary.endpoints:
        raise BadInput(f"{run}: no endpoint figures (summary.json's endpoints): plan "
                       f"--from-run reads a black-box run (run SCENARIO --target ...)")
    scale = 1.0
    if what.target_rate_per_s is not None:
        ran = summary.targets.task_rate_per_min / 60
        if ran <= 0:
            raise BadInput(f"{run}: the run had no task rate to scale to --target-rate")
        scale = what.target_rate_per_s / ran
    out = []
    for ep in profile.endpoints:
        i = inputs(ep, profile, summary, run, what)
        arrival = float(i["arrival_per_s"].value or 0.0) * scale
        instances = int(i["instances"].value or 1)
        if i["work_s"].value is None:
            out.append(EndpointPlan(ep.queue, i, None, arrival, None, {}, "work missing",
                                    None))
            continue
        cap, waits, method = predict(ep, i, arrival, instances)
        util = arrival / cap if cap and not math.isinf(cap) else 0.0
        wait = waits.get(f"p{what.slo_stat:g}")
        holds = util <= 1 - what.headroom and (
            what.slo_queue_wait_ms is None or (wait is not None
                                               and wait < what.slo_queue_wait_ms))
        rec = recommend(ep, i, arrival, what) if what.target_rate_per_s is not None or \
            not holds else None
        out.append(EndpointPlan(ep.queue, i, cap, arrival, util, waits, method, holds, rec))
    return out


def render(plans: list[EndpointPlan], run: str, what: WhatIf) -> str:
    """The calibrated plan as text: per endpoint its inputs with their labels, the
    prediction, and the recommendation."""
    at = f"{what.target_rate_per_s:g} tasks/s" if what.target_rate_per_s else "the run's rates"
    lines = [f"plan from {run}, at {at} (headroom {what.headroom:.0%}"
             + (f", SLO queue_wait.p{what.slo_stat:g} < {what.slo_queue_wait_ms:g} ms"
                if what.slo_queue_wait_ms is not None else "") + ")"]
    for p in plans:
        lines.append(f"\n[{p.queue}]")
        for name, i in p.inputs.items():
            value = "-" if i.value is None else f"{i.value:g}"
            lines.append(f"  {name:14s} {value:>12s}  {i.label:9s}  {i.source}")
        if p.holds is None:
            lines.append(f"  not planned: {p.inputs['work_s'].source}")
            continue
        lines.append(f"  capacity {p.capacity_per_s:,.1f}/s, {p.arrival_per_s:,.1f}/s "
                     f"arriving: utilisation {p.utilisation:.0%}; queue wait "
                     + ", ".join(f"{k} {_ms(v)}" for k, v in p.queue_wait_ms.items())
                     + f" ({p.method}, Poisson arrivals and exponential work assumed): "
                     + ("holds" if p.holds else "DOES NOT HOLD"))
        for o in (p.recommend or {}).get("options", []):
            lines.append(f"  recommend: {o['instances']} instance(s), concurrency "
                         f"{o['concurrency']}, prefetch {o['prefetch']} -> capacity "
                         f"{o['capacity_per_s']:,.1f}/s" + (f" ({o['assumes']})"
                                                            if o["assumes"] else ""))
        if p.recommend and p.recommend.get("note"):
            lines.append(f"  recommend: {p.recommend['note']}")
    verdict = "FAIL" if any(p.holds is False for p in plans) else "OK"
    lines.append(f"\nverdict: {verdict}")
    return "\n".join(lines)


def _ms(v: float | None) -> str:
    return "unbounded" if v is None else f"{v:,.1f} ms"


def as_json(plans: list[EndpointPlan], run: str, what: WhatIf) -> dict[str, Any]:
    return {"from_run": run, "target_rate_per_s": what.target_rate_per_s,
            "headroom": what.headroom, "slo_queue_wait_ms": what.slo_queue_wait_ms,
            "verdict": "FAIL" if any(p.holds is False for p in plans) else "OK",
            "endpoints": [p.as_dict() for p in plans]}

