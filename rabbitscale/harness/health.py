"""The ``rabbitmq_comprehensive`` health check, in the JSON shape of conduit-topology.md.

Healthy below 1,000 messages in every critical queue; Degraded above the warning threshold;
Unhealthy above 5,000, on a memory alarm, or when the bus or management API is unreachable.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from rabbitscale.broker.management import Management, ManagementError
from rabbitscale.core import targets

HEALTHY, DEGRADED, UNHEALTHY = "Healthy", "Degraded", "Unhealthy"


@dataclass(frozen=True)
class DepthThresholds:
    warning: int = targets.DEPTH_WARNING
    critical: int = targets.DEPTH_CRITICAL


def timespan(seconds: float) -> str:
    """.NET TimeSpan text ("00:00:00.0123456"), as ASP.NET health checks print durations."""
    h, rem = divmod(seconds, 3600)
    m, s = divmod(rem, 60)
    return f"{int(h):02d}:{int(m):02d}:{s:010.7f}"


async def rabbitmq_comprehensive(mgmt: Management, queues: Iterable[str], *,
                                 bus_connected: bool,
                                 thresholds: DepthThresholds = DepthThresholds()
                                 ) -> dict[str, Any]:
    t0 = time.perf_counter()
    data: dict[str, Any] = {"bus_connected": bus_connected}
    problems: list[str] = []
    status = HEALTHY if bus_connected else UNHEALTHY
    if not bus_connected:
        problems.append("bus not connected")
    try:
        overview = await mgmt.overview()
        nodes = await mgmt.nodes()
        data["total_messages"] = int(overview.get("queue_totals", {}).get("messages", 0) or 0)
        data["total_connections"] = int(overview.get("object_totals", {}).get("connections", 0))
        data["memory_used_mb"] = round(sum(n.get("mem_used", 0) for n in nodes) / 2**20, 1)
        data["memory_limit_mb"] = round(sum(n.get("mem_limit", 0) for n in nodes) / 2**20, 1)
        data["memory_alarm"] = any(n.get("mem_alarm") for n in nodes)
        if data["memory_alarm"]:
            status = UNHEALTHY
            problems.append("memory alarm")
        metrics: dict[str, Any] = {}
        by_name = {q["name"]: q for q in await mgmt.queues()}
        for name in queues:
            q = by_name.get(name)
            if q is None:
                metrics[name] = None
                status = UNHEALTHY
                problems.append(f"{name} missing")
                continue
            depth = int(q.get("messages", 0) or 0)
            metrics[name] = {
                "messages": depth,
                "messages_ready": int(q.get("messages_ready", 0) or 0),
                "messages_unacked": int(q.get("messages_unacknowledged", 0) or 0),
                "consumers": int(q.get("consumers", 0) or 0),
                "message_rate": float(q.get("message_stats", {})
                                      .get("publish_details", {}).get("rate", 0.0)),
            }
            if depth > thresholds.critical:
                status = UNHEALTHY
                problems.append(f"{name} depth {depth} > {thresholds.critical}")
            elif depth > thresholds.warning:
                if status == HEALTHY:
                    status = DEGRADED
                problems.append(f"{name} depth {depth} > {thresholds.warning}")
        data["queue_metrics"] = metrics
    except ManagementError as exc:
        status = UNHEALTHY
        problems.append(str(exc))
    return {
        "name": "rabbitmq_comprehensive",
        "status": status,
        "description": "; ".join(problems) or "RabbitMQ healthy",
        "duration": timespan(time.perf_counter() - t0),
        "data": data,
    }


def report(checks: list[dict[str, Any]], total_s: float) -> dict[str, Any]:
    order = [HEALTHY, DEGRADED, UNHEALTHY]
    worst = max((c["status"] for c in checks), key=order.index, default=HEALTHY)
    return {"status": worst, "checks": checks, "totalDuration": timespan(total_s)}
