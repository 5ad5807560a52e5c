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

from rabbitscale.core.errors import BadInput
from rabbitscale.topology.profiles import Profile
from rabbitscale.topology.settings import STATS_INTERVAL_S

if TYPE_CHECKING:  # the CLI reads FAULTS for its choices: keep this module light
    from rabbitscale.broker.management import Management


@dataclass
class FaultContext:
    stack: Any  # harness.stack.Stack
    management: Management
    run_name: str
    say: Any
    kinds: tuple[str, ...] = ()  # the task kinds the run sends
    extra_published: int = 0  # confirmed publishes made by the fault itself
    notes: list[str] = field(default_factory=list)


def task_queues(profile: Profile, kinds: tuple[str, ...]) -> list[str]:
    """The endpoints the run's task kinds reach, in the profile's order."""
    reached = {q for k in kinds for q in profile.queues_of(k)}
    return [ep.queue for ep in profile.endpoints if ep.queue in reached]


def webhook_queue(profile: Profile, name: str) -> str:
    kind = profile.webhook_kind
    if kind is None:
        raise BadInput(f"--fault {name} acts on the webhook endpoint: profile "
                       f"{profile.name!r} has no task kind with stream = \"webhooks\"")
    return profile.queues_of(kind)[0]


def _rabbitmqctl(*args: str) -> str:
    exe = shutil.which("rabbitmqctl")
    if exe is None:
        raise RuntimeError("rabbitmqctl not found: this fault needs the broker on this machine")
    done = subprocess.run([exe, *args], capture_output=True, text=True, timeout=120)
    if done.returncode != 0:
        raise RuntimeError(f"rabbitmqctl {' '.join(args)}: {done.stderr.strip()[:200]}")
    return done.stdout


def ordered_queue(profile: Profile, kinds: tuple[str, ...]) -> str:
    for queue in task_queues(profile, kinds):
        ep = profile.endpoint(queue)
        if ep.single_active_consumer and (ep.concurrency or 1) == 1:
            return queue
    raise BadInput("--fault sac_failover needs the run to send to an ordered endpoint (single "
                   "active consumer, concurrency 1): add one to --task-mix")


class Fault:
    name = ""
    description = ""
    at_fraction = 0.4
    recover_after_s = 3.0
    thresholds: dict[str, float] = {}
    time_scale = 1.0
    needs_cluster = False
    sink_failure_ratio = 0.0
    sink_latency_s = 0.0

    def overrides(self, profile: Profile, kinds: tuple[str, ...]) -> dict[str, dict[str, Any]]:
        """Endpoint tables this fault applies to the profile before the run."""
        return {}

    async def inject(self, ctx: FaultContext) -> str:
        raise NotImplementedError

    async def recover(self, ctx: FaultContext) -> str:
        return "nothing to recover"


class KillConsumer(Fault):
    name = "kill_consumer"
    description = "SIGKILL one consumer instance mid-run (the work of the endpoints the run " \
                  "sends to takes 400 ms where none is set, so it holds unacked messages); a " \
                  "replacement starts 2 s later"
    recover_after_s = 2.0

    def overrides(self, profile: Profile, kinds: tuple[str, ...]) -> dict[str, dict[str, Any]]:
        return {q: {"service_time": "fixed:400ms"} for q in task_queues(profile, kinds)
                if profile.endpoint(q).service_time is None}

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
    description = "the webhook endpoint bounded to 50 messages (reject-publish) with a slow " \
                  "target and prefetch 1: publishes are nacked, counted and answered 503"
    recover_after_s = 0.0

    def overrides(self, profile: Profile, kinds: tuple[str, ...]) -> dict[str, dict[str, Any]]:
        # prefetch 1: x-max-length counts ready messages only, so with a prefetch of 100 x 3
        # instances the consumers' buffers would absorb the burst and nothing overflows
        queue = webhook_queue(profile, self.name)
        args = {**profile.endpoint(queue).queue_arguments, "x-max-length": 50,
                "x-overflow": "reject-publish"}
        return {queue: {"concurrency": 1, "prefetch": 1, "queue_arguments": args}}

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
    description = "5 poison messages (handler always fails) of the run's first task kind " \
                  "whose endpoints have no circuit breaker, published mid-run: retried per " \
                  "policy, then in _error with MT-Fault-* headers"
    recover_after_s = 0.0
    time_scale = 0.01
    thresholds = {"error_rate_max": 1.0}
    count = 5

    @staticmethod
    def kind(profile: Profile, kinds: tuple[str, ...]) -> str:
        """A kind whose poison shows the retry policy and _error, not a breaker tripping on
        it (which would fault the healthy messages behind it too): the first without a
        breaker, else the first."""
        for kind in kinds:
            if all(ep.breaker is None for ep in profile.consumers_of(profile.task(kind).message)):
                return kind
        return kinds[0]

    async def inject(self, ctx: FaultContext) -> str:
        from rabbitscale.broker.publisher import Publisher
        from rabbitscale.core.headers import RS_FAIL
        from rabbitscale.scenarios.drivers import Task, message_for

        profile = ctx.stack.profile
        kind = self.kind(profile, ctx.kinds)
        pub = await Publisher(ctx.stack.settings, profile, run_id=ctx.run_name).start()
        try:
            for i in range(self.count):
                type_name, body = message_for(profile, Task(kind, 900 + i, f"poison-{i}", 1000,
                                                            0.0))
                r = await pub.publish(type_name, body, headers={RS_FAIL: "always"})
                ctx.extra_published += profile.fanout(type_name) if r.ok else 0
        finally:
            await pub.close()
        return f"published {self.count} poison {kind} tasks"


class SacFailover(Fault):
    name = "sac_failover"
    description = "SIGKILL the active consumer of the run's first ordered (single active " \
                  "consumer, one at a time) endpoint: another instance takes over, per-key " \
                  "order is preserved"
    recover_after_s = 2.0

    def overrides(self, profile: Profile, kinds: tuple[str, ...]) -> dict[str, dict[str, Any]]:
        ordered_queue(profile, kinds)  # refused up front where there is none
        return {}

    async def inject(self, ctx: FaultContext) -> str:
        q = await ctx.management.queue(ordered_queue(ctx.stack.profile, ctx.kinds))
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
