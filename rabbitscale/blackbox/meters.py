"""MassTransit's own meters, per endpoint: read from each instance's Prometheus endpoint
(``--app-metrics URL``, repeatable: a scrape before the load and after the drain, summed over
instances) or asked of the team's Prometheus server with PromQL over the run's window
(``--app-prometheus URL``: the increase of each series and of each histogram's buckets).

MassTransit (src/MassTransit/Monitoring/Instrumentation.cs) records, per received message,
``messaging.masstransit.receive`` and ``receive.duration`` labelled with the service and the
endpoint (``messaging.masstransit.destination``: the input address's last segment, dots as
underscores) and, per consume, ``consume``, ``consume.errors``, ``consume.retries``,
``consume.duration`` (the consumer's work) and ``delivery.duration`` (from the message's
``sentTime`` to the end of the consume) labelled with the service, the message type and the
consumer type, not the endpoint. The OpenTelemetry Prometheus exporter writes them with dots
as underscores, the unit appended (``_ea`` on the counters, whose unit is "ea";
``_milliseconds`` on the histograms) and ``_total`` on counters; the SDK's default buckets
(0, 5, 10, 25, ... 10000 ms) bound how exact a quantile is, so each quantile is given with the
bucket it lies in.

A consume is an endpoint's through its message type: a type only one endpoint of the profile
consumes is that endpoint's; a type several consume is told apart by the consumer types an
endpoint declares (profile ``consumer_types``), else it is named and left unattributed.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from prometheus_client.parser import text_string_to_metric_families

from rabbitscale.core.errors import Unavailable
from rabbitscale.core.urls import masked
from rabbitscale.topology.profiles import Profile

PREFIX = "messaging_masstransit_"
# instrument (without the exporter's unit and _total) -> what it is
COUNTERS = {"receive": "received", "receive_errors": "receive faults", "consume": "consumed",
            "consume_errors": "consume faults", "consume_retries": "consume retries"}
HISTOGRAMS = {"receive_duration": "receive", "consume_duration": "work",
              "delivery_duration": "e2e"}
DESTINATION = "messaging_masstransit_destination"
MESSAGE_TYPE = "messaging_masstransit_message_type"
CONSUMER_TYPE = "messaging_masstransit_consumer_type"
KEPT = (DESTINATION, MESSAGE_TYPE, CONSUMER_TYPE)  # the labels a series is told apart by
QUANTILES = (0.5, 0.95, 0.99)

Key = tuple[str, tuple[tuple[str, str], ...]]  # (instrument, kept labels)


def instrument(sample: str) -> tuple[str, str] | None:
    """(instrument, part) of a sample name the exporter wrote: ``consume`` and ``total`` for
    messaging_masstransit_consume_ea_total (also without the unit, as other exporters write
    it); ``consume_duration`` and ``bucket`` for ..._milliseconds_bucket. None otherwise."""
    if not sample.startswith(PREFIX):
        return None
    rest = sample[len(PREFIX):]
    for suffix, part in (("_total", "total"), ("_bucket", "bucket"), ("_sum", "sum"),
                         ("_count", "count")):
        if rest.endswith(suffix):
            base = rest[: -len(suffix)]
            for unit in ("_milliseconds", "_ea"):
                base = base.removesuffix(unit)
            if (part == "total" and base in COUNTERS) or \
                    (part != "total" and base in HISTOGRAMS):
                return base, part
    return None


@dataclass
class Scrape:
    """Counter values and histograms (buckets by upper bound, sum, count) per series."""

    counters: dict[Key, float] = field(default_factory=lambda: defaultdict(float))
    buckets: dict[Key, dict[float, float]] = field(default_factory=dict)
    sums: dict[Key, float] = field(default_factory=lambda: defaultdict(float))
    counts: dict[Key, float] = field(default_factory=lambda: defaultdict(float))

    def add(self, name: str, labels: Mapping[str, str], value: float) -> None:
        found = instrument(name)
        if found is None:
            return
        base, part = found
        key = (base, tuple((k, labels[k]) for k in KEPT if k in labels))
        if part == "total":
            self.counters[key] += value
        elif part == "bucket":
            b = self.buckets.setdefault(key, {})
            le = float(labels.get("le", "+Inf"))
            b[le] = b.get(le, 0.0) + value
        elif part == "sum":
            self.sums[key] += value
        else:
            self.counts[key] += value

    def merged(self, other: Scrape) -> Scrape:
        out = Scrape()
        for src in (self, other):
            for k, v in src.counters.items():
                out.counters[k] += v
            for k, b in src.buckets.items():
                mine = out.buckets.setdefault(k, {})
                for le, n in b.items():
                    mine[le] = mine.get(le, 0.0) + n
            for k, v in src.sums.items():
                out.sums[k] += v
            for k, v in src.counts.items():
                out.counts[k] += v
        return out

    def minus(self, before: Scrape) -> Scrape:
        """What was recorded since ``before`` (a counter that went back restarted: from 0)."""
        out = Scrape()

        def d(now: float, then: float) -> float:
            return now - then if now >= then else now

        for k, v in self.counters.items():
            out.counters[k] = d(v, before.counters.get(k, 0.0))
        for k, b in self.buckets.items():
            b0 = before.buckets.get(k, {})
            out.buckets[k] = {le: d(n, b0.get(le, 0.0)) for le, n in b.items()}
        for k, v in self.sums.items():
            out.sums[k] = d(v, before.sums.get(k, 0.0))
        for k, v in self.counts.items():
            out.counts[k] = d(v, before.counts.get(k, 0.0))
        return out


def parse(text: str) -> Scrape:
    """MassTransit's families of an exposition text; every other family is ignored."""
    out = Scrape()
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            out.add(sample.name, sample.labels, sample.value)
    return out


def quantile(buckets: Mapping[float, float], q: float) -> tuple[float, float, float] | None:
    """Prometheus's histogram_quantile over cumulative buckets, and the bucket [lo, hi] the
    quantile lies in (what it is exact to); None without observations."""
    bounds = sorted(buckets)
    if not bounds:
        return None
    total = buckets[bounds[-1]]
    if total <= 0:
        return None
    rank = q * total
    prev_bound, prev_count = 0.0, 0.0
    for bound in bounds:
        count = buckets[bound]
        if count >= rank:
            if math.isinf(bound):
                return prev_bound, prev_bound, math.inf
            if count == prev_count:
                return bound, prev_bound, bound
            value = prev_bound + (bound - prev_bound) * (rank - prev_count) / \
                (count - prev_count)
            return value, prev_bound, bound
        prev_bound, prev_count = bound, count
    return prev_bound, prev_bound, math.inf


def _histogram(s: Scrape, keys: list[Key]) -> dict[str, Any] | None:
    buckets: dict[float, float] = {}
    count = total = 0.0
    for k in keys:
        for le, n in s.buckets.get(k, {}).items():
            buckets[le] = buckets.get(le, 0.0) + n
        count += s.counts.get(k, 0.0)
        total += s.sums.get(k, 0.0)
    if count <= 0:
        return None
    out: dict[str, Any] = {"count": int(count), "mean_ms": round(total / count, 3),
                           "bounds_ms": {}}
    for q in QUANTILES:
        found = quantile(buckets, q)
        name = f"p{int(q * 100)}"
        out[f"{name}_ms"] = None if found is None else round(found[0], 3)
        if found is not None:
            out["bounds_ms"][name] = [found[1], None if math.isinf(found[2]) else found[2]]
    return out


def endpoint_label(queue: str) -> str:
    """The endpoint label MassTransit gives a receive endpoint named ``queue``."""
    return queue.replace(".", "_").replace("/", "_")


def attribution(profile: Profile) -> dict[str, Any]:
    """Per message type the endpoints consuming it, and the declared consumer types."""
    return {"types": {mt: [ep.queue for ep in profile.consumers_of(mt)]
                      for mt in profile.messages},
            "consumers": {ep.queue: set(ep.consumer_types) for ep in profile.endpoints}}


def per_endpoint(s: Scrape, profile: Profile) -> tuple[dict[str, dict[str, Any]], list[str]]:
    """(queue -> its meters, notes on what could not be attributed)."""
    types = attribution(profile)
    owner: dict[Key, str] = {}
    notes: set[str] = set()
    for key in {*s.counters, *s.buckets}:
        base, labels = key
        lab = dict(labels)
        if base.startswith("receive"):
            for ep in profile.endpoints:
                if lab.get(DESTINATION) == endpoint_label(ep.queue):
                    owner[key] = ep.queue
            continue
        mt, consumer = lab.get(MESSAGE_TYPE, ""), lab.get(CONSUMER_TYPE, "")
        queues = types["types"].get(mt, [])
        declared = [q for q in queues if consumer in types["consumers"].get(q, set())]
        if len(declared) == 1:
            owner[key] = declared[0]
        elif len(queues) == 1:
            owner[key] = queues[0]
        elif queues:
            notes.add(f"{mt} ({consumer}) is consumed by {', '.join(queues)}: give the "
                      f"endpoint its consumer_types in the profile to tell them apart")
    out: dict[str, dict[str, Any]] = {}
    for ep in profile.endpoints:
        mine = [k for k, q in owner.items() if q == ep.queue]
        if not mine:
            continue
        # a counter is None where nothing of its kind was attributed to the endpoint; the
        # error counters start with the first error, so they count 0 beside their base
        counted = {k[0].split("_")[0] for k in mine}
        figures: dict[str, Any] = {
            what: int(sum(v for k, v in s.counters.items() if k in mine and k[0] == c))
            if c.split("_")[0] in counted else None for c, what in COUNTERS.items()}
        for h, what in HISTOGRAMS.items():
            figures[what] = _histogram(s, [k for k in mine if k[0] == h])
        out[ep.queue] = figures
    return out, sorted(notes)


async def _get(url: str, timeout_s: float, flag: str) -> str:
    import aiohttp

    try:
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=timeout_s)) as s, \
                s.get(url) as resp:
            if resp.status != 200:
                raise Unavailable(f"{flag}: {masked(url)} answered HTTP {resp.status}")
            return await resp.text()
    except (aiohttp.ClientError, TimeoutError) as exc:
        raise Unavailable(f"{flag}: cannot read {masked(url)}: "
                          f"{exc or type(exc).__name__}") from None


async def scrape(urls: list[str], timeout_s: float = 10.0) -> Scrape:
    """One GET of each instance's metrics, summed; Unavailable naming --app-metrics. No
    MassTransit family is no error: a meter shows nothing before its first message."""
    total = Scrape()
    for url in urls:
        text = await _get(url, timeout_s, "--app-metrics")
        try:
            total = total.merged(parse(text))
        except ValueError as exc:
            raise Unavailable(f"--app-metrics: {masked(url)} is not a Prometheus exposition: "
                              f"{str(exc).splitlines()[0] if str(exc) else exc}") from None
    return total


async def from_prometheus(url: str, window_s: float, at: float,
                          timeout_s: float = 10.0) -> Scrape:
    """What MassTransit recorded in the ``window_s`` before ``at`` (epoch seconds), asked of a
    Prometheus server: ``increase()`` of every MassTransit counter and of each histogram's
    buckets, sum and count over the window, summed by the labels a series is told apart by
    (every instance the server scrapes)."""
    import json
    from urllib.parse import urlencode

    base = url.rstrip("/")

    async def api(path: str, params: dict[str, str]) -> Any:
        text = await _get(f"{base}/api/v1/{path}?{urlencode(params)}", timeout_s,
                          "--app-prometheus")
        try:
            return json.loads(text)["data"]
        except (ValueError, KeyError, TypeError):
            raise Unavailable(f"--app-prometheus: {masked(url)} is not a Prometheus HTTP API "
                              f"(/api/v1/{path})") from None

    names = [n for n in await api("label/__name__/values", {}) if instrument(n) is not None]
    out = Scrape()
    span = f"{max(1, math.ceil(window_s))}s"
    for name in names:
        by = ", ".join((*KEPT, "le") if name.endswith("_bucket") else KEPT)
        data = await api("query", {"query": f"sum by ({by}) (increase({name}[{span}]))",
                                   "time": f"{at:.3f}"})
        for r in data.get("result", []):
            out.add(name, r.get("metric", {}), float(r["value"][1]))
    return out
