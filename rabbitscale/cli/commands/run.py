"""`rabbitscale run`: three modes, each with a parser of its own, so that argparse itself
refuses what does not apply:

- ``run SCENARIO``: the reference stack in a vhost of its own, driven and judged;
- ``run backlog``: the broker holding a backlog (fill, hold, drain) against the broker model;
- ``run SCENARIO --target URL``: a deployed system, loaded from outside (black-box).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from rabbitscale.cli import args as a
from rabbitscale.cli import options
from rabbitscale.cli.args import Parser
from rabbitscale.core import targets
from rabbitscale.scenarios import contract
from rabbitscale.scenarios.drivers import DRIVERS
from rabbitscale.scenarios.registry import BACKLOG, SCENARIOS

EXITS = ("Exit codes: 0 every check passed, 1 a check failed, 2 bad input, 3 the broker "
         "(or target) unreachable, 4 the run itself failed, 5 the run is INVALID (the load "
         "generator did not hold its schedule).")
BLACK_BOX_ONLY = ("--target", "--api-key", "--prometheus", "--callback-url", "--poll",
                  "--expect-workers", "--master-port", "--expect-workers-max-wait")
STACK_ONLY = ("--instances", "--transport", "--scale-to", "--keep-vhost", "--fault",
              "--time-scale", "--prometheus-port", "--prometheus-linger", "--cluster",
              "--replicas", "--nemesis", "--seed", "--nemesis-interval")
BACKLOG_ONLY = ("--queued", "--drain-service-time", "--calibration")
DEFAULT_DURATION = "1m"


def _mode(argv: list[str]) -> str:
    positional = next((t for t in argv if not t.startswith("-")), None)
    if positional == BACKLOG:
        return "backlog"
    if any(t == "--target" or t.startswith("--target=") for t in argv):
        return "target"
    return "stack"


def parser(argv: list[str]) -> Parser:
    return {"backlog": backlog_parser, "target": target_parser,
            "stack": stack_parser}[_mode(argv)]()


def _elsewhere(flags: tuple[str, ...], where: str) -> dict[str, str]:
    return dict.fromkeys(flags, where)


def _scenario_list() -> str:
    return "\n".join(f"  {s.name:<16} {s.summary}" for s in SCENARIOS.values())


def _timing(p: Parser, drain_default: str) -> None:
    g = p.add_argument_group("timing")
    g.add_argument("--duration", type=a.duration_in(5, a.WEEK_S), default=DEFAULT_DURATION,
                   metavar="DURATION", help="how long the load runs, e.g. 2m")
    g.add_argument("--drain-timeout", type=a.duration_in(0, a.WEEK_S), default=drain_default,
                   metavar="DURATION", help="how long to wait for the queues to drain after "
                                            "the load")
    g.add_argument("--workers", type=a.bounded(int, 0, 64, "a whole number"), default=0,
                   help="local Locust worker processes (distributed mode); 0 = one process")
    g = options.thresholds(p)
    g.add_argument("--abort-on-fail", nargs="?", const="0s", default=None, type=a.duration,
                   metavar="GRACE",
                   help="stop the load once a latency threshold has failed for GRACE (default "
                        "0s: at once); the run still drains, writes everything and exits 1")


def stack_parser() -> Parser:
    p = Parser(prog="rabbitscale run",
               usage="rabbitscale run SCENARIO [OPTIONS]   (also: run backlog, "
                     "run SCENARIO --target URL)",
               parents=[options.instances(), options.profile(), options.load(),
                        options.run_output(), options.cluster()],
               elsewhere={**_elsewhere(BLACK_BOX_ONLY, "applies to black-box runs: "
                                                        "run SCENARIO --target URL"),
                          **_elsewhere(BACKLOG_ONLY, "applies to `run backlog`")},
               description=f"Start the reference stack in a fresh vhost, drive SCENARIO with "
                           f"Locust, sample the broker, write a run directory and judge the "
                           f"run.\n\nscenarios:\n{_scenario_list()}\n\n"
                           f"`rabbitscale run backlog --help` and `rabbitscale run SCENARIO "
                           f"--target URL --help` show the other two modes.\n\n{EXITS}")
    p.add_argument("scenario", choices=list(SCENARIOS), metavar="SCENARIO",
                   help="one of: " + ", ".join(SCENARIOS))
    _timing(p, "1m")
    from rabbitscale.faults.catalogue import FAULTS, SINGLE

    g = p.add_argument_group("the reference stack")
    g.add_argument("--transport", choices=list(DRIVERS), default="http",
                   help="how a task reaches the stack: " + "; ".join(
                       f"{t.name}: {t.summary}" for t in DRIVERS.values()))
    g.add_argument("--scale-to", type=a.instances, default=5,
                   help="scale_out: instances after the midpoint")
    g.add_argument("--keep-vhost", action="store_true", help="keep the run's vhost afterwards")
    g.add_argument("--fault", type=a.fault, metavar="FAULT",
                   help="inject a fault mid-run (docs/reliability.md; those marked * need "
                        "--cluster): " + ", ".join(f"{n}{'*' if FAULTS[n].needs_cluster else ''}"
                                                  for n in SINGLE))
    g.add_argument("--time-scale", type=a.time_scale, default=1.0, metavar="FACTOR",
                   help="multiply retry delays and breaker windows")
    from rabbitscale.faults.nemesis import DEFAULT_INTERVAL_S, KINDS

    g = p.add_argument_group("nemesis (with --cluster; docs/reliability.md)")
    g.add_argument("--nemesis", nargs="?", const="all", default=None, type=a.nemesis_kinds,
                   metavar="KINDS",
                   help="faults on a random, reproducible schedule through the run, judged by "
                        "the total-queue ledger: a comma list of kinds, 'partitions', or "
                        "nothing for all: " + ", ".join(KINDS))
    g.add_argument("--seed", type=a.bounded(int, 0, 2**31, "a whole number"), default=0,
                   help="the nemesis schedule's seed: the same seed, duration and interval "
                        "give the same faults")
    g.add_argument("--nemesis-interval", type=a.duration_in(1, a.DAY_S),
                   default=f"{DEFAULT_INTERVAL_S:g}s", metavar="DURATION",
                   help="a fault starts every DURATION, held for half of it (at most 30s)")
    g = p.add_argument_group("live metrics")
    g.add_argument("--prometheus-port", type=a.port, default=None, metavar="PORT",
                   help="serve live metrics at http://127.0.0.1:PORT/metrics for the whole run")
    g.add_argument("--prometheus-linger", type=a.duration_in(0, 3600), default="0s",
                   metavar="DURATION",
                   help="keep serving after the verdict (a last scrape sees the checks)")
    p.set_defaults(func=run_stack_mode)
    return p


def backlog_parser() -> Parser:
    from rabbitscale.engine.backlog import DRAIN_SERVICE_TIME

    p = Parser(prog="rabbitscale run backlog", usage="rabbitscale run backlog [OPTIONS]",
               parents=[options.instances(), options.profile(),
                        options.load(tasks=False, webhooks=False, users=False),
                        options.run_output(), options.cluster()],
               elsewhere={**_elsewhere(BLACK_BOX_ONLY, "applies to black-box runs: "
                                                        "run SCENARIO --target URL"),
                          **_elsewhere(("--duration", "--workers", "--fault", "--transport",
                                        "--nemesis", "--seed", "--nemesis-interval",
                                        "--thresholds", "--prometheus-port", "--users",
                                        "--threshold", "--abort-on-fail"),
                                       "does not apply: a backlog is filled to --queued, "
                                       "then drained")},
               description="The broker holding a backlog: publish with confirms (consumers "
                           "paused) until the queues hold --queued messages, hold, then drain; "
                           "memory and disk against the broker model.\n\n" + EXITS)
    p.add_argument("scenario", choices=[BACKLOG], metavar="backlog")
    g = p.add_argument_group("backlog")
    g.add_argument("--queued", type=a.bounded(int, 1, 10**8, "a whole number"),
                   default=targets.QUEUED_MESSAGES,
                   help="messages to hold (the guide's 100,000 total queued messages)")
    g.add_argument("--drain-timeout", type=a.duration_in(0, a.WEEK_S), default="10m",
                   metavar="DURATION",
                   help="how long the drain may take")
    g.add_argument("--drain-service-time", default=DRAIN_SERVICE_TIME, metavar="SPEC",
                   help="simulated work per message while draining, where the profile sets "
                        "none")
    g.add_argument("--calibration", metavar="FILE",
                   help="broker model coefficients from `rabbitscale plan --calibrate RUN "
                        "--out FILE` (default: the measured ones, docs/benchmarks.md)")
    g.add_argument("--keep-vhost", action="store_true", help="keep the run's vhost afterwards")
    p.set_defaults(func=run_backlog_mode)
    return p


def target_parser() -> Parser:
    p = Parser(prog="rabbitscale run", usage="rabbitscale run SCENARIO --target URL [OPTIONS]",
               parents=[options.profile(), options.load(), options.run_output()],
               elsewhere={**_elsewhere(STACK_ONLY, "acts on the reference stack, which a "
                                                    "black-box run does not start"),
                          **_elsewhere(BACKLOG_ONLY, "applies to `run backlog`")},
               description="Load a deployed system from outside: Locust drives its API with "
                           "your keys, every task carries a callback URL of its own, and the "
                           "broker is only observed (read-only) in --vhost.\n\n" + EXITS)
    p.add_argument("scenario", choices=[s.name for s in SCENARIOS.values()
                                        if not s.scales_out], metavar="SCENARIO")
    _timing(p, "1m")
    options.target(p, required=True)
    g = p.add_argument_group("load generators on other machines")
    g.add_argument("--expect-workers", type=a.bounded(int, 0, 256, "a whole number"),
                   default=0, help="wait for N workers joining with `rabbitscale worker`")
    g.add_argument("--master-port", type=a.port, default=5557,
                   help="port the Locust master listens on for workers")
    g.add_argument("--expect-workers-max-wait", type=a.duration_in(0, a.WEEK_S), metavar="DURATION",
                   help=f"give up (exit 3) when the workers have not all joined by then "
                        f"(0s: wait forever; default {contract.WORKERS_MAX_WAIT_S:g}s)")
    p.set_defaults(func=run_target_mode)
    return p


def run(args: argparse.Namespace) -> int:
    return int(args.func(args))


def run_stack_mode(args: argparse.Namespace) -> int:
    return _run_engine(args)


def run_target_mode(args: argparse.Namespace) -> int:
    return _run_engine(args)


def _run_engine(args: argparse.Namespace) -> int:
    """One run of the kind the flags choose (cli/engines.py)."""
    import asyncio

    from rabbitscale.cli import engines
    from rabbitscale.topology.profile_file import load_system

    settings, profile = load_system(args.profile, args.profile_file)
    make, _, settings, profile = engines.factory(args, settings, profile)
    engine = make(engines.load_options(args, duration_s=args.duration))
    return asyncio.run(engine.execute())


def _bad(message: str) -> Exception:
    from rabbitscale.core.errors import BadInput

    return BadInput(f"rabbitscale run: {message}")


def run_backlog_mode(args: argparse.Namespace) -> int:
    import asyncio

    from rabbitscale.capacity.broker import BrokerCoefficients
    from rabbitscale.capacity.calibrate import read_calibration
    from rabbitscale.engine.backlog import BacklogOptions, BacklogRun
    from rabbitscale.topology.profile_file import load_system
    from rabbitscale.topology.tasks import format_task_mix

    settings, profile = load_system(args.profile, args.profile_file)
    replicas = 1
    if args.cluster:
        from rabbitscale.broker.cluster import on_local_cluster

        settings, profile, replicas = on_local_cluster(settings, profile, args.replicas)
    elif args.replicas:
        raise _bad("--replicas needs --cluster")
    opts = BacklogOptions(
        queued=args.queued, payload=args.payload_size,
        task_mix=format_task_mix(args.task_mix) if args.task_mix else "",
        instances=args.instances, out=Path(args.out) if args.out else None, force=args.force,
        vhost=args.vhost, keep_vhost=args.keep_vhost, sample_interval_s=args.sample_interval,
        drain_timeout_s=args.drain_timeout, service_time=args.drain_service_time,
        replicas=replicas, junit=Path(args.junit) if args.junit else None,
        coefficients=read_calibration(args.calibration)[0] if args.calibration
        else BrokerCoefficients())
    return asyncio.run(BacklogRun(settings, profile, opts).execute())
