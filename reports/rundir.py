"""Reading a run directory written by `rabbitscale run` (layout: docs/run-directory.md).

A missing or incomplete directory is a ``ReportError`` with one line that says what is
missing, never a traceback.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

REQUIRED = ("summary.json", "broker_queues.csv", "broker_node.csv", "throughput.csv")
SECRET_KEYS = ("password", "secret", "api_key", "token", "credential")


class ReportError(ValueError):
    """The run directory cannot be reported on; str() is one line."""


@dataclass
class RunData:
    path: Path
    summary: dict[str, Any]
    config: dict[str, Any]
    queues: Any  # pandas.DataFrame
    node: Any
    throughput: Any
    hdr: dict[str, dict[str, str]]  # queue -> metric -> encoded histogram
    locust_hdr: dict[str, str]

    @property
    def name(self) -> str:
        return str(self.summary.get("run", self.path.name))


def mask(value: Any) -> Any:
    """Replace every value whose key looks like a credential, at any depth."""
    if isinstance(value, dict):
        return {k: ("***" if any(s in str(k).lower() for s in SECRET_KEYS) else mask(v))
                for k, v in value.items()}
    if isinstance(value, list):
        return [mask(v) for v in value]
    return value


def load(path: str | Path) -> RunData:
    import pandas as pd

    p = Path(path)
    if not p.is_dir():
        raise ReportError(f"{p}: no such run directory")
    missing = [name for name in REQUIRED if not (p / name).is_file()]
    if missing:
        raise ReportError(f"{p}: incomplete run directory, missing {', '.join(missing)}")
    try:
        summary = json.loads((p / "summary.json").read_text())
        config = json.loads((p / "config.json").read_text()) if (p / "config.json").is_file() \
            else {}
        queues = pd.read_csv(p / "broker_queues.csv")
        node = pd.read_csv(p / "broker_node.csv")
        throughput = pd.read_csv(p / "throughput.csv")
    except (json.JSONDecodeError, UnicodeDecodeError, ValueError, pd.errors.ParserError) as exc:
        raise ReportError(f"{p}: unreadable run file: {str(exc).splitlines()[0]}") from None
    for key in ("verdict", "checks", "ledger"):
        if key not in summary:
            raise ReportError(f"{p}: summary.json has no {key!r}")
    for df, name, cols in ((queues, "broker_queues.csv", {"t", "queue", "messages"}),
                           (node, "broker_node.csv", {"t", "mem_used", "mem_limit"}),
                           (throughput, "throughput.csv", {"t", "queue", "completed"})):
        if not cols <= set(df.columns):
            raise ReportError(f"{p}: {name} lacks columns {sorted(cols - set(df.columns))}")
    hdr: dict[str, dict[str, str]] = {}
    for f in sorted((p / "hdr").glob("*.hdr")) if (p / "hdr").is_dir() else []:
        queue, _, metric = f.name[:-4].rpartition(".")
        hdr.setdefault(queue, {})[metric] = f.read_text().strip()
    locust_hdr = {f.name[:-4]: f.read_text().strip()
                  for f in sorted((p / "locust_hdr").glob("*.hdr"))} \
        if (p / "locust_hdr").is_dir() else {}
    return RunData(p, summary, mask(config), queues, node, throughput, hdr, locust_hdr)
