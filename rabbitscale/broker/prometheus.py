"""Broker samples from rabbitmq_prometheus (port 15692), for brokers whose management metrics
collector is off (the official Docker image sets ``disable_metrics_collector``).

Per queue it reads ``/metrics/detailed`` with only the families it needs for one vhost
(depth, consumers, consumer capacity, memory, and the per-channel delivery and publish
counters); per node the aggregated ``/metrics`` of each node's endpoint. Rates come from
counter deltas between two samples, kept per (channel, queue): a channel that closes takes its
counters with it, which must not read as a negative rate. Read-only: GETs only.
"""

from __future__ import annotations

import time
from collections import defaultdict
from typing import Any
from urllib.parse import urlencode

import aiohttp
from prometheus_client.parser import text_string_to_metric_families

from rabbitscale.broker.observe import NodeSample, QueueSample
from rabbitscale.core.errors import Unavailable

QUEUE_FAMILIES = ("queue_coarse_metrics", "queue_consumer_count", "queue_metrics",
                  "channel_queue_metrics", "channel_queue_exchange_metrics")
DETAILED = "rabbitmq_detailed_"
COUNTERS = {  # sample name -> QueueSample rate field
    f"{DETAILED}queue_messages_published_total": "publish_rate",
    f"{DETAILED}channel_messages_delivered_ack_total": "deliver_rate",
    f"{DETAILED}channel_messages_delivered_total": "deliver_rate",
    f"{DETAILED}channel_messages_acked_total": "ack_rate",
    f"{DETAILED}channel_messages_redelivered_total": "redeliver_rate",
}
PUBLISHED = f"{DETAILED}queue_messages_published_total"
ACKED = f"{DETAILED}channel_messages_acked_total"
GAUGES = {
    f"{DETAILED}queue_messages": "messages",
    f"{DETAILED}queue_messages_ready": "ready",
    f"{DETAILED}queue_messages_unacked": "unacked",
    f"{DETAILED}queue_consumers": "consumers",
    f"{DETAILED}queue_consumer_capacity": "consumer_capacity",
    f"{DETAILED}queue_process_memory_bytes": "memory",
}
NODE_GAUGES = {
    "rabbitmq_process_resident_memory_bytes": "mem_used",
    "rabbitmq_resident_memory_limit_bytes": "mem_limit",
    "rabbitmq_alarms_memory_used_watermark": "mem_alarm",
    "rabbitmq_disk_space_available_bytes": "disk_free",
    "rabbitmq_disk_space_available_limit_bytes": "disk_free_limit",
    "rabbitmq_alarms_free_disk_space_watermark": "disk_alarm",
    "rabbitmq_process_open_fds": "fd_used",
    "rabbitmq_process_max_fds": "fd_total",
    "rabbitmq_erlang_processes_used": "proc_used",
    "rabbitmq_connections": "connections",
    "rabbitmq_channels": "channels",
}


# quorum queues' Raft figures under both names: RabbitMQ 4.2 renamed the rabbitmq_raft_log_*
# gauges and replaced rabbitmq_raft_entry_commit_latency_seconds (the aggregated /metrics)
RAFT = {
    "commit_latency": ("rabbitmq_raft_entry_commit_latency_seconds",
                       "rabbitmq_raft_max_commit_latency_seconds"),
    "commit_index": ("rabbitmq_raft_log_commit_index", "rabbitmq_raft_commit_index"),
    "last_applied": ("rabbitmq_raft_log_last_applied_index", "rabbitmq_raft_last_applied"),
}
RAFT_NAMES = {name: figure for figure, names in RAFT.items() for name in names}


def raft_figures(samples: list[tuple[str, dict[str, str], float]]) -> dict[str, Any]:
    """NodeSample's raft fields from a node's aggregated samples, whichever names it uses."""
    got: dict[str, float] = {}
    for name, labels, value in samples:
        figure = RAFT_NAMES.get(name)
        if figure is not None and not labels:
            got[figure] = max(got.get(figure, value), value)
    out: dict[str, Any] = {}
    if "commit_latency" in got:
        out["raft_commit_latency_s"] = got["commit_latency"]
    if "commit_index" in got and "last_applied" in got:
        out["raft_apply_lag"] = max(0, int(got["commit_index"] - got["last_applied"]))
    return out


def parse(text: str) -> list[tuple[str, dict[str, str], float]]:
    """(sample name, labels, value) of a Prometheus text exposition."""
    return [(s.name, s.labels, s.value) for family in text_string_to_metric_families(text)
            for s in family.samples]


class PrometheusSource:
    """Samples from one or more nodes' rabbitmq_prometheus endpoints (GET only)."""

    name = "prometheus"

    def __init__(self, urls: list[str], timeout_s: float = 10.0) -> None:
        self.urls = [u.rstrip("/") for u in urls]
        self._timeout = aiohttp.ClientTimeout(total=timeout_s)
        self._session: aiohttp.ClientSession | None = None
        # (counter name, channel, queue) -> (value, time): rates from per-channel deltas
        self._last: dict[tuple[str, str, str], float] = {}
        # queue -> acks summed over its channels' deltas since the first sample: a counter
        # that survives channels closing
        self._acked: dict[str, float] = defaultdict(float)
        self._prev: float | None = None  # time of the previous queue sample

    async def _get(self, url: str) -> str:
        if self._session is None:
            self._session = aiohttp.ClientSession(timeout=self._timeout)
        try:
            async with self._session.get(url) as resp:
                if resp.status != 200:
                    raise Unavailable(f"rabbitmq_prometheus at {url} answered HTTP "
                                      f"{resp.status}; is the plugin enabled?")
                return await resp.text()
        except aiohttp.ClientError as exc:
            raise Unavailable(f"cannot reach rabbitmq_prometheus at {url}: {exc}; check "
                              f"--prometheus and that the rabbitmq_prometheus plugin is "
                              f"enabled") from None
        except TimeoutError:
            raise Unavailable(f"rabbitmq_prometheus at {url} did not answer in time") \
                from None

    async def queues(self, vhost: str) -> dict[str, QueueSample]:
        now = time.monotonic()
        fields: dict[str, dict[str, Any]] = defaultdict(dict)
        rates: dict[str, dict[str, float]] = defaultdict(lambda: defaultdict(float))
        seen: set[tuple[str, str, str]] = set()
        query = urlencode([("vhost", vhost)] + [("family", f) for f in QUEUE_FAMILIES])
        for url in self.urls:  # a queue's figures come from the node that hosts it
            for name, labels, value in parse(await self._get(f"{url}/metrics/detailed?"
                                                             f"{query}")):
                queue = labels.get("queue")
                if queue is None or labels.get("vhost", labels.get("queue_vhost")) != vhost:
                    continue
                if name in GAUGES:
                    fields[queue][GAUGES[name]] = value
                if name == PUBLISHED:
                    fields[queue]["published_total"] = value
                if name in COUNTERS:
                    key = (f"{url}{name}{labels.get('exchange', '')}",
                           labels.get("channel", ""), queue)
                    seen.add(key)
                    before = self._last.get(key, 0.0)  # a new channel opened since: from 0
                    self._last[key] = value
                    if self._prev is not None and now > self._prev:  # the first only primes
                        rates[queue][COUNTERS[name]] += max(0.0, value - before) / \
                            (now - self._prev)
                        if name == ACKED:
                            self._acked[queue] += max(0.0, value - before)
        for gone in set(self._last) - seen:  # closed channels: forget, never negative
            del self._last[gone]
        self._prev = now
        out = {}
        for queue in set(fields) | set(rates):
            f: dict[str, Any] = {k: int(v) if k != "consumer_capacity" else float(v)
                                 for k, v in fields[queue].items()}
            f.update({k: round(v, 3) for k, v in rates[queue].items()})
            f["acked_total"] = int(self._acked[queue])
            out[queue] = QueueSample(name=queue, **f)
        return out

    async def nodes(self) -> list[NodeSample]:
        out = []
        for url in self.urls:
            values: dict[str, Any] = {}
            node = url
            samples = parse(await self._get(f"{url}/metrics"))
            values.update(raft_figures(samples))
            for name, labels, value in samples:
                if name == "rabbitmq_identity_info":
                    node = labels.get("rabbitmq_node", node)
                elif name in NODE_GAUGES and not labels:
                    field = NODE_GAUGES[name]
                    values[field] = bool(value) if field.endswith("alarm") else int(value)
            out.append(NodeSample(node=node, **values))
        return out

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None
