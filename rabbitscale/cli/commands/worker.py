"""`rabbitscale worker`: a Locust worker for a run's master on another machine."""

from __future__ import annotations

import argparse

from rabbitscale.cli import args as a
from rabbitscale.cli.args import Parser


def parser(argv: list[str]) -> Parser:
    p = Parser(prog="rabbitscale worker",
               description="Join `rabbitscale run ... --expect-workers N` running on another "
                           "machine: the scenario, its options, the keys and the schedule all "
                           "come from the master.\n\nExit codes: 0 the run ended, 2 bad input, "
                           "3 the master cannot be reached.")
    p.add_argument("--master", required=True, metavar="HOST[:PORT]",
                   help="the machine running `rabbitscale run ... --expect-workers N` "
                        "(port 5557 unless given)")
    p.add_argument("--wait", type=a.duration_in(0, a.DAY_S, above=True), default="60s",
                   metavar="DURATION",
                   help="how long to wait for the master to listen")
    return p


def run(args: argparse.Namespace) -> int:
    from rabbitscale.engine.load import master_address, run_worker

    host, port = master_address(args.master)
    run_worker(host, port, args.wait)
    return 0
