"""`rabbitscale validate`: the capacity model against measurement on the real broker."""

from __future__ import annotations

import argparse

from rabbitscale.cli import options
from rabbitscale.cli.args import Parser
from rabbitscale.core import targets


def parser(argv: list[str]) -> Parser:
    from rabbitscale.experiments.validation import BURST_CASE, CASES

    names = [c.name for c in (*CASES, BURST_CASE)]
    p = Parser(prog="rabbitscale validate", parents=[options.profile()],
               description="Each case sets the endpoint of one task kind of the profile (its "
                           "default mix's first; the burst case its webhook kind) and loads "
                           "it alone. Cases chosen so that a wrong model fails: the model "
                           "must hold at "
                           f"P/{1 + targets.MODEL_TOLERANCE:g} and break at "
                           f"P/{1 - targets.MODEL_TOLERANCE:g}.\n\nExit codes: 0 every case "
                           f"within tolerance ({targets.MODEL_TOLERANCE:.0%}, burst "
                           f"{targets.BURST_BACKLOG_TOLERANCE:.0%}), 1 a case is not, 2 bad "
                           f"input, 3 broker unreachable, 5 a capacity step or a latency "
                           f"comparison was inconclusive (the machine stalled under its step, "
                           f"three times).")
    p.add_argument("--case", action="append", default=[], choices=names, metavar="NAME",
                   help="run only this case (repeatable): " + ", ".join(names))
    p.add_argument("--search", action="store_true",
                   help="find-max around each prediction (slower) instead of the bracket")
    p.add_argument("--out", metavar="DIR", help="directory for the runs "
                                                "(default: runs/validation-YYYYmmdd-HHMMSS)")
    p.add_argument("--force", action="store_true",
                   help="write into --out even if it is not empty (a run's files there are "
                        "replaced)")
    return p


def run(args: argparse.Namespace) -> int:
    from pathlib import Path

    from rabbitscale.core import outputs, rundir
    from rabbitscale.experiments.validation import run_validate
    from rabbitscale.topology.profile_file import load_system

    settings, profile = load_system(args.profile, args.profile_file)
    out = outputs.new_dir(rundir.place(Path(args.out) if args.out else None,
                                       "validation")[1], force=args.force)
    return run_validate(settings, profile, out, args.case or None, args.search)
