"""`rabbitscale sweep`: the latency curve across load, measured beside the latency model."""

from __future__ import annotations

import argparse

from rabbitscale.cli import args as a
from rabbitscale.cli import options
from rabbitscale.cli.args import Parser
from rabbitscale.scenarios.registry import STEPPABLE


def _share(text: str) -> object:
    """'10%' or '0.1' (of the model's capacity), or a rate such as '20/s'."""
    import math

    from rabbitscale.core.errors import BadInput
    from rabbitscale.core.units import parse_rate_per_s
    from rabbitscale.experiments.sweep import Share

    raw = text.strip()
    if "/" in raw:
        rate = parse_rate_per_s(raw)
        if not 0 < rate < 1e7:
            raise BadInput(f"a rate must be positive and finite, got {text!r}")
        return Share(rate, absolute=True)
    try:
        value = float(raw[:-1]) / 100 if raw.endswith("%") else float(raw)
    except ValueError:
        raise BadInput(f"expected a share of capacity such as 50% or 0.5, or a rate such as "
                       f"20/s, got {text!r}") from None
    if not math.isfinite(value) or not 0 < value <= 3:
        raise BadInput(f"must be between 0% and 300% of capacity, got {text!r}")
    return Share(value)


def _slo(text: str) -> object:
    from rabbitscale.experiments.sweep import parse_slo

    return parse_slo(text)


def parser(argv: list[str]) -> Parser:
    p = Parser(prog="rabbitscale sweep",
               parents=[options.instances(), options.profile(),
                        options.load(tasks=False, webhooks=False, users=False)],
               description="Step the task arrival rate across the model's capacity (a run in "
                           "a vhost of its own per step) and draw the latency curve of the "
                           "endpoint the task kind reaches: measured e2e, queue-wait, "
                           "slot-wait and processing percentiles beside the latency model's, "
                           "the knee, and the headroom at an SLO. Writes sweep.json and "
                           "sweep.html.\n\nExit codes: 0 the model's p99 queue wait is within "
                           "25% (or 10 ms) of the measured one at utilisation 0.5-0.9, 1 it is "
                           "not, 2 bad input, 3 broker unreachable, 5 inconclusive: every "
                           "such step ran on a stalled machine (each run three times).")
    p.add_argument("scenario", choices=STEPPABLE, metavar="SCENARIO",
                   help="one of: " + ", ".join(STEPPABLE))
    g = p.add_argument_group("the sweep")
    g.add_argument("--from", dest="start", type=a.typed(_share), default="10%",
                   metavar="SHARE", help="first step: a share of the model's capacity (50%%), "
                                         "or a rate (20/s)")
    g.add_argument("--to", dest="stop", type=a.typed(_share), default="110%",
                   metavar="SHARE", help="last step: a share of the model's capacity, or a "
                                         "rate")
    g.add_argument("--steps", type=a.bounded(int, 2, 50, "a whole number"), default=8,
                   help="steps, evenly spaced from --from to --to")
    g.add_argument("--step-duration", type=a.duration_in(5, a.WEEK_S), default="30s",
                   metavar="DURATION",
                   help="load time of each step")
    g.add_argument("--drain-timeout", type=a.duration_in(0, a.WEEK_S), default="30s",
                   metavar="DURATION",
                   help="how long each step may drain")
    g.add_argument("--arrivals", choices=["poisson", "even"], default="poisson",
                   help="Poisson arrivals (random, as users send) or evenly spaced")
    g.add_argument("--slo", type=a.typed(_slo), default=None, metavar="EXPR",
                   help="the threshold whose headroom to report: queue_wait.p99<400ms, "
                        "queue_wait.p95<..., e2e.p99<2s")
    g.add_argument("--endpoint", metavar="QUEUE",
                   help="the endpoint followed, where the task kind reaches several (default: "
                        "the first)")
    g.add_argument("--out", metavar="DIR",
                   help="directory for the steps and sweep.json (default: "
                        "runs/sweep-SCENARIO-YYYYmmdd-HHMMSS)")
    g.add_argument("--force", action="store_true",
                   help="write into --out even if it is not empty (a run's files there are "
                        "replaced)")
    options.thresholds(p)
    options.target(p, vhost=True)
    return p


def run(args: argparse.Namespace) -> int:
    from pathlib import Path

    from rabbitscale.cli import engines
    from rabbitscale.core import outputs, rundir, targets
    from rabbitscale.experiments.sweep import SweepOptions, run_sweep
    from rabbitscale.scenarios.schedule import Rates
    from rabbitscale.topology.profile_file import load_system
    from rabbitscale.topology.tasks import check_mix

    settings, profile = load_system(args.profile, args.profile_file)
    mix = check_mix(args.task_mix, profile) if args.task_mix else profile.default_mix
    base = engines.load_options(args, duration_s=args.step_duration, rates=Rates(
        1.0, targets.WEBHOOK_BASELINE_PER_S, targets.WEBHOOK_BURSTS_PER_S))
    make, system, settings, profile = engines.factory(args, settings, profile)
    blackbox = engines.kind(args) != engines.STACK
    if blackbox and not (args.app_metrics or args.app_prometheus):
        from rabbitscale.core.errors import BadInput

        raise BadInput("rabbitscale sweep --target: the curve comes from the system's own "
                       "meters: give --app-metrics (one per instance) or --app-prometheus")
    out = outputs.new_dir(rundir.place(Path(args.out) if args.out else None,
                                       f"sweep-{args.scenario}")[1], force=args.force)
    return run_sweep(settings, profile, SweepOptions(
        base=base, factory=make, instances=args.instances, mix=mix, start=args.start,
        stop=args.stop, steps=args.steps, slo=args.slo, out_dir=out, system=system,
        blackbox=blackbox, endpoint=args.endpoint))
