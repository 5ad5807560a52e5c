"""Whether a run's own measurement can be trusted, before anything is said of the system.

An open-model load generator that cannot keep its schedule measures itself: sends that leave
late make the arrivals burstier than asked and hide queueing in the generator, and a generator
that is CPU-bound does both. A remote worker whose clock is off shifts every latency it stamps.
Each of these is a check whose failing verdict is INVALID (``slo.verdict``: the run's verdict
and exit code are INVALID, not FAIL), with the figures that show it. Pure functions but
``read_send_delays``.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from rabbitscale.core import latency, rundir, targets
from rabbitscale.judge import slo
from rabbitscale.scenarios import contract

SEND_DELAY_SUFFIX = "_send_delay"  # the Locust side's histogram of lateness per stream


def read_send_delays(run_dir: Path) -> dict[str, Any]:
    """stream -> HDR histogram of how late each send left its slot (written by Locust)."""
    out = {}
    for path in sorted((run_dir / rundir.LOCUST_HDR_DIR).glob(f"*{SEND_DELAY_SUFFIX}.hdr")):
        out[path.name.removesuffix(f"{SEND_DELAY_SUFFIX}.hdr")] = \
            latency.decode(path.read_text().strip())
    return out


def read_in_flight(run_dir: Path) -> dict[str, dict[str, int]]:
    """stream -> {bound, peak, waited}: the senders the Locust processes kept in flight
    (scenarios/contract.IN_FLIGHT_FILE); empty where Locust wrote none."""
    import json

    path = run_dir / contract.IN_FLIGHT_FILE
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def late_share(h: Any, late_s: float) -> float:
    """The share of recorded values above ``late_s``."""
    total = h.get_total_count()
    if not total:
        return 0.0
    late_us = late_s * 1e6
    late = sum(item.count_at_value_iterated_to for item in h.get_recorded_iterator()
               if h.get_lowest_equivalent_value(item.value_iterated_to) > late_us)
    return late / total


def checks(send_delays: Mapping[str, Any], cpu: Mapping[str, float],
           clock_offsets: Mapping[str, float],
           in_flight: Mapping[str, Mapping[str, int]] | None = None) -> list[slo.Check]:
    """The generator's schedule, its in-flight bound, its CPU and the workers' clocks, each
    INVALID past its bound."""
    out = []
    merged = latency.new_histogram()
    for h in send_delays.values():
        merged.add(h)
    if merged.get_total_count():
        p99 = merged.get_value_at_percentile(99) / 1e6
        share = late_share(merged, targets.GENERATOR_LATE_S)
        out.append(_bound("generator_send_delay_p99_ms", p99 * 1000,
                          targets.GENERATOR_SEND_DELAY_P99_MAX_S * 1000,
                          f"how late sends left their schedule slot, over "
                          f"{merged.get_total_count():,} sends"))
        out.append(_bound("generator_late_sends", share, targets.GENERATOR_LATE_SHARE_MAX,
                          f"share of sends more than {targets.GENERATOR_LATE_S * 1000:g} ms "
                          f"late"))
    else:
        out.append(slo.not_measured("generator_send_delay_p99_ms",
                                    "the generator recorded no send"))
    if in_flight:
        waited = sum(int(v.get("waited", 0)) for v in in_flight.values())
        peak = max(int(v.get("peak", 0)) for v in in_flight.values())
        bound = max(int(v.get("bound", 0)) for v in in_flight.values())
        out.append(_bound("generator_in_flight_waits", waited, 0,
                          f"slots that found the senders' bound reached and left late; the most "
                          f"sends in flight: {peak:,} of {bound:,} (--max-in-flight per Locust "
                          f"process: the system held that many at once)"))
    if cpu:
        name, busiest = max(cpu.items(), key=lambda kv: kv[1])
        out.append(_bound("generator_cpu", busiest, targets.GENERATOR_CPU_MAX,
                          f"busiest Locust process ({name}), share of one core over the run"))
    if clock_offsets:
        name, worst = max(clock_offsets.items(), key=lambda kv: abs(kv[1]))
        out.append(_bound("worker_clock_offset_ms", abs(worst) * 1000,
                          targets.CLOCK_OFFSET_MAX_S * 1000,
                          f"{name}'s clock against the master's at its start (one-way: "
                          f"includes the network's transit)"))
    return out


def _bound(name: str, measured: float, maximum: float, detail: str) -> slo.Check:
    return slo.Check(name, f"<= {maximum:g}", round(measured, 4),
                     slo.PASS if measured <= maximum else slo.INVALID, detail)


def summary(send_delays: Mapping[str, Any], checks_: list[slo.Check]) -> dict[str, Any]:
    """summary.json's ``validity``: the verdict of the measurement, its figures, the HDR
    histograms' precision."""
    return {"valid": not any(c.verdict == slo.INVALID for c in checks_),
            "checks": [c.name for c in checks_],
            "send_delay_ms": {k: latency.summary_ms(h) for k, h in send_delays.items()},
            "hdr_precision": "3 significant digits (values within 0.1%), 1 us to 1 h"}
