"""`rabbitscale schema NAME`: the JSON Schema of a file rabbitscale reads or writes."""

from __future__ import annotations

import argparse

from rabbitscale.cli.args import Parser

NAMES = ("profile", "summary", "find-max", "doctor")


def parser(argv: list[str]) -> Parser:
    p = Parser(prog="rabbitscale schema",
               description="The JSON Schema of a profile file (profile), a run's summary.json "
                           "(summary), find-max's find_max.json (find-max) or doctor --json "
                           "(doctor).\n\nExit codes: 0 printed, 2 an unknown name.")
    p.add_argument("name", choices=NAMES, metavar="NAME", help="one of: " + ", ".join(NAMES))
    return p


def run(args: argparse.Namespace) -> int:
    import json

    if args.name == "profile":
        from rabbitscale.topology.profile_file import ProfileModel

        doc = ProfileModel.model_json_schema(by_alias=True)
    else:
        from rabbitscale.results.schemas import schema

        doc = schema(args.name)
    print(json.dumps(doc, indent=2))
    return 0
