"""The run directory: its file names (defined once) and its reader.

`rabbitscale run` writes it (engine/output.py); the report, calibration and find-max read
it through results/rundir.py. Layout and fields: docs/run-directory.md. A missing or
incomplete directory is a ``RunDirError`` with one line that says what is missing, never a
traceback.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from rabbitscale.core.errors import BadInput

RUNS_DIR = Path("runs")  # where a run goes without --out


def place(out: Path | None, prefix: str) -> tuple[str, Path]:
    """A run's name and directory: --out as given, else ``runs/PREFIX-YYYYmmdd-HHMMSS`` (with
    -2, -3, ... where a run of the same second has it)."""
    if out is not None:
        return out.name, out
    stem = f"{prefix}-{time.strftime('%Y%m%d-%H%M%S')}"
    name, n = stem, 2
    while (RUNS_DIR / name).exists():
        name, n = f"{stem}-{n}", n + 1
    return name, RUNS_DIR / name


def inside(directory: Path, *parts: str) -> Path:
    """``directory/parts...``, refused unless it stays inside ``directory``: a name from a
    profile or a broker (a queue, a task kind) never writes outside a run directory."""
    base = directory.resolve()
    path = base.joinpath(*parts).resolve()
    if path == base or base not in path.parents:
        raise BadInput(f"{'/'.join(parts)!r} would be written outside {directory}: a name "
                       f"with a path in it")
    return path


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
# what a run writes in its directory (--force replaces them; nothing else writes over them)
OWN_NAMES = (SUMMARY, LEDGER, CONFIG, QUEUES_CSV, NODE_CSV, THROUGHPUT_CSV, PROCESSES_CSV,
             RECORDS_CSV, HDR_DIR, LOCUST_HDR_DIR, LOCUST_STATS_CSV, "locust_stats_history.csv",
             "locust_failures.csv", "locust_exceptions.csv", STACK_LOG, LOCUST_LOG, REPORT_HTML,
             REPORT_JSON, FIND_MAX, JUNIT_XML, "locust_workers.json", "locust_start.json",
             "locust_in_flight.json", "sweep.json", "sweep.html")
SECRET_KEYS = ("password", "secret", "api_key", "token", "credential")


class RunDirError(BadInput):
    """The run directory cannot be reported on; str() is one line."""


def mask(value: Any) -> Any:
    """Replace every value whose key looks like a credential, at any depth."""
    if isinstance(value, dict):
        return {k: ("***" if any(s in str(k).lower() for s in SECRET_KEYS) else mask(v))
                for k, v in value.items()}
    if isinstance(value, list):
        return [mask(v) for v in value]
    return value
