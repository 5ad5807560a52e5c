"""`rabbitscale audit`: a rabbitmq.conf against RabbitMQ's schema and the guide's limits."""

from __future__ import annotations

import argparse

from rabbitscale.cli import args as a
from rabbitscale.cli import options
from rabbitscale.cli.args import Parser


def parser(argv: list[str]) -> Parser:
    p = Parser(prog="rabbitscale audit", parents=[options.container_memory("4GiB")],
               description="Check every key against RabbitMQ's cuttlefish schema and the "
                           "settings against the machine.\n\nExit codes: 0 no errors, 1 "
                           "errors (the node would not boot or the settings do not fit), 2 "
                           "unreadable input.")
    p.add_argument("conf", metavar="FILE", help="the rabbitmq.conf to check")
    p.add_argument("--target-version", default="3.13", type=a.rabbitmq_version,
                   metavar="X.Y[.Z]", help="the RabbitMQ version the file is for")
    p.add_argument("--upgrade-to", type=a.typed(_target), default=None, metavar="VERSION",
                   help="also: the lines RabbitMQ 3.13, 4.0, 4.1, 4.2 or 4.3 refuses (an "
                        "error: the node would not boot) or ignores (a warning), on the way "
                        "from the schema's version")
    p.add_argument("--disk", type=a.size, default=None, metavar="SIZE",
                   help="disk under the data directory, e.g. 50GB")
    p.add_argument("--plugins", default="rabbitmq_management", metavar="LIST",
                   help="enabled plugins, comma-separated")
    p.add_argument("--snapshot", action="store_true",
                   help="use the bundled schema snapshot even if RabbitMQ is installed")
    p.add_argument("--json", action="store_true", help="the findings as JSON")
    return p


def _target(text: str) -> str:
    from rabbitscale.inspect.upgrade import target_version

    return target_version(text)


def run(args: argparse.Namespace) -> int:
    import json

    from rabbitscale.inspect.audit import ERROR, audit_file, load_schema

    schema = load_schema(prefer_installed=not args.snapshot)
    findings = audit_file(
        args.conf, schema=schema, target_version=args.upgrade_to or args.target_version,
        upgrade_to=args.upgrade_to,
        container_memory_bytes=args.container_memory, disk_bytes=args.disk,
        enabled_plugins={p.strip() for p in args.plugins.split(",") if p.strip()})
    errors = sum(f.severity == ERROR for f in findings)
    if args.json:
        print(json.dumps({"file": args.conf, "schema": f"{schema.version} ({schema.source})",
                          "errors": errors, "findings": [f.as_dict() for f in findings]},
                         indent=2))
    else:
        for f in findings:
            where = f"{args.conf}:{f.line}: " if f.line else ""
            print(f"{where}{f.severity}: {f.key + ': ' if f.key else ''}{f.message}")
        print(f"{errors} error(s), {len(findings) - errors} other finding(s); schema "
              f"{schema.version} ({schema.source})")
    return 1 if errors else 0
