"""Fault injections for `rabbitscale run ... --fault NAME`, each judged by the run's ledger
(every published message completed, in `_error`, or rejected at publish and reported;
lost = 0; duplicates counted).

A fault can change the stack before the run (endpoint overrides, sink failures, a time scale
for retry and breaker windows, relaxed thresholds where the fault is *meant* to break one),
is injected at ``at_fraction`` of the load and recovered ``recover_after_s`` later.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import shutil
import signal
import subprocess
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from rabbitscale.topology.settings import STATS_INTERVAL_S

if TYPE_CHECKING:  # the CLI reads FAULTS for its choices: keep this module light
    from rabbitscale.broker.management import Management


@dataclass
class FaultContext:
    stack: Any  # harness.stack.Stack
    management: Management
    run_name: str
    say: Any
    extra_published: int = 0  # confirmed publishes made by the fault itself
    notes: list[str] = field(default_factory=list)


def _rabbitmqctl(*args: str) -> str:
    exe = shutil.which("rabbitmqctl")
    if exe is None:
        raise RuntimeError("rabbitmqctl not found: this fault needs the broker on this machine")
    done = subprocess.run([exe, *args], capture_output=True, text=True, timeout=120)
    if done.returncode != 0:
        raise RuntimeError(f"rabbitmqctl {' '.join(args)}: {done.stderr.strip()[:200]}")
    return done.stdout


class Fault:
    name = ""
    description = ""
    at_fraction = 0.4
    recover_after_s = 3.0
    profile_overrides: dict[str, dict[str, Any]] = {}
    thresholds: dict[str, float] = {}
    time_scale = 1.0
    needs_cluster = False
    sink_failure_ratio = 0.0
    sink_latency_s = 0.0

    async def inject(self, ctx: FaultContext) -> str:
        raise NotImplementedError

    async def recover(self, ctx: FaultContext) -> str:
        return "nothing to recover"


class KillConsumer(Fault):
    name = "kill_consumer"
    description = "SIGKILL one consumer instance mid-run (generation work takes 400 ms, so it " \
                  "holds unacked messages); a replacement starts 2 s later"
    recover_after_s = 2.0
    profile_overrides = {"video-generation-events": {"service_time": "fixed:400ms"},
                         "image-generation-events": {"service_time": "fixed:400ms"}}

    async def inject(self, ctx: FaultContext) -> str:
        proc = ctx.stack.procs[0]
        proc.send_signal(signal.SIGKILL)
        return f"SIGKILL consumer-1 (pid {proc.pid})"

    async def recover(self, ctx: FaultContext) -> str:
        return f"started {await ctx.stack.add_instance()}"


class CloseConnections(Fault):
    name = "close_connections"
    description = "the broker force-closes every connection of the run's vhost"
    recover_after_s = 0.0
    thresholds = {"rate_ratio_min": 0.95}  # publishes in flight at the close may be reported

    async def inject(self, ctx: FaultContext) -> str:
        conns = await ctx.management.connections()
        for c in conns:
            await ctx.management.close_connection(c["name"])
        return f"closed {len(conns)} connections through the management API"


class BrokerRestart(Fault):
    name = "broker_restart"
    description = "rabbitmqctl stop_app, 3 s down, start_app: durable quorum queues keep their " \
                  "messages"
    recover_after_s = 3.0
    thresholds = {"rate_ratio_min": 0.6}  # the API answers 503 while the broker is down

    async def inject(self, ctx: FaultContext) -> str:
        await asyncio.to_thread(_rabbitmqctl, "stop_app")
        return "rabbitmqctl stop_app"

    async def recover(self, ctx: FaultContext) -> str:
        await asyncio.to_thread(_rabbitmqctl, "start_app")
        await asyncio.to_thread(_rabbitmqctl, "await_startup", "--timeout", "60")
        return "rabbitmqctl start_app"


class MemoryAlarm(Fault):
    name = "memory_alarm"
    description = "vm_memory_high_watermark set to a tiny value for 6 s, then restored: " \
                  "publishers are blocked, then resume"
    # longer than the management API's statistics interval, so the sampled node record
    # shows the alarm too (a 4 s alarm fell between two refreshes in CI)
    recover_after_s = STATS_INTERVAL_S + 1.0
    thresholds = {"rate_ratio_min": 0.9}
    _previous = "0.4"

    async def inject(self, ctx: FaultContext) -> str:
        out = await asyncio.to_thread(_rabbitmqctl, "eval",
                                      "vm_memory_monitor:get_vm_memory_high_watermark().")
        text = out.strip()
        m = re.fullmatch(r"\{absolute,\s*(\d+)\}", text)
        self._previous = f"absolute {m.group(1)}" if m else text
        await asyncio.to_thread(_rabbitmqctl, "set_vm_memory_high_watermark", "0.000001")
        return f"watermark 0.000001 (was {self._previous})"

    async def recover(self, ctx: FaultContext) -> str:
        await asyncio.to_thread(_rabbitmqctl, "set_vm_memory_high_watermark",
                                *self._previous.split())
        return f"watermark restored to {self._previous}"


class Overflow(Fault):
    name = "overflow"
    description = "webhook-delivery bounded to 50 messages (reject-publish) with a slow target " \
                  "and prefetch 1: publishes are nacked, counted and answered 503"
    recover_after_s = 0.0
    # prefetch 1: x-max-length counts ready messages only, so with the default prefetch of
    # 100 x 3 instances the consumers' buffers would absorb the burst and nothing overflows
    profile_overrides = {"webhook-delivery": {"concurrency": 1, "prefetch": 1, "queue_arguments": {
        "x-max-length": 50, "x-overflow": "reject-publish", "x-delivery-limit": 10}}}
    sink_latency_s = 0.2
    thresholds = {"rate_ratio_min": 0.0, "burst_ratio_min": 0.0}

    async def inject(self, ctx: FaultContext) -> str:
        return "none needed: the bound and the slow target were set before the run"


class WebhookFailures(Fault):
    name = "webhook_failures"
    description = "the webhook target fails 20% of calls: the breaker (15%) trips, retries and " \
                  "_error follow the policy, the breaker resets (windows scaled by 0.01)"
    recover_after_s = 0.0
    time_scale = 0.01
    sink_failure_ratio = 0.2
    thresholds = {"error_rate_max": 1.0, "burst_ratio_min": 0.0}

    async def inject(self, ctx: FaultContext) -> str:
        return "none needed: the sink fails 20% of calls for the whole run"


class Poison(Fault):
    name = "poison"
    description = "5 poison messages (handler always fails) published mid-run: retried per " \
                  "policy, then in _error with MT-Fault-* headers"
    recover_after_s = 0.0
    time_scale = 0.01
    thresholds = {"error_rate_max": 1.0}
    count = 5

    async def inject(self, ctx: FaultContext) -> str:
        from rabbitscale.broker.publisher import Publisher
        from rabbitscale.core.headers import RS_FAIL
        from rabbitscale.topology import messages

        pub = await Publisher(ctx.stack.settings, ctx.stack.profile,
                              run_id=ctx.run_name).start()
        try:
            for i in range(self.count):
                r = await pub.publish("SpendUpdateRequested",
                                      messages.spend_update(900 + i, 1.0, f"poison-{i}"),
                                      headers={RS_FAIL: "always"})
                ctx.extra_published += int(r.ok)
        finally:
            await pub.close()
        return f"published {self.count} poison spend updates"


class SacFailover(Fault):
    name = "sac_failover"
    description = "SIGKILL the active consumer of spend-update-events: another instance takes " \
                  "over, per-key order of spend updates is preserved"
    recover_after_s = 2.0

    async def inject(self, ctx: FaultContext) -> str:
        q = await ctx.management.queue("spend-update-events")
        active = [c for c in q.get("consumer_details", [])
                  if c.get("active") or c.get("activity_status") == "single_active"]
        victim = None
        if active:
            conn_name = active[0]["channel_details"]["connection_name"]
            with contextlib.suppress(Exception):
                conn = await ctx.management.request(
                    "GET", f"/connections/{ctx.management.q(conn_name)}")
                label = conn.get("client_properties", {}).get("connection_name", "")
                m = re.search(r"consumer-(\d+)$", label)
                if m:
                    victim = int(m.group(1)) - 1
        if victim is None:  # stats not there yet: the first instance subscribed first
            victim = 0
        proc = ctx.stack.procs[victim]
        proc.send_signal(signal.SIGKILL)
        return f"SIGKILL consumer-{victim + 1} (the active consumer, pid {proc.pid})"

    async def recover(self, ctx: FaultContext) -> str:
        return f"started {await ctx.stack.add_instance()}"


class NodeLoss(Fault):
    name = "node_loss"
    description = "stop the cluster node that leads the busiest queues (rabbitmqctl stop_app): " \
                  "leaders move, publishers and consumers fail over to the other nodes; it " \
                  "comes back 8 s later (needs --cluster)"
    recover_after_s = 8.0
    thresholds = {"rate_ratio_min": 0.9}  # publishes in flight to the lost node may fail
    needs_cluster = True
    _node: Any = None

    async def inject(self, ctx: FaultContext) -> str:
        from rabbitscale.broker import cluster

        c = cluster.require()
        queues = await ctx.management.queues()
        led: dict[str, float] = {}
        for q in queues:
            if q.get("leader") and not q["name"].endswith(("_error", "_skipped")):
                rate = (q.get("message_stats") or {}).get("publish_details", {}).get("rate", 0)
                led[q["leader"]] = led.get(q["leader"], 0.0) + 1.0 + float(rate or 0)
        target = max(led, key=lambda k: led[k]) if led else c.nodes[0].name
        self._node = c.node(target)
        await asyncio.to_thread(cluster.stop_node, self._node)
        leads = sum(1 for q in queues if q.get("leader") == target)
        return f"stopped {self._node.name} (leader of {leads} queues)"

    async def recover(self, ctx: FaultContext) -> str:
        from rabbitscale.broker import cluster

        assert self._node is not None
        await asyncio.to_thread(cluster.start_node, self._node)
        return f"started {self._node.name} again"


class NodeRestart(NodeLoss):
    name = "node_restart"
    description = "restart one cluster node (stop_app, start_app 2 s later): its connections " \
                  "fail over and come back (needs --cluster)"
    recover_after_s = 2.0


FAULTS: dict[str, type[Fault]] = {f.name: f for f in (
    KillConsumer, CloseConnections, BrokerRestart, MemoryAlarm, Overflow, WebhookFailures,
    Poison, SacFailover, NodeLoss, NodeRestart)}
