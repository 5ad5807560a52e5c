"""MassTransit's own meters, read from the application's Prometheus endpoint (``--app-metrics``).

MassTransit (8.x) records OpenTelemetry instruments named ``messaging.masstransit.*``; the
OpenTelemetry Prometheus exporter writes them with dots as underscores, ``_total`` on
counters and the unit (milliseconds) on histograms. A run scrapes the endpoint before and
after the load and judges the difference, so whatever the application counted before the run
does not count. Pure functions but ``scrape``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from prometheus_client.parser import text_string_to_metric_families

from rabbitscale.core.errors import Unavailable

# instrument -> the family name the Prometheus exporter gives it (without _total/_bucket)
CONSUME_DURATION = "messaging_masstransit_consume_duration_milliseconds"
DELIVERY_DURATION = "messaging_masstransit_delivery_duration_milliseconds"
RECEIVE = "messaging_masstransit_receive"
RECEIVE_ERRORS = "messaging_masstransit_receive_errors"
CONSUME = "messaging_masstransit_consume"
CONSUME_ERRORS = "messaging_masstransit_consume_errors"
COUNTERS = (RECEIVE, RECEIVE_ERRORS, CONSUME, CONSUME_ERRORS)
HISTOGRAMS = (CONSUME_DURATION, DELIVERY_DURATION)
ENDPOINT_LABEL = "messaging_masstransit_destination"


@dataclass
class Scrape:
    """Counter totals and histogram buckets (cumulative, by upper bound), summed over labels."""

    counters: dict[str, float] = field(default_factory=dict)
    buckets: dict[str, dict[float, float]] = field(default_factory=dict)
    counts: dict[str, float] = field(default_factory=dict)
    sums: dict[str, float] = field(default_factory=dict)


def parse(text: str) -> Scrape:
    """The MassTransit families of an exposition text; other families are ignored."""
    out = Scrape()
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            name = sample.name
            for counter in COUNTERS:
                if name == f"{counter}_total":
                    out.counters[counter] = out.counters.get(counter, 0.0) + sample.value
            for hist in HISTOGRAMS:
                if name == f"{hist}_bucket":
                    le = float(sample.labels.get("le", "+Inf"))
                    b = out.buckets.setdefault(hist, {})
                    b[le] = b.get(le, 0.0) + sample.value
                elif name == f"{hist}_count":
                    out.counts[hist] = out.counts.get(hist, 0.0) + sample.value
                elif name == f"{hist}_sum":
                    out.sums[hist] = out.sums.get(hist, 0.0) + sample.value
    return out


def quantile(buckets: Mapping[float, float], q: float) -> float | None:
    """Prometheus's histogram_quantile over cumulative buckets: linear within the bucket the
    rank falls in (None without observations; the last finite bound when it is +Inf's)."""
    bounds = sorted(buckets)
    total = buckets.get(math.inf, buckets[bounds[-1]] if bounds else 0.0)
    if not bounds or total <= 0:
        return None
    rank = q * total
    prev_bound, prev_count = 0.0, 0.0
    for bound in bounds:
        count = buckets[bound]
        if count >= rank:
            if math.isinf(bound):
                return prev_bound
            if count == prev_count:
                return bound
            return prev_bound + (bound - prev_bound) * (rank - prev_count) / (count - prev_count)
        prev_bound, prev_count = bound, count
    return prev_bound


def difference(before: Scrape, after: Scrape) -> dict[str, Any]:
    """What the application recorded between two scrapes: counters, and per histogram its
    count, mean and p50/p95/p99 in milliseconds (bucket-interpolated, so as exact as the
    application's buckets)."""
    out: dict[str, Any] = {c: after.counters.get(c, 0.0) - before.counters.get(c, 0.0)
                           for c in COUNTERS if c in after.counters}
    for hist in HISTOGRAMS:
        if hist not in after.buckets:
            continue
        b0 = before.buckets.get(hist, {})
        delta = {le: n - b0.get(le, 0.0) for le, n in after.buckets[hist].items()}
        count = after.counts.get(hist, 0.0) - before.counts.get(hist, 0.0)
        total = after.sums.get(hist, 0.0) - before.sums.get(hist, 0.0)
        out[hist] = {"count": int(count), "mean_ms": total / count if count else None,
                     **{f"p{int(q * 100)}_ms": quantile(delta, q) for q in (0.5, 0.95, 0.99)}}
    return out


async def scrape(url: str, timeout_s: float = 10.0) -> Scrape:
    """One GET of the application's metrics, or Unavailable naming --app-metrics. No
    MassTransit family is no error: a meter shows nothing before its first message."""
    import aiohttp

    try:
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=timeout_s)) as s, \
                s.get(url) as resp:
            if resp.status != 200:
                raise Unavailable(f"--app-metrics: {url} answered HTTP {resp.status}")
            text = await resp.text()
    except (aiohttp.ClientError, TimeoutError) as exc:
        raise Unavailable(f"--app-metrics: cannot read {url}: {exc or type(exc).__name__}"
                          ) from None
    try:
        return parse(text)
    except ValueError as exc:
        raise Unavailable(f"--app-metrics: {url} is not a Prometheus exposition: {exc}"
                          ) from None
