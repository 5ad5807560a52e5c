"""SLO checks from the scaling guide, with thresholds that a TOML file can override.

Each check compares one measured value with its target and gives PASS, WARN or FAIL; the run
fails when any check FAILs. Field names here are the stable names of summary.json.
"""

from __future__ import annotations

import dataclasses
import tomllib
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from rabbitscale.core import latency
from rabbitscale.core.errors import ConfigError
from rabbitscale.core.thresholds import (
    LATENCY_KEY,
    LATENCY_STATS,
    LatencyThreshold,
    Thresholds,
    format_ms,
    latency_list,
    parse_latency,
    replaced,
)
from rabbitscale.core.verdicts import FAIL, INVALID, PASS, SKIP, WARN
from rabbitscale.results.check import Check
from rabbitscale.topology.profiles import Profile

__all__ = ["FAIL", "INVALID", "PASS", "SKIP", "WARN", "Check", "LatencyThreshold",
           "Thresholds", "load_thresholds"]

def load_thresholds(path: str | Path | None, profile: Profile | None = None,
                    latency_exprs: Sequence[str] = (), **overrides: Any) -> Thresholds:
    """The guide's thresholds, then the run's own (``error_rate_max``), the profile's
    ``[thresholds]``, a fault's (``overrides`` after the profile's), then a thresholds file;
    latency thresholds: the profile's (assumptions), a file's, then ``--threshold``, a later
    one replacing an earlier one of the same scope, metric and stat."""
    own = {k: v for k, v in overrides.items() if k == "error_rate_max"}
    prof = dict(profile.thresholds) if profile else {}
    lat = latency_list(prof.pop(LATENCY_KEY), f"profile {profile.name}: thresholds "
                        f"(an assumption of the profile)") if profile and LATENCY_KEY in prof \
        else ()
    base = replaced(Thresholds(**own), prof,
                     f"profile {profile.name}: thresholds" if profile else "")
    base = dataclasses.replace(base, **{k: v for k, v in overrides.items()
                                        if k != "error_rate_max"})
    if path is not None:
        p = Path(path)
        try:
            data = tomllib.loads(p.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise ConfigError(f"{p}: thresholds file not found") from None
        except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
            raise ConfigError(f"{p}: cannot read thresholds: {exc}") from None
        except RecursionError:
            raise ConfigError(f"{p}: cannot read thresholds: nested too deeply") from None
        if LATENCY_KEY in data:
            lat += latency_list(data.pop(LATENCY_KEY), str(p))
        base = replaced(base, data, str(p))
    lat += tuple(parse_latency(e, "--threshold") for e in latency_exprs)
    merged: dict[tuple[str | None, str, str], LatencyThreshold] = {}
    for t in lat:
        merged[(t.scope, t.metric, t.stat)] = t
    return dataclasses.replace(base, latency=tuple(merged.values()))


def at_least(name: str, measured: float, minimum: float, detail: str = "") -> Check:
    return Check(name, f">= {minimum:g}", round(measured, 4),
                 PASS if measured >= minimum else FAIL, detail)


def depth_check(name: str, peak: int, t: Thresholds) -> Check:
    verdict = FAIL if peak > t.depth_critical else WARN if peak > t.depth_warning else PASS
    return Check(name, f"<= {t.depth_warning} (critical {t.depth_critical})", peak, verdict)


def at_most(name: str, measured: float, maximum: float, detail: str = "") -> Check:
    return Check(name, f"<= {maximum:g}", round(measured, 4),
                 PASS if measured <= maximum else FAIL, detail)


def not_measured(name: str, detail: str) -> Check:
    """A check this kind of run cannot make: shown as such, never as a pass with 0."""
    return Check(name, "-", "not measured", SKIP, detail)


def verdict(checks: list[Check]) -> str:
    """INVALID when the measurement cannot be trusted (the generator fell short: nothing is
    said of the system), else FAIL when any check FAILs; WARNs are shown, not failed."""
    if any(c.verdict == INVALID for c in checks):
        return INVALID
    return FAIL if any(c.verdict == FAIL for c in checks) else PASS


def check_scopes(thresholds: Thresholds, scopes: Iterable[str], what: str) -> None:
    """Refuse, before the load, a latency threshold whose scope the run has no such name."""
    known = set(scopes)
    for t in thresholds.latency:
        if t.scope is not None and t.scope not in known:
            raise ConfigError(f"{t.source}: {t.text}: no task kind or queue {t.scope!r} in "
                              f"{what} (known: {', '.join(sorted(known))})")


def latency_checks(thresholds: Thresholds, histograms: Mapping[str, Mapping[str, Any]],
                   scopes: Mapping[str, Sequence[str]]) -> list[Check]:
    """One check per latency threshold: the stat of the scope's merged HDR histograms.
    ``histograms``: name (queue, callback kind) -> metric -> histogram; ``scopes``: task kind
    or queue -> the names it covers (no scope: every name)."""
    out = []
    for t in thresholds.latency:
        names = list(scopes.get(t.scope, ())) if t.scope else list(histograms)
        merged = latency.new_histogram()
        for name in names:
            h = histograms.get(name, {}).get(t.metric)
            if h is not None:
                merged.add(h)
        target = f"< {format_ms(t.max_s * 1000)}"
        where = f"{t.scope} ({', '.join(names)})" if t.scope and names != [t.scope] else \
            (t.scope or "all queues")
        if not merged.get_total_count():
            out.append(Check(t.name, target, "not measured", SKIP,
                             f"no {t.metric} samples for {where} ({t.source})"))
            continue
        p = LATENCY_STATS[t.stat]
        value_ms = (merged.get_max_value() if p == 100.0
                    else merged.get_value_at_percentile(p)) / 1000
        ok = value_ms < t.max_s * 1000
        out.append(Check(t.name, target, round(value_ms, 1), PASS if ok else FAIL,
                         f"{t.metric} {t.stat} of {where}: {value_ms:,.1f} ms "
                         f"{'<' if ok else '>='} {t.max_s * 1000:,.0f} ms over "
                         f"{merged.get_total_count():,} samples ({t.source})"))
    return out


METER_METRICS = {"e2e": "e2e", "processing": "work"}  # threshold metric -> MassTransit meter
METER_STATS = ("p50", "p95", "p99")  # what bucketed histograms give


def meter_latency_checks(thresholds: Thresholds, endpoint_meters: Mapping[str, Any],
                         scopes: Mapping[str, Sequence[str]]) -> list[Check]:
    """Latency thresholds judged on MassTransit's meters per endpoint (blackbox/meters.py):
    the stat of the scope's worst endpoint, with the histogram bucket it lies in. A scope
    whose endpoints recorded nothing fails: a threshold is never passed unmeasured."""
    out = []
    for t in thresholds.latency:
        meter = METER_METRICS[t.metric]
        names = list(scopes.get(t.scope, ())) if t.scope else list(endpoint_meters)
        found = [(q, h) for q in names
                 if (h := (endpoint_meters.get(q) or {}).get(meter)) and
                 h.get(f"{t.stat}_ms") is not None]
        target = f"< {format_ms(t.max_s * 1000)}"
        if not found:
            out.append(Check(t.name, target, "no samples", FAIL,
                             f"MassTransit's {meter} meter recorded nothing for "
                             f"{', '.join(names) or 'any endpoint'} ({t.source})"))
            continue
        queue, h = max(found, key=lambda qh: qh[1][f"{t.stat}_ms"])
        value = float(h[f"{t.stat}_ms"])
        lo, hi = (h.get("bounds_ms") or {}).get(t.stat, [None, None])
        ok = value < t.max_s * 1000
        out.append(Check(t.name, target, round(value, 1), PASS if ok else FAIL,
                         f"{t.metric} {t.stat} of {queue} from MassTransit's {meter} meter: "
                         f"{value:,.1f} ms (its bucket {lo}-{hi if hi is not None else 'inf'} "
                         f"ms) over {h['count']:,} messages ({t.source})"))
    return out
