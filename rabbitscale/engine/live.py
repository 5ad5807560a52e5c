"""Wiring a run's live metrics (harness/metrics.py) to what produces them, in one function
called at start, as Locust's ``setup_distributed_stats_event_listeners`` does: the recorder's
counted records, the stack's publishes and sink arrivals, the processes' memory and the
instances running (the broker's figures come from its own rabbitmq_prometheus)."""

from __future__ import annotations

from typing import Any

from rabbitscale.harness.metrics import Metrics


def setup_live_metrics(metrics: Metrics, recorder: Any, stack: Any, sampler: Any) -> None:
    recorder.counted.add_listener(lambda record: metrics.on_completion(record))
    stack.published.add_listener(lambda result: metrics.on_publish(result))
    stack.sink.arrived.add_listener(metrics.on_webhook)

    def on_sample(vhost: str, queues: list[Any], nodes: list[Any], rss: dict[str, int]
                  ) -> None:
        metrics.on_processes(rss)
        metrics.instances.set(len(stack.procs))

    sampler.sampled.add_listener(on_sample)
