"""The run directory: its file names (defined once) and its reader.

`rabbitscale run` writes it (runner/output.py); the report, calibration and find-max read
it through ``load``. Layout and fields: docs/run-directory.md. A missing or incomplete
directory is a ``RunDirError`` with one line that says what is missing, never a traceback.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rabbitscale.core.errors import BadInput

RUNS_DIR = Path("runs")  # where a run goes without --out


def place(out: Path | None, prefix: str) -> tuple[str, Path]:
    """A run's name and directory: --out as given, else ``runs/PREFIX-YYYYmmdd-HHMMSS``."""
    if out is not None:
        return out.name, out
    name = f"{prefix}-{time.strftime('%Y%m%d-%H%M%S')}"
    return name, RUNS_DIR / name


SUMMARY = "summary.json"
LEDGER = "ledger.json"
CONFIG = "config.json"
QUEUES_CSV = "broker_queues.csv"
NODE_CSV = "broker_node.csv"
THROUGHPUT_CSV = "throughput.csv"
PROCESSES_CSV = "processes.csv"  # resident memory of the run's processes over time
RECORDS_CSV = "records.csv"  # every completion record's timestamps (run --trace: sweep, validate)
HDR_DIR = "hdr"
LOCUST_HDR_DIR = "locust_hdr"
LOCUST_CSV_PREFIX = "locust"  # Locust's --csv: locust_stats.csv, locust_stats_history.csv, ...
LOCUST_STATS_CSV = "locust_stats.csv"
STACK_LOG = "stack.log"
LOCUST_LOG = "locust.log"
REPORT_HTML = "report.html"
REPORT_JSON = "report.json"
FIND_MAX = "find_max.json"
JUNIT_XML = "junit.xml"

REQUIRED = (SUMMARY, QUEUES_CSV, NODE_CSV, THROUGHPUT_CSV)
SECRET_KEYS = ("password", "secret", "api_key", "token", "credential")


class RunDirError(BadInput):
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
    processes: Any = None  # pandas.DataFrame of processes.csv (t, process, rss_bytes), if any

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
        raise RunDirError(f"{p}: no such run directory")
    missing = [name for name in REQUIRED if not (p / name).is_file()]
    if missing:
        raise RunDirError(f"{p}: incomplete run directory, missing {', '.join(missing)}")
    try:
        summary = json.loads((p / SUMMARY).read_text())
        config = json.loads((p / CONFIG).read_text()) if (p / CONFIG).is_file() \
            else {}
        queues = pd.read_csv(p / QUEUES_CSV)
        node = pd.read_csv(p / NODE_CSV)
        throughput = pd.read_csv(p / THROUGHPUT_CSV)
    except (json.JSONDecodeError, UnicodeDecodeError, ValueError, pd.errors.ParserError) as exc:
        raise RunDirError(f"{p}: unreadable run file: {str(exc).splitlines()[0]}") from None
    for key in ("verdict", "checks", "ledger"):
        if key not in summary:
            raise RunDirError(f"{p}: summary.json has no {key!r}")
    for df, name, cols in ((queues, QUEUES_CSV, {"t", "queue", "messages"}),
                           (node, NODE_CSV, {"t", "mem_used", "mem_limit"}),
                           (throughput, THROUGHPUT_CSV, {"t", "queue", "completed"})):
        if not cols <= set(df.columns):
            raise RunDirError(f"{p}: {name} lacks columns {sorted(cols - set(df.columns))}")
    hdr: dict[str, dict[str, str]] = {}
    for f in sorted((p / HDR_DIR).glob("*.hdr")) if (p / HDR_DIR).is_dir() else []:
        queue, _, metric = f.name[:-4].rpartition(".")
        hdr.setdefault(queue, {})[metric] = f.read_text().strip()
    locust_hdr = {f.name[:-4]: f.read_text().strip()
                  for f in sorted((p / LOCUST_HDR_DIR).glob("*.hdr"))} \
        if (p / LOCUST_HDR_DIR).is_dir() else {}
    processes = None
    if (p / PROCESSES_CSV).is_file():
        try:
            processes = pd.read_csv(p / PROCESSES_CSV)
        except (ValueError, pd.errors.ParserError):
            processes = None  # an unreadable optional series is left out, not fatal
    return RunData(p, summary, mask(config), queues, node, throughput, hdr, locust_hdr,
                   processes)
