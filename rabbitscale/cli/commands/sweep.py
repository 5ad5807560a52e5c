"""`rabbitscale sweep`: the latency curve across load, measured beside the latency model."""

from __future__ import annotations

import argparse

from rabbitscale.cli import args as a
from rabbitscale.cli import options
from rabbitscale.cli.args import Parser
from rabbitscale.scenarios.registry import STEPPABLE


def _fraction_pct(text: str) -> float:
    """'10%' or '0.1' -> 0.1."""
    from rabbitscale.core.errors import BadInput

    raw = text.strip()
    try:
        value = float(raw[:-1]) / 100 if raw.endswith("%") else float(raw)
    except ValueError:
        raise BadInput(f"expected a share of capacity such as 50% or 0.5, got {text!r}") \
            from None
    if not 0 < value <= 3:
        raise BadInput(f"must be between 0% and 300% of capacity, got {text!r}")
    return value


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
    g.add_argument("--from", dest="start", type=a.typed(_fraction_pct), default="10%",
                   metavar="SHARE", help="first step, a share of the model's capacity")
    g.add_argument("--to", dest="stop", type=a.typed(_fraction_pct), default="110%",
                   metavar="SHARE", help="last step, a share of the model's capacity")
    g.add_argument("--steps", type=a.bounded(int, 2, 50, "a whole number"), default=8,
                   help="steps, evenly spaced from --from to --to")
    g.add_argument("--step-duration", type=a.duration, default="30s", metavar="DURATION",
                   help="load time of each step")
    g.add_argument("--drain-timeout", type=a.duration, default="30s", metavar="DURATION",
                   help="how long each step may drain")
    g.add_argument("--arrivals", choices=["poisson", "even"], default="poisson",
                   help="Poisson arrivals (random, as users send) or evenly spaced")
    g.add_argument("--slo", type=a.typed(_slo), default=None, metavar="EXPR",
                   help="the threshold whose headroom to report: queue_wait.p99<400ms, "
                        "queue_wait.p95<..., e2e.p99<2s")
    g.add_argument("--out", metavar="DIR",
                   help="directory for the steps and sweep.json (default: runs/sweep-SCENARIO)")
    return p


def run(args: argparse.Namespace) -> int:
    from pathlib import Path

    from rabbitscale.cli import engines
    from rabbitscale.core import rundir, targets
    from rabbitscale.core.errors import BadInput
    from rabbitscale.experiments.sweep import SweepOptions, run_sweep
    from rabbitscale.scenarios.schedule import Rates
    from rabbitscale.topology.profile_file import load_system
    from rabbitscale.topology.tasks import check_mix

    if args.start >= args.stop:
        raise BadInput("rabbitscale sweep: --from must be below --to")
    settings, profile = load_system(args.profile, args.profile_file)
    mix = check_mix(args.task_mix, profile) if args.task_mix else profile.default_mix
    base = engines.load_options(args, duration_s=args.step_duration, rates=Rates(
        1.0, targets.WEBHOOK_BASELINE_PER_S, targets.WEBHOOK_BURSTS_PER_S))
    make, _, settings, profile = engines.factory(args, settings, profile)
    out = Path(args.out) if args.out else rundir.RUNS_DIR / f"sweep-{args.scenario}"
    return run_sweep(settings, profile, SweepOptions(
        base=base, factory=make, instances=args.instances, mix=mix, start=args.start,
        stop=args.stop, steps=args.steps, slo=args.slo, out_dir=out))
