"""`rabbitscale profile list|show|check|schema`: the profiles a command can take."""

from __future__ import annotations

import argparse

from rabbitscale.cli import args as a
from rabbitscale.cli.args import Parser


def parser(argv: list[str]) -> Parser:
    p = Parser(prog="rabbitscale profile",
               description="list: the built-in profiles; show NAME: a built-in profile's "
                           "file (a start for one of your own); check FILE: read a profile "
                           "file and say what it describes; schema: the profile format's JSON "
                           "Schema (docs/profile-format.md).\n\nExit codes: 0 done, 1 with "
                           "--upgrade-to: the version refuses or drops something the profile "
                           "declares, 2 a bad profile or name.")
    p.add_argument("action", choices=["list", "show", "check", "schema"],
                   help="list, show, check or schema")
    p.add_argument("target", nargs="?", metavar="NAME|FILE",
                   help="show: a built-in profile; check: a profile file")
    p.add_argument("--upgrade-to", type=a.typed(_target), default=None, metavar="VERSION",
                   help="check: what RabbitMQ 3.13, 4.0, 4.1, 4.2 or 4.3 refuses or treats "
                        "otherwise in what the profile declares and sends")
    p.add_argument("--from-version", type=a.rabbitmq_version, default="3.10", metavar="X.Y",
                   help="with --upgrade-to: the version the system runs on now (default 3.10)")
    return p


def _target(text: str) -> str:
    from rabbitscale.inspect.upgrade import target_version

    return target_version(text)


def run(args: argparse.Namespace) -> int:
    import json

    from rabbitscale.core.errors import BadInput
    from rabbitscale.topology import profile_file as pf

    if args.action == "list":
        for name in pf.builtin_names():
            print(f"  {name:<10} {pf.get_profile(name).description}")
        return 0
    if args.action == "schema":
        print(json.dumps(pf.ProfileModel.model_json_schema(by_alias=True), indent=2))
        return 0
    if not args.target:
        raise BadInput(f"rabbitscale profile {args.action}: give a "
                       f"{'profile name' if args.action == 'show' else 'profile file'}")
    if args.action == "show":
        if args.target not in pf.builtin_names():
            raise BadInput(f"rabbitscale profile show: no built-in profile {args.target!r} "
                           f"(built-in: {', '.join(pf.builtin_names())})")
        print((pf.BUILTIN_DIR / f"{args.target}.toml").read_text(), end="")
        return 0
    settings, profile = pf.load_system(None, args.target)
    print(f"profile {profile.name}: {profile.description}".rstrip(": "))
    print(f"  {len(profile.messages)} message types, {len(profile.endpoints)} endpoints, "
          f"{len(profile.tasks)} task kinds")
    for ep in profile.endpoints:
        print(f"  endpoint {ep.queue} ({ep.queue_type}) consumes {', '.join(ep.consumes)}")
    for kind in profile.tasks.values():
        how = f"{kind.route.method} {kind.route.path}" if kind.route else "published"
        print(f"  task {kind.name}: {kind.message} ({how}, stream {kind.stream}, weight "
              f"{kind.weight:g})")
    return _upgrade(args, settings, profile) if args.upgrade_to else 0


def _upgrade(args: argparse.Namespace, settings: object, profile: object) -> int:
    from rabbitscale.inspect import upgrade

    hits = upgrade.relevant(upgrade.profile_hits(profile, settings),  # type: ignore[arg-type]
                            args.from_version, args.upgrade_to)
    print(f"upgrade from {args.from_version} to {args.upgrade_to} "
          f"({' -> '.join(upgrade.path(args.from_version, args.upgrade_to)) or 'no hop'}):")
    for h in hits:
        change = upgrade.CHANGES[h.change]
        print(f"  {change.verdict:<4} {h.subject}: {change.title} ({h.observed}): "
              f"{upgrade.describe(change)} [{change.source}]")
    if not hits:
        print("  nothing the profile declares is refused or treated otherwise")
    return 1 if any(upgrade.CHANGES[h.change].verdict == upgrade.FAIL for h in hits) else 0
