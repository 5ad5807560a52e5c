"""mkdocs hook: the pages made from the code, at every build, so they cannot drift from it.

- ``cli.md``: every command's ``--help`` (and ``run``'s three modes), from the argparse
  parsers the CLI uses;
- ``schemas.md``: the JSON Schemas of the profile format and of the results;
- ``events.md``: the events catalogue (rabbitscale/core/events.py);
- ``changelog.md``: the repository's CHANGELOG.md, as it is.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from mkdocs.structure.files import File, Files

WIDTH = "100"


def _help(parser: Any) -> str:
    os.environ["COLUMNS"] = WIDTH  # argparse wraps to the terminal: the same width each build
    return parser.format_help()


def cli_page() -> str:
    import importlib

    from rabbitscale.cli.commands import run as run_command
    from rabbitscale.cli.main import COMMANDS, _top_parser

    out = ["# Command reference", "",
           "Generated from the parsers the CLI itself uses (`rabbitscale COMMAND --help`); a "
           "default is shown as a user types it.", "", "```text", _help(_top_parser()), "```"]
    for name, command in COMMANDS.items():
        module = importlib.import_module(f"rabbitscale.cli.commands.{command.module}")
        out += ["", f"## `rabbitscale {name}`", "", command.summary, ""]
        if name == "run":
            for title, make in (("reference stack", run_command.stack_parser),
                                ("a deployed system (`--target`)", run_command.target_parser),
                                ("`run backlog`", run_command.backlog_parser)):
                out += [f"### {title}", "", "```text", _help(make()), "```", ""]
        else:
            out += ["```text", _help(module.parser([])), "```"]
    return "\n".join(out) + "\n"


def schemas_page() -> str:
    from rabbitscale.results import schemas
    from rabbitscale.topology.profile_file import ProfileModel

    out = ["# JSON Schemas", "",
           "Every file rabbitscale reads or writes is one typed model (pydantic); "
           "`rabbitscale schema NAME` prints its JSON Schema, as below."]
    for name, model in {"profile": ProfileModel, **schemas.MODELS}.items():
        title = model.__doc__.strip().splitlines()[0] if model.__doc__ else ""
        body = json.dumps(model.model_json_schema(by_alias=True), indent=2)
        out += ["", f"## `{name}`", "", title, "", "```json", body, "```"]
    return "\n".join(out) + "\n"


def events_page() -> str:
    from rabbitscale.core.events import HOOKS

    out = ["# Events", "",
           "Every event hook of the package, listed once (rabbitscale/core/events.py), as "
           "Locust's `event.py` lists its hooks: who fires it and with what.", "",
           "| event | fired by | arguments | when |", "|---|---|---|---|"]
    for h in HOOKS.values():
        out.append(f"| `{h.name}` | {h.producer} | {h.arguments} | {h.when} |")
    return "\n".join(out) + "\n"


def changelog_page() -> str:
    return (Path(__file__).resolve().parents[2] / "CHANGELOG.md").read_text()


def on_files(files: Files, config: Any) -> Files:
    for name, make in (("cli.md", cli_page), ("schemas.md", schemas_page),
                       ("events.md", events_page), ("changelog.md", changelog_page)):
        files.append(File.generated(config, name, content=make()))
    return files
