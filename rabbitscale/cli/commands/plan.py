"""`rabbitscale plan`: the capacity model for a profile, its settings and the targets; with
``--calibrate RUN`` the model fitted to a run directory instead."""

from __future__ import annotations

import argparse
from typing import Any

from rabbitscale.cli import args as a
from rabbitscale.cli import options
from rabbitscale.cli.args import Parser
from rabbitscale.core import targets


def parser(argv: list[str]) -> Parser:
    p = Parser(prog="rabbitscale plan",
               parents=[options.instances(default=None, what="(default: the profile's [plan] "
                                                             "instances, else the guide's 5)"),
                        options.profile(),
                        options.load(webhooks=False, users=False, task_default=None)],
               description="Every figure with its inputs and a verdict (OK/WARN/FAIL) against "
                           "the targets: client prefetch memory, partition throughput, "
                           "per-endpoint capacity, utilisation, instances needed, M/M/c wait, "
                           "faults and breaker trips, burst backlog and drain, and the broker "
                           "(memory, disk, network, publish ceiling).\n\nExit codes: 0 the "
                           "plan holds (OK/WARN), 1 a figure FAILs, 2 bad input.")
    g = p.add_argument_group("webhooks")
    g.add_argument("--webhook-burst", type=a.rate_or_zero, metavar="RATE",
                   default=f"{targets.WEBHOOK_BURSTS_PER_S[-1]:g}/s",
                   help="the burst the plan must absorb (a system that takes webhooks)")
    g.add_argument("--webhook-rate", type=a.rate, default=options.WEBHOOK_RATE,
                   metavar="RATE", help="baseline after bursts")
    g.add_argument("--burst-duration", type=a.duration_in(0, a.WEEK_S, above=True), default="5m",
                   metavar="DURATION",
                   help="how long a burst lasts")
    g = p.add_argument_group("messages and work")
    g.add_argument("--message-size", type=a.size, default="10KB", metavar="SIZE",
                   help="typical message size")
    g.add_argument("--worst-message-size", type=a.size, default="1MB", metavar="SIZE",
                   help="the largest message (a webhook's PayloadJson may be up to 1 MB)")
    g.add_argument("--service-time", type=a.queue_duration, action="append", default=[],
                   metavar="QUEUE=DURATION",
                   help="work per attempt of an endpoint, e.g. QUEUE=30s "
                        "(repeatable; 0 means no work)")
    g = p.add_argument_group("the broker")
    g.add_argument("--node-memory", type=a.size, default="4GiB", metavar="SIZE",
                   help="memory of the broker node (its container's limit)")
    g.add_argument("--watermark", type=a.bounded(float, 0.01, 1.0, "a fraction"),
                   default=targets.WATERMARK_RELATIVE, metavar="FRACTION",
                   help="vm_memory_high_watermark.relative")
    g.add_argument("--queued", "--queued-messages", dest="queued_messages",
                   type=a.bounded(int, 0, 10**9, "a whole number"), default=None, metavar="N",
                   help="messages queued at once (default: the guide's 100,000 for the "
                        "guide's system, else none)")
    g.add_argument("--replicas", type=a.bounded(int, 1, 9, "a whole number"), default=1,
                   help="quorum queue members, one per node (the guide's compose runs one "
                        "node)")
    g.add_argument("--disk", type=a.size, default=None, metavar="SIZE",
                   help="disk under the broker's data directory, e.g. 100GB")
    g.add_argument("--disk-free-limit", type=a.size, default=None, metavar="SIZE",
                   help="disk_free_limit (default: the guide's relative 2.0 x --node-memory)")
    g.add_argument("--link-speed", type=a.bitrate, default="100Mbps", metavar="RATE",
                   help="the broker's network link, e.g. 100Mbps (the guide's), 1Gbps")
    g = p.add_argument_group("output and calibration")
    g.add_argument("--json", action="store_true", help="every figure as JSON")
    g.add_argument("--calibrate", metavar="DIR",
                   help="fit the model to a run (or find-max) directory and print predicted "
                        "vs measured; a backlog run fits the broker model too")
    g.add_argument("--out", metavar="FILE", help="with --calibrate: write the fitted figures")
    g.add_argument("--calibration", metavar="FILE",
                   help="plan with a file written by --calibrate ... --out FILE")
    g.add_argument("--broker-version", type=a.rabbitmq_version, default=None,
                   metavar="X.Y[.Z]",
                   help="the RabbitMQ the plan is for: the plan says which broker figures "
                        "were measured on it and which are carried over untested")
    g = p.add_argument_group("a system planned from a run of it (--from-run)")
    g.add_argument("--from-run", metavar="DIR",
                   help="plan from a black-box run's measurements (each endpoint's arrivals, "
                        "consumers, prefetch and, with --app-metrics, MassTransit's work), "
                        "every input labelled measured, estimated, stated or assumed")
    g.add_argument("--target-rate", type=a.rate, metavar="RATE",
                   help="plan the run's mix at this task rate, with a recommendation per "
                        "endpoint (e.g. 10x the run's: 200/s)")
    g.add_argument("--slo", type=a.typed(_queue_wait_slo), metavar="EXPR",
                   help="what a recommendation must keep: queue_wait.p99<500ms (p50, p95, p99)")
    g.add_argument("--headroom", type=a.bounded(float, 0.0, 0.9, "a fraction"), default=0.3,
                   metavar="FRACTION", help="capacity kept free at the target rate")
    g.add_argument("--endpoint-instances", type=a.queue_count, action="append", default=[],
                   metavar="QUEUE=N", help="what-if: the instances of one endpoint (repeatable)")
    g.add_argument("--prefetch", type=a.queue_count, action="append", default=[],
                   metavar="QUEUE=N", help="what-if: an endpoint's prefetch (repeatable)")
    g.add_argument("--concurrency", type=a.queue_count, action="append", default=[],
                   metavar="QUEUE=N",
                   help="what-if: an endpoint's concurrency limit (repeatable)")
    return p


def _queue_wait_slo(text: str) -> tuple[float, float]:
    """queue_wait.p99<500ms -> (99.0, 500.0)."""
    from rabbitscale.experiments.sweep import parse_slo

    slo = parse_slo(text)
    if slo.metric != "queue_wait":
        from rabbitscale.core.errors import BadInput

        raise BadInput(f"expected queue_wait.STAT<DURATION, got {text!r}")
    return float(slo.stat[1:]), slo.max_ms


def run(args: argparse.Namespace) -> int:
    if args.calibrate:
        return _calibrate(args)
    if args.from_run:
        return _from_run(args)
    import json

    from rabbitscale.capacity.broker import BrokerCoefficients
    from rabbitscale.capacity.plan import (
        PlanInputs,
        as_json,
        broker_plan,
        build,
        profile_findings,
        render_table,
        verdict,
    )
    from rabbitscale.core.errors import BadInput
    from rabbitscale.core.units import format_bytes
    from rabbitscale.core.verdicts import FAIL
    from rabbitscale.topology.profile_file import load_system
    from rabbitscale.topology.tasks import check_mix

    if args.out:
        raise BadInput("rabbitscale plan: --out goes with --calibrate RUN")
    settings, profile = load_system(args.profile, args.profile_file)
    known = {ep.queue for ep in profile.endpoints}
    for queue, _ in args.service_time:
        if queue not in known:
            raise BadInput(f"rabbitscale plan: --service-time: no endpoint {queue!r} in "
                           f"profile {profile.name!r}")
    coefficients, fitted_service = BrokerCoefficients(), dict[str, float]()
    if args.calibration:
        from rabbitscale.capacity.calibrate import read_calibration

        coefficients, fitted_service = read_calibration(args.calibration)
    defaults = plan_defaults(args, profile)
    inputs = PlanInputs(
        settings=settings, profile=profile, instances=defaults["instances"][0],
        task_rate_per_s=defaults["task_rate"][0],
        mix=check_mix(args.task_mix, profile) if args.task_mix else None,
        webhook_burst_per_s=args.webhook_burst, webhook_baseline_per_s=args.webhook_rate,
        burst_s=args.burst_duration, message_bytes=args.message_size,
        worst_message_bytes=args.worst_message_size,
        service_time_s={**{q: v for q, v in fitted_service.items() if q in known},
                        **dict(args.service_time)},
        node_memory_bytes=args.node_memory, watermark_relative=args.watermark,
        queued_messages=defaults["queued"][0], replicas=args.replicas,
        disk_bytes=args.disk, disk_free_limit_bytes=args.disk_free_limit,
        link_bps=args.link_speed, coefficients=coefficients,
        broker_version=args.broker_version)
    figs = build(inputs)
    findings = profile_findings(profile, settings)
    if args.json:
        print(json.dumps(as_json(figs, profile=profile.name, instances=inputs.instances,
                                 broker=broker_plan(inputs).as_dict(), findings=findings,
                                 estimates=dict(profile.estimates),
                                 inputs={k: {"value": v, "source": s}
                                         for k, (v, s) in defaults.items()}),
                         indent=2, default=str))
    else:
        bursts = (f", webhook bursts {args.webhook_burst:g}/s for {args.burst_duration:g}s"
                  if profile.webhook_kind else "")
        title = (f"capacity plan: profile {profile.name}, {inputs.instances} instances, "
                 f"{inputs.task_rate_per_s * 60:g} tasks/min{bursts}, "
                 f"{inputs.queued_messages:,} queued x {format_bytes(args.message_size)}, "
                 f"{args.replicas} replica(s)\n  inputs: "
                 + "; ".join(f"{k} {v if not isinstance(v, float) else f'{v:.4g}'} ({s})"
                             for k, (v, s) in defaults.items())
                 + f"\n  broker figures: {coefficients.for_version(args.broker_version)['note']}"
                 + ("" if args.broker_version else " (--broker-version says for which "
                                                   "RabbitMQ the plan is)"))
        print(render_table(figs, findings, profile.estimates, title=title))
    return 1 if verdict(figs) == FAIL else 0


def plan_defaults(args: argparse.Namespace, profile: Any) -> dict[str, tuple[Any, str]]:
    """Instances, task rate and backlog the plan takes, each with where it comes from: a
    flag, the profile's [plan] (what discover saw), or the guide's target (assumed) for the
    guide's system. A system that is not the guide's plans no backlog it was not asked for."""
    def pick(flag: Any, flag_name: str, own: Any, own_source: str, guide: Any) -> tuple[Any, str]:
        if flag is not None:
            return flag, flag_name
        if own is not None:
            return own, own_source
        return guide, "the guide's target (assumed)"

    estimated = ("estimated by discover: " + profile.estimates.get("task_rate", "")).strip(": ")
    return {
        "instances": pick(args.instances, "--instances", profile.plan_instances,
                          "the profile's [plan] (" + profile.estimates.get(
                              "plan.instances", "stated") + ")", targets.INSTANCES[-1]),
        "task_rate": pick(args.task_rate, "--task-rate", profile.plan_task_rate_per_s,
                          f"the profile's [plan] ({estimated or 'stated'})",
                          targets.TASKS_PER_MIN / 60),
        "queued": pick(args.queued_messages, "--queued", None if profile.guide else 0,
                       "none asked for", targets.QUEUED_MESSAGES),
    }


def _calibrate(args: argparse.Namespace) -> int:
    import json

    from rabbitscale.capacity.calibrate import calibrate, render, write_calibration

    if args.out:
        from pathlib import Path

        from rabbitscale.core import outputs

        outputs.new_file(Path(args.out), "--out")
    fitted, rows = calibrate(args.calibrate)
    if args.out:
        write_calibration(args.out, fitted)
    if args.json:
        print(json.dumps({"fitted": fitted, "comparisons": [
            {"quantity": r.quantity, "predicted": r.predicted, "measured": r.measured,
             "unit": r.unit, "error_pct": r.error_pct, "note": r.note} for r in rows]},
            indent=2))
    else:
        print(render(fitted, rows))
        if args.out:
            print(f"calibration written to {args.out}: plan with `rabbitscale plan "
                  f"--calibration {args.out}`")
    return 0


def _from_run(args: argparse.Namespace) -> int:
    import json
    from pathlib import Path

    from rabbitscale.capacity import from_run
    from rabbitscale.core import rundir
    from rabbitscale.core.errors import BadInput
    from rabbitscale.results.summary import read
    from rabbitscale.topology.profile_file import load_system

    settings, profile = load_system(args.profile, args.profile_file)
    known = {ep.queue for ep in profile.endpoints}
    for flag, pairs in (("--endpoint-instances", args.endpoint_instances),
                        ("--prefetch", args.prefetch), ("--concurrency", args.concurrency)):
        for queue, _ in pairs:
            if queue not in known:
                raise BadInput(f"rabbitscale plan: {flag}: no endpoint {queue!r} in profile "
                               f"{profile.name!r}")
    run_dir = Path(args.from_run)
    summary = read(run_dir / rundir.SUMMARY)
    slo = args.slo or (99.0, None)
    what = from_run.WhatIf(instances=args.instances,
                           endpoint_instances=dict(args.endpoint_instances),
                           prefetch=dict(args.prefetch), concurrency=dict(args.concurrency),
                           target_rate_per_s=args.target_rate, slo_stat=slo[0],
                           slo_queue_wait_ms=slo[1], headroom=args.headroom)
    plans = from_run.plan(profile.resolved(settings), summary, str(run_dir), what)
    if args.json:
        print(json.dumps(from_run.as_json(plans, str(run_dir), what), indent=2))
    else:
        print(from_run.render(plans, str(run_dir), what))
    return 1 if any(p.holds is False for p in plans) else 0
