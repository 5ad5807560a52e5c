"""Reading a run directory: its summary as the typed ``Summary``, its broker series as data
frames, its histograms encoded. A missing, incomplete or unreadable directory is one line
(``RunDirError``, exit 2), never a traceback."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rabbitscale.core import latency
from rabbitscale.core.errors import BadInput
from rabbitscale.core.rundir import (
    CONFIG,
    HDR_DIR,
    LOCUST_HDR_DIR,
    NODE_CSV,
    PROCESSES_CSV,
    QUEUES_CSV,
    REQUIRED,
    SUMMARY,
    THROUGHPUT_CSV,
    RunDirError,
    mask,
)
from rabbitscale.results.summary import Summary, parse


@dataclass
class RunData:
    path: Path
    summary: Summary
    config: dict[str, Any]
    queues: Any  # pandas.DataFrame
    node: Any
    throughput: Any
    hdr: dict[str, dict[str, str]]  # queue -> metric -> encoded histogram
    locust_hdr: dict[str, str]
    processes: Any = None  # pandas.DataFrame of processes.csv (t, process, rss_bytes), if any

    @property
    def name(self) -> str:
        return self.summary.run or self.path.name


def _histogram_text(f: Path) -> str:
    """An encoded HDR histogram, checked: a corrupt file is a one-line RunDirError."""
    try:
        text = f.read_text().strip()
        latency.decode(text)
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise RunDirError(f"{f}: not an HDR histogram ({exc})") from None
    return text


def load(path: str | Path) -> RunData:
    import pandas as pd

    p = Path(path)
    if not p.is_dir():
        raise RunDirError(f"{p}: no such run directory")
    missing = [name for name in REQUIRED if not (p / name).is_file()]
    if missing:
        raise RunDirError(f"{p}: incomplete run directory, missing {', '.join(missing)}")
    summary = _summary(p)
    try:
        config = json.loads((p / CONFIG).read_text()) if (p / CONFIG).is_file() \
            else {}
        queues = pd.read_csv(p / QUEUES_CSV)
        node = pd.read_csv(p / NODE_CSV)
        throughput = pd.read_csv(p / THROUGHPUT_CSV)
    except (json.JSONDecodeError, UnicodeDecodeError, ValueError, pd.errors.ParserError) as exc:
        raise RunDirError(f"{p}: unreadable run file: {str(exc).splitlines()[0]}") from None
    for df, name, cols in ((queues, QUEUES_CSV, {"t", "queue", "messages"}),
                           (node, NODE_CSV, {"t", "mem_used", "mem_limit"}),
                           (throughput, THROUGHPUT_CSV, {"t", "queue", "completed"})):
        if not cols <= set(df.columns):
            raise RunDirError(f"{p}: {name} lacks columns {sorted(cols - set(df.columns))}")
    hdr: dict[str, dict[str, str]] = {}
    for f in sorted((p / HDR_DIR).glob("*.hdr")) if (p / HDR_DIR).is_dir() else []:
        queue, _, metric = f.name[:-4].rpartition(".")
        hdr.setdefault(queue, {})[metric] = _histogram_text(f)
    locust_hdr = {f.name[:-4]: _histogram_text(f)
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


def _summary(p: Path) -> Summary:
    try:
        return parse((p / SUMMARY).read_bytes(), f"{p / SUMMARY}")
    except BadInput as exc:
        raise RunDirError(str(exc)) from None
    except OSError as exc:
        raise RunDirError(f"{p / SUMMARY}: cannot read: {exc.strerror or exc}") from None
