"""Resident memory of the processes of a run (the load generator, the stack, each consumer),
read with psutil: what a soak run watches for growth. Processes that are gone are skipped."""

from __future__ import annotations

import contextlib

import psutil


def rss_bytes(pids: dict[str, list[int]]) -> dict[str, int]:
    """name -> summed resident set size of its live processes (names with none are left
    out: a process that ended is not a process that shrank)."""
    out: dict[str, int] = {}
    for name, group in pids.items():
        total, alive = 0, False
        for pid in group:
            with contextlib.suppress(psutil.Error):
                total += psutil.Process(pid).memory_info().rss
                alive = True
        if alive:
            out[name] = total
    return out
