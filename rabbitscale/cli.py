"""The ``rabbitscale`` command. Subcommands import their modules lazily so that quick ones
(``plan``, ``audit``) answer without loading aio-pika, pandas or matplotlib.

Exit codes: 0 success, 1 a check failed (SLO breach, messages lost), 2 bad input
(flags, config files), 3 the broker or another dependency could not be reached.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from typing import Any

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_UNAVAILABLE = 0, 1, 2, 3


class CliError(Exception):
    """A one-line error for the user; ``code`` is the exit status."""

    def __init__(self, message: str, code: int = EXIT_USAGE) -> None:
        super().__init__(message)
        self.code = code


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # one line, exit 2, like argparse but shorter
        raise CliError(f"{self.prog}: {message}", EXIT_USAGE)


def _bounded(kind: type, lo: float, hi: float | None, what: str) -> Callable[[str], Any]:
    """An argparse type: ``kind(text)`` within [lo, hi], with a one-line message otherwise."""

    def parse(text: str) -> Any:
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {what}, got {text!r}") from None
        if value < lo or (hi is not None and value > hi):
            bound = f"between {lo} and {hi}" if hi is not None else f"at least {lo}"
            raise argparse.ArgumentTypeError(f"must be {bound}, got {value}")
        return value

    return parse


_positive_int = _bounded(int, 1, None, "a whole number")
_port = _bounded(int, 0, 65535, "a port number")
_ratio = _bounded(float, 0, 1, "a number")


def _duration(text: str) -> float:
    from rabbitscale.units import UnitError, parse_duration_s

    try:
        return parse_duration_s(text)
    except UnitError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _cmd_stack(args: argparse.Namespace) -> int:
    import asyncio

    from harness.stack import StackOptions, load_stack_config, run_stack
    from harness.webhook_sink import SinkOptions

    settings, profile = load_stack_config(args.profile, args.profile_file)
    opts = StackOptions(instances=args.instances, profile=args.profile,
                        profile_file=args.profile_file, host=args.host, api_port=args.api_port,
                        sink_port=args.sink_port, time_scale=args.time_scale,
                        demo_s=args.demo, sink=SinkOptions(latency_s=args.sink_latency,
                                         failure_ratio=args.sink_failure_ratio))
    return asyncio.run(run_stack(settings, profile, opts))


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(prog="rabbitscale", description=__doc__.split("\n\n")[0])
    sub = p.add_subparsers(dest="command", required=True, parser_class=_Parser)

    s = sub.add_parser("stack", help="run the reference API + N consumers + webhook sink")
    s.add_argument("--instances", type=_positive_int, default=3)
    s.add_argument("--profile", choices=["conduit", "guide"], default=None,
                   help="topology profile (default: the profile file's, else conduit)")
    s.add_argument("--profile-file", help="TOML profile file ([rabbitmq], [endpoints.*])")
    s.add_argument("--host", default="127.0.0.1", help="address the API and sink listen on")
    s.add_argument("--api-port", type=_port, default=5000)
    s.add_argument("--sink-port", type=_port, default=5055)
    s.add_argument("--sink-latency", type=_duration, default=0.0, help="e.g. 50ms")
    s.add_argument("--sink-failure-ratio", type=_ratio, default=0.0)
    s.add_argument("--demo", type=_duration, default=0.0, metavar="DURATION",
                   help="run the guide's load script (1,000 webhooks/min) for DURATION, "
                        "then stop and print the ledger")
    s.add_argument("--time-scale", type=float, default=1.0,
                   help="multiply retry delays and breaker windows (e.g. 0.01 for tests)")
    s.set_defaults(func=_cmd_stack)
    return p


def main(argv: list[str] | None = None) -> int:
    from harness.config import ConfigError

    try:
        args = build_parser().parse_args(argv)
        return args.func(args)
    except CliError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return exc.code
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        return 130
    except (ConnectionError, OSError) as exc:
        print(f"error: cannot reach a dependency: {exc}", file=sys.stderr)
        return EXIT_UNAVAILABLE


if __name__ == "__main__":
    sys.exit(main())
