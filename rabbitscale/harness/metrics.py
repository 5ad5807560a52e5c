"""Live metrics in the Prometheus text format (prometheus-client), for `run --prometheus-port`
and `stack --prometheus-port`.

One registry per run or stack (never the library's global one), served by the client
library's own HTTP server on a thread of its own. Names follow Prometheus conventions
(``rabbitscale_`` prefix, ``_total`` counters, base units). Only rabbitscale's own figures:
the broker's (depth, consumers, memory, rates) come from its rabbitmq_prometheus, which the
dashboard scrapes itself; re-exporting them here under the broker's names counted each queue
twice.
Latency histograms have buckets fitted to the guide's targets: the 5 s burst lag and the
5-minute message age are bucket bounds, so "within target" is an exact bucket count.
"""

from __future__ import annotations

import errno
import threading
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server

from rabbitscale.core import targets
from rabbitscale.core.errors import BadInput, PortInUse
from rabbitscale.core.verdicts import FAIL, SKIP
from rabbitscale.topology.profiles import Profile

# seconds: fine below 1 s (queue wait, processing), then the guide's 5 s and 300 s bounds
LATENCY_BUCKETS_S = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
                     targets.BURST_MAX_LAG_S, 10.0, 30.0, 60.0, 120.0,
                     targets.MESSAGE_AGE_MAX_S, 600.0)


def kinds_by_type(profile: Profile | None) -> dict[str, str]:
    """Message type -> the task kind that publishes it (a type without one keeps its name)."""
    return {} if profile is None else \
        {t.message: k for k, t in reversed(list(profile.tasks.items()))}


@dataclass
class Server:
    """The exposition server; ``close`` stops it (it also dies with the process)."""

    url: str
    _server: Any
    _thread: threading.Thread

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)


class Metrics:
    def __init__(self, scenario: str = "", run: str = "", profile: Profile | None = None
                 ) -> None:
        self.registry = CollectorRegistry()
        self.scenario = scenario
        self.kinds = kinds_by_type(profile)
        r = self.registry
        info = Gauge("rabbitscale_run_info", "The run this process serves (value 1).",
                     ["run", "scenario"], registry=r)
        info.labels(run, scenario).set(1)
        self.arrivals = Counter(
            "rabbitscale_arrivals", "Tasks the system under test accepted, by task kind.",
            ["scenario", "kind"], registry=r)
        self.publishes = Counter(
            "rabbitscale_publishes", "Publishes to the broker by kind and outcome (confirmed, "
            "rejected, timeout, blocked, failed, unroutable).", ["kind", "outcome"], registry=r)
        self.completions = Counter(
            "rabbitscale_completions", "Messages finished by the consumers, by queue and "
            "status (completed, faulted, skipped).", ["queue", "status"], registry=r)
        self.webhooks = Counter("rabbitscale_webhooks_arrived",
                                "Webhooks that reached the sink.", registry=r)
        def hist(name: str, text: str) -> Histogram:
            return Histogram(name, text, ["queue"], registry=r, buckets=LATENCY_BUCKETS_S)

        self.e2e = hist("rabbitscale_e2e_seconds", "Intended send to finished.")
        self.queue_wait = hist("rabbitscale_queue_wait_seconds",
                               "Sent to a consumer starting on it.")
        self.slot_wait = hist("rabbitscale_slot_wait_seconds",
                              "Delivered to a consumer starting on it (waiting for a slot).")
        self.processing = hist("rabbitscale_processing_seconds",
                               "Started to finished, retries included.")
        self.publish_delay = hist("rabbitscale_publish_delay_seconds",
                                  "Sent minus intended send time.")
        self.ledger = Gauge("rabbitscale_ledger_messages", "The run's ledger, by field.",
                            ["field"], registry=r)
        self.check = Gauge("rabbitscale_slo_check", "1 when the SLO check passes (or warns), "
                           "0 when it fails; set at the end of the run.", ["check"], registry=r)
        self.instances = Gauge("rabbitscale_instances", "Consumer processes running.",
                               registry=r)
        self.process_rss = Gauge("rabbitscale_process_resident_memory_bytes",
                                 "Resident memory of each process of the run.", ["process"],
                                 registry=r)

    # --- what producers call -----------------------------------------------------------------

    def on_publish(self, result: Any) -> None:
        """A publisher's result (harness.publisher.PublishResult)."""
        kind = self.kinds.get(result.message_type, result.message_type)
        outcome = getattr(result.outcome, "value", str(result.outcome))
        self.publishes.labels(kind, outcome).inc()
        if result.ok:
            self.arrivals.labels(self.scenario, kind).inc()

    def on_completion(self, record: Any) -> None:
        """A completion record counted once (harness.completions.Completion)."""
        q = record.queue
        self.completions.labels(q, record.status).inc()
        if record.status != "completed":
            return
        self.e2e.labels(q).observe(max(0.0, record.e2e_s))
        self.queue_wait.labels(q).observe(max(0.0, record.queue_wait_s))
        self.slot_wait.labels(q).observe(record.slot_wait_s)
        self.processing.labels(q).observe(max(0.0, record.processing_s))
        self.publish_delay.labels(q).observe(max(0.0, record.sent - record.intended))

    def on_webhook(self, **_: Any) -> None:
        self.webhooks.inc()

    def on_processes(self, rss: dict[str, int]) -> None:
        for name, value in rss.items():
            self.process_rss.labels(name).set(value)

    def set_outcome(self, ledger: dict[str, Any], checks: Iterable[Any]) -> None:
        for name, value in ledger.items():
            if isinstance(value, int | float) and not isinstance(value, bool):
                self.ledger.labels(name).set(value)
        for c in checks:
            if c.verdict != SKIP:
                self.check.labels(c.name).set(0 if c.verdict == FAIL else 1)

    # --- serving --------------------------------------------------------------------------

    def serve(self, port: int, host: str = "127.0.0.1", flag: str = "--prometheus-port"
              ) -> Server:
        try:
            server, thread = start_http_server(port, addr=host, registry=self.registry)
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                raise PortInUse("Prometheus metrics", host, port, flag) from None
            raise BadInput(f"Prometheus metrics: cannot listen on {host}:{port}: "
                           f"{exc.strerror or exc}") from None
        bound = server.server_address[1]
        return Server(f"http://{host}:{bound}/metrics", server, thread)
