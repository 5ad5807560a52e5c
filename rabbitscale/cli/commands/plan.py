"""`rabbitscale plan`: the capacity model for a profile, its settings and the targets; with
``--calibrate RUN`` the model fitted to a run directory instead."""

from __future__ import annotations

import argparse

from rabbitscale.cli import args as a
from rabbitscale.cli import options
from rabbitscale.cli.args import Parser
from rabbitscale.core import targets


def parser(argv: list[str]) -> Parser:
    p = Parser(prog="rabbitscale plan",
               parents=[options.instances(default=targets.INSTANCES[-1]), options.profile(),
                        options.load(webhooks=False, users=False)],
               description="Every figure with its inputs and a verdict (OK/WARN/FAIL) against "
                           "the targets: client prefetch memory, partition throughput, "
                           "per-endpoint capacity, utilisation, instances needed, M/M/c wait, "
                           "faults and breaker trips, burst backlog and drain, and the broker "
                           "(memory, disk, network, publish ceiling).\n\nExit codes: 0 the "
                           "plan holds (OK/WARN), 1 a figure FAILs, 2 bad input.")
    g = p.add_argument_group("webhooks")
    g.add_argument("--webhook-burst", type=a.rate, metavar="RATE",
                   default=f"{targets.WEBHOOK_BURSTS_PER_S[-1]:g}/s",
                   help="the burst the plan must absorb")
    g.add_argument("--webhook-rate", type=a.rate, default=options.WEBHOOK_RATE,
                   metavar="RATE", help="baseline after bursts")
    g.add_argument("--burst-duration", type=a.duration, default="5m", metavar="DURATION",
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
                   type=a.bounded(int, 0, 10**9, "a whole number"),
                   default=targets.QUEUED_MESSAGES, metavar="N",
                   help="messages queued at once (the guide's 100,000)")
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
    return p


def run(args: argparse.Namespace) -> int:
    if args.calibrate:
        return _calibrate(args)
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
    inputs = PlanInputs(
        settings=settings, profile=profile, instances=args.instances,
        task_rate_per_s=args.task_rate,
        mix=check_mix(args.task_mix, profile) if args.task_mix else None,
        webhook_burst_per_s=args.webhook_burst, webhook_baseline_per_s=args.webhook_rate,
        burst_s=args.burst_duration, message_bytes=args.message_size,
        worst_message_bytes=args.worst_message_size,
        service_time_s={**{q: v for q, v in fitted_service.items() if q in known},
                        **dict(args.service_time)},
        node_memory_bytes=args.node_memory, watermark_relative=args.watermark,
        queued_messages=args.queued_messages, replicas=args.replicas,
        disk_bytes=args.disk, disk_free_limit_bytes=args.disk_free_limit,
        link_bps=args.link_speed, coefficients=coefficients)
    figs = build(inputs)
    findings = profile_findings(profile, settings)
    if args.json:
        print(json.dumps(as_json(figs, profile=profile.name, instances=args.instances,
                                 broker=broker_plan(inputs).as_dict(), findings=findings,
                                 estimates=dict(profile.estimates)), indent=2, default=str))
    else:
        bursts = (f", webhook bursts {args.webhook_burst:g}/s for {args.burst_duration:g}s"
                  if profile.webhook_kind else "")
        title = (f"capacity plan: profile {profile.name}, {args.instances} instances, "
                 f"{args.task_rate * 60:g} tasks/min{bursts}, {args.queued_messages:,} queued "
                 f"x {format_bytes(args.message_size)}, {args.replicas} replica(s)")
        print(render_table(figs, findings, profile.estimates, title=title))
    return 1 if verdict(figs) == FAIL else 0


def _calibrate(args: argparse.Namespace) -> int:
    import json

    from rabbitscale.capacity.calibrate import calibrate, render, write_calibration

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
