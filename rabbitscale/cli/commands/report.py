"""`rabbitscale report`: the HTML capacity report of a run directory."""

from __future__ import annotations

import argparse

from rabbitscale.cli import args as a
from rabbitscale.cli.args import Parser


def parser(argv: list[str]) -> Parser:
    p = Parser(prog="rabbitscale report",
               description="Write the run's self-contained HTML report; with --baseline, "
                           "deltas per metric and regression flags.\n\nExit codes: 0 report "
                           "written, 1 regressions against the baseline, 2 bad input or run "
                           "directory.")
    p.add_argument("run_dir", metavar="RUN_DIR", help="a directory written by `rabbitscale run`")
    p.add_argument("--baseline", metavar="RUN_DIR", help="another run directory to compare with")
    p.add_argument("--out", metavar="FILE", help="HTML file (default: RUN_DIR/report.html)")
    p.add_argument("--junit", metavar="FILE",
                   help="write the checks (and, with --baseline, the regression flags) as "
                        "JUnit XML")
    p.add_argument("--tolerance", type=a.bounded(float, 0.0, 10.0, "a fraction"), default=0.10,
                   metavar="FRACTION", help="relative change counted as a regression")
    return p


def run(args: argparse.Namespace) -> int:
    import json
    from pathlib import Path

    from rabbitscale.core import outputs
    from rabbitscale.core.rundir import REPORT_JSON
    from rabbitscale.reports.report import build

    if args.out:
        outputs.new_file(Path(args.out), "--out")
    if args.junit:
        outputs.new_file(Path(args.junit), "--junit")
    report = build(args.run_dir, args.baseline, args.out, args.tolerance)
    print(f"report: {report.path}")
    if args.junit:
        from rabbitscale.reports.junit import write_junit

        doc = json.loads((report.path.parent / REPORT_JSON).read_text())
        junit = write_junit(args.junit, Path(args.run_dir), doc.get("deltas"),
                            doc.get("baseline") or "")
        print(f"junit: {junit}")
    if report.regressions:
        print(f"regressions against the baseline: {', '.join(report.regressions)}")
        return 1
    return 0
