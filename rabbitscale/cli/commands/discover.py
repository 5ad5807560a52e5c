"""`rabbitscale discover`: the profile file of a live MassTransit system, read from its vhost."""

from __future__ import annotations

import argparse
from typing import Any

from rabbitscale.cli import args as a
from rabbitscale.cli.args import Parser


def parser(argv: list[str]) -> Parser:
    p = Parser(prog="rabbitscale discover",
               usage="rabbitscale discover --vhost VHOST [--management URL] --out FILE",
               description="Reads the management API (GET only) and writes the profile file "
                           "of the system in VHOST: message-type exchanges, endpoints and their "
                           "queues (type, arguments after policies, prefetch), and where the "
                           "broker shows traffic, rates and service times marked as estimates "
                           "with their source. Then `plan --profile-file FILE` and "
                           "`doctor --vhost VHOST --profile-file FILE`.\n\nExit codes: 0 "
                           "written, 1 no MassTransit endpoint found, 2 bad input, 3 broker "
                           "unreachable or not authorised.")
    p.add_argument("--vhost", required=True, help="the vhost the system uses")
    p.add_argument("--management", type=a.http_url, metavar="URL",
                   help="the management API, e.g. http://host:15672 (default: the "
                        "configuration's host and management port; credentials from AMQP_URL "
                        "or CONDUITLLM__RABBITMQ__USERNAME/PASSWORD)")
    p.add_argument("--out", required=True, metavar="FILE",
                   help="the profile file to write (- for standard output)")
    p.add_argument("--name", help="the profile's name (default: discovered-VHOST)")
    p.add_argument("--window", type=a.duration_in(0, 3600), default="10s", metavar="DURATION",
                   help="how long to watch the broker's counters for the estimates of rates "
                        "and work (0s: one read, no traffic estimates)")
    return p


def run(args: argparse.Namespace) -> int:
    import asyncio
    import dataclasses
    import sys
    import time
    from pathlib import Path

    from rabbitscale.core import outputs
    from rabbitscale.core.errors import BadInput
    from rabbitscale.core.urls import check_url
    from rabbitscale.inspect.discover import discover, to_toml, unusable
    from rabbitscale.topology.settings import load_settings

    settings = load_settings().with_vhost(args.vhost)
    if args.management:
        check_url(args.management, "the management API", "--management")
        settings = dataclasses.replace(settings, management_url=args.management)
    out = None if args.out == "-" else outputs.new_file(Path(args.out), "--out")
    if not 0 <= args.window <= 3600:
        raise BadInput(f"--window must be between 0s and 1h, got {args.window:g}s")
    snap, window = asyncio.run(_read(settings, args.window))
    when = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    data = discover(snap, args.name, when, window)
    for why in unusable(snap):
        print(f"warning: queue {why}: left out", file=sys.stderr)
    if not data["endpoints"]:
        print(f"error: no MassTransit receive endpoint in vhost {args.vhost!r} (a queue bound "
              f"from an exchange of its own name); nothing written", file=sys.stderr)
        return 1
    text = to_toml(data, args.vhost, when)
    if out is None:
        sys.stdout.write(text)
    else:
        out.write_text(text, encoding="utf-8")
        n = data["endpoints"]
        print(f"wrote {out}: {len(n)} endpoint(s), {len(data['messages'])} message type(s), "
              f"{len(data.get('estimates', {}))} estimate(s) marked with their source")
    return 0


async def _read(settings: Any, window_s: float) -> tuple[Any, Any]:
    """One read of the vhost's objects, then its counters watched for ``window_s``."""
    from rabbitscale.broker.management import Management
    from rabbitscale.inspect.discover import watch
    from rabbitscale.inspect.doctor import read_broker

    snap = await read_broker(settings)
    if window_s <= 0:
        return snap, None
    async with Management(settings, read_only=True) as mgmt:
        return snap, await watch(mgmt, settings.vhost, window_s)
