"""`rabbitscale profile list|show|check|schema`: the profiles a command can take."""

from __future__ import annotations

import argparse

from rabbitscale.cli.args import Parser


def parser(argv: list[str]) -> Parser:
    p = Parser(prog="rabbitscale profile",
               description="list: the built-in profiles; show NAME: a built-in profile's "
                           "file (a start for one of your own); check FILE: read a profile "
                           "file and say what it describes; schema: the profile format's JSON "
                           "Schema (docs/profile-format.md).\n\nExit codes: 0 done, 2 a bad "
                           "profile or name.")
    p.add_argument("action", choices=["list", "show", "check", "schema"],
                   help="list, show, check or schema")
    p.add_argument("target", nargs="?", metavar="NAME|FILE",
                   help="show: a built-in profile; check: a profile file")
    return p


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
    _, profile = pf.load_system(None, args.target)
    print(f"profile {profile.name}: {profile.description}".rstrip(": "))
    print(f"  {len(profile.messages)} message types, {len(profile.endpoints)} endpoints, "
          f"{len(profile.tasks)} task kinds")
    for ep in profile.endpoints:
        print(f"  endpoint {ep.queue} ({ep.queue_type}) consumes {', '.join(ep.consumes)}")
    for kind in profile.tasks.values():
        how = f"{kind.route.method} {kind.route.path}" if kind.route else "published"
        print(f"  task {kind.name}: {kind.message} ({how}, stream {kind.stream}, weight "
              f"{kind.weight:g})")
    return 0
