"""``rabbitscale``: the command registry and ``main``, the one place where an error becomes an
exit status (the codes: rabbitscale/core/errors.py).

Like pip's command registry, each command is a module of ``rabbitscale.cli.commands`` with a
``parser()`` and a ``run(args)``, imported only when that command runs: ``plan`` and ``audit``
answer without loading aio-pika, pandas or matplotlib, and ``--help`` loads none of them.
"""

from __future__ import annotations

import argparse
import difflib
import importlib
import logging
import os
import sys
import textwrap
from dataclasses import dataclass

from rabbitscale import __version__
from rabbitscale.cli.args import Parser
from rabbitscale.core.errors import (
    EXIT_INTERRUPTED,
    EXIT_OK,
    EXIT_RUN_FAILED,
    BadInput,
    RabbitscaleError,
)
from rabbitscale.core.urls import scrub


@dataclass(frozen=True)
class Command:
    module: str
    summary: str


COMMANDS: dict[str, Command] = {
    "run": Command("run", "drive a scenario against the reference stack (or, with --target, "
                          "a deployed system) and judge it against the guide's targets"),
    "plan": Command("plan", "the capacity model: memory, throughput, latency, backlog and "
                            "broker figures for a profile, each judged"),
    "find-max": Command("find_max", "step the arrival rate up until a check breaks, beside "
                                    "the model's prediction"),
    "sweep": Command("sweep", "the latency curve across load, measured beside the latency "
                              "model: the knee and the headroom at an SLO"),
    "validate": Command("validate", "hold the capacity model to measurements on the real "
                                    "broker"),
    "report": Command("report", "HTML capacity report of a run directory, optionally against "
                                "a baseline"),
    "doctor": Command("doctor", "read-only audit of a live broker against the profile and "
                                "the guide"),
    "discover": Command("discover", "write the profile file of a live MassTransit system from "
                                    "its vhost (read-only)"),
    "audit": Command("audit", "check a rabbitmq.conf before deploying it"),
    "stack": Command("stack", "run the reference system: API, N consumer processes, webhook "
                              "sink"),
    "profile": Command("profile", "the built-in profiles, a profile file checked, the "
                                  "format's JSON Schema"),
    "schema": Command("schema", "the JSON Schema of a file rabbitscale reads or writes: profile, "
                                "summary, find-max, doctor"),
    "cluster": Command("cluster", "a local RabbitMQ cluster on this machine (no Docker)"),
    "worker": Command("worker", "a Locust worker joining a run on another machine"),
}

DESCRIPTION = """\
Load-test and capacity-plan asynchronous task systems on RabbitMQ (MassTransit topologies)
against explicit targets: 1,000 tasks/min sustained, webhook bursts of 50-100/s, queue limits
and alert thresholds. `rabbitscale COMMAND --help` shows a command's options.

commands:
{commands}

exit codes: 0 success, 1 a check failed, 2 bad input, 3 a dependency unreachable (broker,
management API, target), 4 the run itself failed, 5 the run is INVALID (the load generator did
not hold its schedule)."""


def _top_parser() -> Parser:
    width = max(map(len, COMMANDS))
    listing = "\n".join(textwrap.fill(c.summary, 94, initial_indent=f"  {name:<{width}}  ",
                                      subsequent_indent=" " * (width + 4))
                        for name, c in COMMANDS.items())
    p = Parser(prog="rabbitscale", usage="rabbitscale [--version] COMMAND [OPTIONS]",
               description=DESCRIPTION.format(commands=listing))
    p.add_argument("--version", action="version", version=f"rabbitscale {__version__}")
    p.add_argument("command", nargs="?", metavar="COMMAND", help=argparse.SUPPRESS)
    return p


def _split(argv: list[str]) -> tuple[str | None, list[str], list[str]]:
    """(command, options before it, arguments after it)."""
    for i, token in enumerate(argv):
        if not token.startswith("-"):
            return token, argv[:i], argv[i + 1:]
    return None, argv, []


def dispatch(argv: list[str]) -> int:
    name, before, rest = _split(argv)
    top = _top_parser()
    if name is None or before:
        top.parse_args(before)  # --help, --version, or an unknown top-level option
        top.print_help()
        return EXIT_OK if name is None and any(a in ("-h", "--help") for a in before) else 2
    command = COMMANDS.get(name)
    if command is None:
        close = difflib.get_close_matches(name, list(COMMANDS), n=1, cutoff=0.7)
        raise BadInput(f"rabbitscale: unknown command {name!r}"
                       + (f"; did you mean {close[0]!r}?" if close else
                          f" (commands: {', '.join(COMMANDS)})"))
    module = importlib.import_module(f"rabbitscale.cli.commands.{command.module}")
    parser = module.parser(rest)
    args = parser.parse_args(rest)
    return int(module.run(args))


def _quiet_libraries() -> None:
    """Library loggers must not add lines to a one-line error (we report what failed)."""
    logging.basicConfig(level=logging.WARNING, format="%(name)s: %(message)s")
    for name in ("aiormq", "aio_pika", "asyncio"):
        logging.getLogger(name).setLevel(logging.CRITICAL)


def main(argv: list[str] | None = None) -> int:
    """Run one command; every failure ends here as one line and its exit code."""
    _quiet_libraries()
    try:
        return dispatch(sys.argv[1:] if argv is None else list(argv))
    except RabbitscaleError as exc:
        print(scrub(f"error: {exc}"), file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except BrokenPipeError:  # `rabbitscale plan | head -1`: the reader has what it wanted
        _silence_stdout()
        return EXIT_OK
    except Exception as exc:  # a bug: one line, the traceback on request
        if os.environ.get("RABBITSCALE_DEBUG"):
            raise
        print(scrub(f"error: unexpected {type(exc).__name__}: {exc} (set RABBITSCALE_DEBUG=1 "
                    f"for the traceback)"), file=sys.stderr)
        return EXIT_RUN_FAILED


def _silence_stdout() -> None:
    """After a broken pipe, Python's own flush at exit would fail again: point stdout at
    /dev/null so the process ends quietly."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())


if __name__ == "__main__":
    sys.exit(main())
