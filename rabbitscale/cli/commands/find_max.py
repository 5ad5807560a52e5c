"""`rabbitscale find-max`: the highest arrival rate the stack sustains, beside the model's."""

from __future__ import annotations

import argparse

from rabbitscale.cli import args as a
from rabbitscale.cli import options
from rabbitscale.cli.args import Parser
from rabbitscale.scenarios.registry import STEPPABLE


def _percent(text: str) -> float:
    from rabbitscale.core.errors import BadInput

    raw = text.strip()
    try:
        value = float(raw[:-1]) / 100 if raw.endswith("%") else float(raw)
    except ValueError:
        raise BadInput(f"expected a share such as 5% or 0.05, got {text!r}") from None
    if not 0.005 <= value <= 0.5:
        raise BadInput(f"must be between 0.5% and 50%, got {text!r}")
    return value


def parser(argv: list[str]) -> Parser:
    p = Parser(prog="rabbitscale find-max",
               parents=[options.instances(), options.profile(),
                        options.load(tasks=False, webhooks=False, users=False)],
               description="Step the task arrival rate from 70% of the model's prediction "
                           "(x1.2 a step) until a step breaks, then bisect to 5%; each step a "
                           "full run: on the reference stack in a vhost of its own, or with "
                           "--target on a deployed system (a step breaks when an endpoint does "
                           "not keep up or a check fails).\n\nExit codes: 0 a maximum was "
                           "found, 1 no step held, 2 bad input, 3 the broker or the target "
                           "unreachable.")
    p.add_argument("scenario", choices=STEPPABLE, metavar="SCENARIO",
                   help="one of: " + ", ".join(STEPPABLE))
    p.add_argument("--start", type=a.rate, default=None, metavar="RATE",
                   help="first rate (default: 70%% of the model's prediction)")
    p.add_argument("--step-duration", type=a.duration_in(5, a.WEEK_S), default="15s",
                   metavar="DURATION",
                   help="load time of each step")
    p.add_argument("--drain-timeout", type=a.duration_in(0, a.WEEK_S), default="20s",
                   metavar="DURATION",
                   help="how long each step may drain")
    p.add_argument("--resolution", type=a.typed(_percent), default="5%", metavar="SHARE",
                   help="stop bisecting when the bracket is this narrow (5%%: ~6 runs past the "
                        "first break; 10%%: fewer)")
    p.add_argument("--out", metavar="DIR",
                   help="directory for the step runs (default: "
                        "runs/find-max-SCENARIO-YYYYmmdd-HHMMSS)")
    p.add_argument("--force", action="store_true",
                   help="write into --out even if it is not empty (a run's files there are "
                        "replaced)")
    options.thresholds(p)
    options.target(p, vhost=True)
    return p


def run(args: argparse.Namespace) -> int:
    from pathlib import Path

    from rabbitscale.capacity.plan import predicted_max_per_s
    from rabbitscale.cli import engines
    from rabbitscale.core import outputs, rundir, targets
    from rabbitscale.experiments.find_max import Stepping, run_find_max
    from rabbitscale.scenarios.schedule import Rates
    from rabbitscale.topology.profile_file import load_system
    from rabbitscale.topology.tasks import check_mix

    settings, profile = load_system(args.profile, args.profile_file)
    mix = check_mix(args.task_mix, profile) if args.task_mix else profile.default_mix
    base = engines.load_options(args, duration_s=args.step_duration, rates=Rates(
        1.0, targets.WEBHOOK_BASELINE_PER_S, targets.WEBHOOK_BURSTS_PER_S))
    make, system, settings, profile = engines.factory(args, settings, profile)
    out = outputs.new_dir(rundir.place(Path(args.out) if args.out else None,
                                       f"find-max-{args.scenario}")[1], force=args.force)
    return run_find_max(make, base, predicted=predicted_max_per_s(settings, profile,
                                                                  args.instances, mix),
                        system=system, start=args.start, out_dir=out,
                        stepping=Stepping(resolution=args.resolution))
