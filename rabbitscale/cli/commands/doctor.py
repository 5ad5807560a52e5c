"""`rabbitscale doctor`: a read-only audit of a live broker against the profile and the guide."""

from __future__ import annotations

import argparse

from rabbitscale.cli import args as a
from rabbitscale.cli import options
from rabbitscale.cli.args import Parser


def parser(argv: list[str]) -> Parser:
    p = Parser(prog="rabbitscale doctor",
               parents=[options.profile(), options.container_memory(None)],
               description="Reads the management API (and --prometheus) and never writes: "
                           "topology and effective arguments, consumers and prefetch, depth "
                           "and drain time, node limits, versions, the plan on live figures."
                           "\n\nExit codes: 0 no FAIL, 1 a FAIL, 2 bad input, 3 broker "
                           "unreachable or not authorised.")
    p.add_argument("--vhost", help="the vhost the system uses (default: the configuration's)")
    p.add_argument("--prometheus", type=a.http_url, action="append", default=[], metavar="URL",
                   help="also read rabbitmq_prometheus (one per node), e.g. when the "
                        "management metrics collector is off")
    p.add_argument("--upgrade-to", type=a.typed(_target), metavar="VERSION",
                   help="instead: what breaks or changes on the way from the broker's version "
                        "to VERSION (3.13, 4.0, 4.1, 4.2, 4.3) on this vhost and node (and in "
                        "the profile, when one is given); exit 1 when something breaks")
    p.add_argument("--json", action="store_true", help="the findings as JSON")
    p.add_argument("--verbose", action="store_true", help="show OK and INFO rows too")
    return p


def _target(text: str) -> str:
    from rabbitscale.inspect.upgrade import target_version

    return target_version(text)


def run(args: argparse.Namespace) -> int:
    import asyncio

    from rabbitscale.core.verdicts import FAIL
    from rabbitscale.inspect.doctor import diagnose, read_broker, render, result, verdict
    from rabbitscale.topology.profile_file import load_system

    settings, profile = load_system(args.profile, args.profile_file)
    if args.vhost:
        settings = settings.with_vhost(args.vhost)
    snap = asyncio.run(read_broker(settings, args.prometheus, upgrade=bool(args.upgrade_to)))
    if args.upgrade_to:
        from rabbitscale.inspect.doctor import upgrade_findings

        given = bool(args.profile or args.profile_file)
        findings = sorted(upgrade_findings(snap, args.upgrade_to, profile if given else None,
                                           settings),
                          key=lambda f: ["FAIL", "WARN", "OK", "INFO"].index(f.verdict))
        shown = f"{profile.name if given else 'none'}, upgrade to {args.upgrade_to}"
    else:
        findings = diagnose(snap, profile, settings,
                            container_memory_bytes=args.container_memory)
        shown = profile.name
    if args.json:
        print(result(findings, settings.vhost, shown).model_dump_json(indent=2))
    else:  # an upgrade's INFO rows are its way there and what comes later: always shown
        print(render(findings, settings.vhost, shown,
                     verbose=args.verbose or bool(args.upgrade_to)))
    return 1 if verdict(findings) == FAIL else 0
