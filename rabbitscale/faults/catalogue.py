"""Every fault, listed once (``FAULTS``): what ``--fault NAME`` and ``--nemesis KINDS`` choose
from, one spelling each (``kill-consumer``; ``kill_consumer`` is read as the same name).

Faults on the reference stack are judged by the run's ledger (every published message
completed, in ``_error``, or rejected at publish and reported; lost = 0; duplicates counted);
a cluster's faults under the nemesis by the total-queue ledger (judge/total_queue.py). The
partition kinds are those of RabbitMQ's Jepsen suite (random halves, fixed halves, a ring of
majorities, one node isolated), cut for real with iptables (faults/partition.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import re
import shutil
import signal
import subprocess
from typing import Any, ClassVar

from rabbitscale.core.errors import BadInput
from rabbitscale.faults.base import Fault, FaultContext, Target
from rabbitscale.topology.profiles import Profile
from rabbitscale.topology.settings import STATS_INTERVAL_S


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


def ordered_queue(profile: Profile, kinds: tuple[str, ...]) -> str:
    for queue in task_queues(profile, kinds):
        ep = profile.endpoint(queue)
        if ep.single_active_consumer and (ep.concurrency or 1) == 1:
            return queue
    raise BadInput("--fault sac-failover needs the run to send to an ordered endpoint (single "
                   "active consumer, concurrency 1): add one to --task-mix")


def rabbitmqctl(ctx: FaultContext, target: Target, *args: str) -> str:
    """rabbitmqctl on the fault's node: a node of the local cluster where the run has one
    (the target's, else the first), else this machine's broker."""
    if ctx.cluster is not None:
        from rabbitscale.broker import cluster

        node = ctx.cluster.nodes[target.nodes[0] if target.nodes else 0]
        done = cluster.ctl(node, *args, timeout=60)
        where = f" -n {node.name}"
    else:
        exe = shutil.which("rabbitmqctl")
        if exe is None:
            raise RuntimeError("rabbitmqctl not found: this fault needs the broker on this "
                               "machine")
        done = subprocess.run([exe, *args], capture_output=True, text=True, timeout=120)
        where = ""
    if done.returncode != 0:
        raise RuntimeError(f"rabbitmqctl{where} {' '.join(args)}: "
                           f"{(done.stderr or done.stdout).strip()[:200]}")
    return done.stdout


def _where(ctx: FaultContext, target: Target) -> str:
    return f" on {ctx.node(target).short}" if ctx.cluster is not None and target.nodes else ""


# --- the consumers ---------------------------------------------------------------------------


class KillConsumer(Fault):
    name = "kill-consumer"
    description = "SIGKILL a consumer instance mid-run (the work of the endpoints the run " \
                  "sends to takes 400 ms where none is set, so it holds unacked messages); a " \
                  "replacement starts 2 s later"
    nemesis = True
    hold_s = 2.0

    def overrides(self, profile: Profile, kinds: tuple[str, ...]) -> dict[str, dict[str, Any]]:
        return {q: {"service_time": "fixed:400ms"} for q in task_queues(profile, kinds)
                if profile.endpoint(q).service_time is None}

    @classmethod
    def choose(cls, rng: random.Random, nodes: int, instances: int) -> Target:
        return Target((rng.randrange(max(1, instances)),))  # an instance, not a node

    async def apply(self, ctx: FaultContext) -> str:
        procs = ctx.stack.procs
        live = [p for p in procs if p.returncode is None]
        if not live:
            return "no consumer running"
        proc = live[(self.target.nodes or (0,))[0] % len(live)]
        proc.send_signal(signal.SIGKILL)
        return f"SIGKILL consumer-{procs.index(proc) + 1} (pid {proc.pid})"

    async def heal(self, ctx: FaultContext) -> str:
        return f"started {await ctx.stack.add_instance()}"


class SacFailover(Fault):
    name = "sac-failover"
    description = "SIGKILL the active consumer of the run's first ordered (single active " \
                  "consumer, one at a time) endpoint: another instance takes over, per-key " \
                  "order is preserved"
    hold_s = 2.0

    def overrides(self, profile: Profile, kinds: tuple[str, ...]) -> dict[str, dict[str, Any]]:
        ordered_queue(profile, kinds)  # refused up front where there is none
        return {}

    async def apply(self, ctx: FaultContext) -> str:
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

    async def heal(self, ctx: FaultContext) -> str:
        return f"started {await ctx.stack.add_instance()}"


class CloseConnections(Fault):
    name = "close-connections"
    description = "the broker force-closes every connection of the run's vhost"
    hold_s = 0.0
    thresholds = {"rate_ratio_min": 0.95}  # publishes in flight at the close may be reported

    async def apply(self, ctx: FaultContext) -> str:
        conns = await ctx.management.connections()
        for c in conns:
            await ctx.management.close_connection(c["name"])
        return f"closed {len(conns)} connections through the management API"


# --- the broker ------------------------------------------------------------------------------


class BrokerRestart(Fault):
    name = "broker-restart"
    description = "rabbitmqctl stop_app, 3 s down, start_app: durable quorum queues keep their " \
                  "messages"
    hold_s = 3.0
    thresholds = {"rate_ratio_min": 0.6}  # the API answers 503 while the broker is down

    async def apply(self, ctx: FaultContext) -> str:
        await asyncio.to_thread(rabbitmqctl, ctx, self.target, "stop_app")
        return "rabbitmqctl stop_app"

    async def heal(self, ctx: FaultContext) -> str:
        await asyncio.to_thread(rabbitmqctl, ctx, self.target, "start_app")
        await asyncio.to_thread(rabbitmqctl, ctx, self.target, "await_startup", "--timeout",
                                "60")
        return "rabbitmqctl start_app"


class MemoryAlarm(Fault):
    name = "memory-alarm"
    description = "vm_memory_high_watermark set to a tiny value, then restored: publishers " \
                  "are blocked, then resume"
    nemesis = True
    # longer than the management API's statistics interval, so the sampled node record
    # shows the alarm too (a 4 s alarm fell between two refreshes in CI)
    hold_s = STATS_INTERVAL_S + 1.0
    thresholds = {"rate_ratio_min": 0.9}

    def __init__(self, target: Target | None = None) -> None:
        super().__init__(target)
        self.previous = ["0.4"]

    async def apply(self, ctx: FaultContext) -> str:
        out = await asyncio.to_thread(rabbitmqctl, ctx, self.target, "eval",
                                      "vm_memory_monitor:get_vm_memory_high_watermark().")
        text = out.strip()
        m = re.fullmatch(r"\{absolute,\s*(\d+)\}", text)
        self.previous = ["absolute", m.group(1)] if m else [text]
        await asyncio.to_thread(rabbitmqctl, ctx, self.target, "set_vm_memory_high_watermark",
                                "0.000001")
        return f"memory-alarm{_where(ctx, self.target)}: watermark 0.000001 (was " \
               f"{' '.join(self.previous)})"

    async def heal(self, ctx: FaultContext) -> str:
        await asyncio.to_thread(rabbitmqctl, ctx, self.target, "set_vm_memory_high_watermark",
                                *self.previous)
        return f"watermark restored to {' '.join(self.previous)}{_where(ctx, self.target)}"


class DiskAlarm(Fault):
    name = "disk-alarm"
    description = "disk_free_limit set far above the free disk, then restored: publishers " \
                  "are blocked, then resume"
    nemesis = True
    hold_s = STATS_INTERVAL_S + 1.0

    def __init__(self, target: Target | None = None) -> None:
        super().__init__(target)
        self.previous = "50MB"

    async def apply(self, ctx: FaultContext) -> str:
        out = await asyncio.to_thread(rabbitmqctl, ctx, self.target, "eval",
                                      "rabbit_disk_monitor:get_disk_free_limit().")
        if out.strip().isdigit():
            self.previous = out.strip()
        await asyncio.to_thread(rabbitmqctl, ctx, self.target, "set_disk_free_limit",
                                "1000000GB")
        return f"disk-alarm{_where(ctx, self.target)}: disk_free_limit 1000000GB"

    async def heal(self, ctx: FaultContext) -> str:
        await asyncio.to_thread(rabbitmqctl, ctx, self.target, "set_disk_free_limit",
                                self.previous)
        return f"disk_free_limit {self.previous}{_where(ctx, self.target)}"


# --- what the load meets -------------------------------------------------------------------


class Overflow(Fault):
    name = "overflow"
    description = "the webhook endpoint bounded to 50 messages (reject-publish) with a slow " \
                  "target and prefetch 1: publishes are nacked, counted and answered 503"
    hold_s = 0.0
    sink_latency_s = 0.2
    thresholds = {"rate_ratio_min": 0.0, "burst_ratio_min": 0.0}

    def overrides(self, profile: Profile, kinds: tuple[str, ...]) -> dict[str, dict[str, Any]]:
        # prefetch 1: x-max-length counts ready messages only, so with a prefetch of 100 x 3
        # instances the consumers' buffers would absorb the burst and nothing overflows
        queue = webhook_queue(profile, self.name)
        args = {**profile.endpoint(queue).queue_arguments, "x-max-length": 50,
                "x-overflow": "reject-publish"}
        return {queue: {"concurrency": 1, "prefetch": 1, "queue_arguments": args}}

    async def apply(self, ctx: FaultContext) -> str:
        return "none needed: the bound and the slow target were set before the run"


class WebhookFailures(Fault):
    name = "webhook-failures"
    description = "the webhook target fails 20% of calls: the breaker (15%) trips, retries and " \
                  "_error follow the policy, the breaker resets (windows scaled by 0.01)"
    hold_s = 0.0
    time_scale = 0.01
    sink_failure_ratio = 0.2
    thresholds = {"error_rate_max": 1.0, "burst_ratio_min": 0.0}

    async def apply(self, ctx: FaultContext) -> str:
        return "none needed: the sink fails 20% of calls for the whole run"


class Poison(Fault):
    name = "poison"
    description = "5 poison messages (handler always fails) of the run's first task kind " \
                  "whose endpoints have no circuit breaker, published mid-run: retried per " \
                  "policy, then in _error with MT-Fault-* headers"
    hold_s = 0.0
    time_scale = 0.01
    thresholds = {"error_rate_max": 1.0}
    count: ClassVar[int] = 5

    @staticmethod
    def kind(profile: Profile, kinds: tuple[str, ...]) -> str:
        """A kind whose poison shows the retry policy and _error, not a breaker tripping on
        it (which would fault the healthy messages behind it too): the first without a
        breaker, else the first."""
        for kind in kinds:
            if all(ep.breaker is None for ep in profile.consumers_of(profile.task(kind).message)):
                return kind
        return kinds[0]

    async def apply(self, ctx: FaultContext) -> str:
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


# --- a cluster's nodes ------------------------------------------------------------------------


class NodeLoss(Fault):
    name = "node-loss"
    description = "stop the cluster node that leads the busiest queues (rabbitmqctl stop_app): " \
                  "leaders move, publishers and consumers fail over to the other nodes; it " \
                  "comes back 8 s later (needs --cluster)"
    hold_s = 8.0
    thresholds = {"rate_ratio_min": 0.9}  # publishes in flight to the lost node may fail
    needs_cluster = True

    def __init__(self, target: Target | None = None) -> None:
        super().__init__(target)
        self._node: Any = None

    async def apply(self, ctx: FaultContext) -> str:
        from rabbitscale.broker import cluster

        c = ctx.cluster or cluster.require()
        queues = await ctx.management.queues()
        led: dict[str, float] = {}
        for q in queues:
            if q.get("leader") and not q["name"].endswith(("_error", "_skipped")):
                rate = (q.get("message_stats") or {}).get("publish_details", {}).get("rate", 0)
                led[q["leader"]] = led.get(q["leader"], 0.0) + 1.0 + float(rate or 0)
        busiest = max(led, key=lambda k: led[k]) if led else c.nodes[0].name
        self._node = c.node(busiest)
        await asyncio.to_thread(cluster.stop_node, self._node)
        leads = sum(1 for q in queues if q.get("leader") == busiest)
        return f"stopped {self._node.name} (leader of {leads} queues)"

    async def heal(self, ctx: FaultContext) -> str:
        from rabbitscale.broker import cluster

        assert self._node is not None
        await asyncio.to_thread(cluster.start_node, self._node)
        return f"started {self._node.name} again"


class NodeRestart(NodeLoss):
    name = "node-restart"
    description = "restart one cluster node (stop_app, start_app 2 s later): its connections " \
                  "fail over and come back (needs --cluster)"
    hold_s = 2.0


class PauseNode(Fault):
    name = "pause-node"
    description = "SIGSTOP a cluster node, SIGCONT when healed: a node that answers nothing " \
                  "(needs --cluster)"
    nemesis = True
    needs_cluster = True

    async def apply(self, ctx: FaultContext) -> str:
        from rabbitscale.broker import cluster

        n = ctx.node(self.target)
        return f"pause-node: SIGSTOP {n.short} (pid {cluster.signal_node(n, signal.SIGSTOP)})"

    async def heal(self, ctx: FaultContext) -> str:
        from rabbitscale.broker import cluster

        n = ctx.node(self.target)
        cluster.signal_node(n, signal.SIGCONT)
        return f"SIGCONT {n.short}"


class KillNode(Fault):
    name = "kill-node"
    description = "SIGKILL a cluster node, booted again when healed (needs --cluster)"
    nemesis = True
    needs_cluster = True

    async def apply(self, ctx: FaultContext) -> str:
        from rabbitscale.broker import cluster

        n = ctx.node(self.target)
        return f"kill-node: SIGKILL {n.short} (pid {cluster.signal_node(n, signal.SIGKILL)})"

    async def heal(self, ctx: FaultContext) -> str:
        from rabbitscale.broker import cluster

        n = ctx.node(self.target)
        await asyncio.to_thread(cluster.restart_node, n)
        return f"booted {n.short} again"


# --- the network ---------------------------------------------------------------------------


class _Firewall(Fault):
    """A fault made of iptables rules, owned by the run and the fault (removed by owner)."""

    nemesis = True
    needs_cluster = True
    needs_iptables: ClassVar[bool] = True

    def owner(self, ctx: FaultContext) -> str:
        """Whose rules they are: the run and the fault's place in its schedule."""
        return f"{ctx.run_name}-{self.tag or 'fault'}"

    async def heal(self, ctx: FaultContext) -> str:
        from rabbitscale.faults import partition

        return f"removed {await asyncio.to_thread(partition.remove, self.owner(ctx))} rules"


class Partition(_Firewall):
    """Node-to-node links cut (the target's pairs); subclasses choose the pairs."""

    name = "partition-halves"
    description = "the first half of the nodes cut from the rest (Jepsen's fixed halves)"

    @classmethod
    def minority(cls, order: list[int], rng: random.Random) -> list[int]:
        return order[:len(order) // 2]

    @classmethod
    def choose(cls, rng: random.Random, nodes: int, instances: int) -> Target:
        if nodes < 2:
            raise BadInput("--nemesis: partitions need a cluster of at least 2 nodes")
        side = set(cls.minority(list(range(nodes)), rng))
        return Target(tuple(sorted(side)), tuple((a, b) for a in range(nodes)
                                                 for b in range(a + 1, nodes)
                                                 if (a in side) != (b in side)))

    async def apply(self, ctx: FaultContext) -> str:
        from rabbitscale.faults import partition

        if ctx.cluster is None:
            raise RuntimeError("a partition cuts a local cluster's links (--cluster)")
        nodes = ctx.cluster.nodes
        rules = [r for a, b in self.target.cut for r in partition.link_rules(
            nodes[a].ip, nodes[a].dist, nodes[b].ip, nodes[b].dist, self.owner(ctx))]
        added = await asyncio.to_thread(partition.add, rules)
        pairs = ", ".join(f"{nodes[a].short}|{nodes[b].short}" for a, b in self.target.cut)
        return f"{self.name}: cut {pairs} ({added} rules)"


class PartitionRandomHalves(Partition):
    name = "partition-random-halves"
    description = "a random half of the nodes cut from the rest"

    @classmethod
    def minority(cls, order: list[int], rng: random.Random) -> list[int]:
        rng.shuffle(order)
        return sorted(order[:len(order) // 2])


class PartitionRandomNode(Partition):
    name = "partition-random-node"
    description = "one node at random cut from the others"

    @classmethod
    def minority(cls, order: list[int], rng: random.Random) -> list[int]:
        return [rng.randrange(len(order))]


class PartitionMajoritiesRing(Partition):
    name = "partition-majorities-ring"
    description = "each node sees a majority, no two the same one (Jepsen's majorities ring)"

    @classmethod
    def choose(cls, rng: random.Random, nodes: int, instances: int) -> Target:
        if nodes < 2:
            raise BadInput("--nemesis: partitions need a cluster of at least 2 nodes")
        order = list(range(nodes))
        rng.shuffle(order)
        reach = (nodes // 2 + 1) // 2  # ring neighbours each side: itself + 2 x reach >= m
        linked = {frozenset((order[i], order[(i + d) % nodes]))
                  for i in range(nodes) for d in range(1, reach + 1)}
        cut = [(a, b) for a in range(nodes) for b in range(a + 1, nodes)
               if frozenset((a, b)) not in linked]
        if not cut:  # 3 nodes: the ring is complete; break it into a path a-b-c, whose ends
            # each see a majority with b
            ends = sorted((order[0], order[-1]))
            cut = [(ends[0], ends[1])]
        return Target(tuple(sorted({x for pair in cut for x in pair})), tuple(sorted(cut)))


class ClientLink(_Firewall):
    name = "client-link"
    description = "the clients' AMQP link to one node cut (its connections fail over)"

    async def apply(self, ctx: FaultContext) -> str:
        from rabbitscale.faults import partition

        n = ctx.node(self.target)
        added = await asyncio.to_thread(partition.add, partition.client_rules(
            n.ip, n.amqp, self.owner(ctx)))
        return f"client-link: clients cut from {n.short} {n.ip}:{n.amqp} ({added} rules)"


FAULTS: dict[str, type[Fault]] = {f.name: f for f in (
    KillConsumer, CloseConnections, BrokerRestart, MemoryAlarm, DiskAlarm, Overflow,
    WebhookFailures, Poison, SacFailover, NodeLoss, NodeRestart, PauseNode, KillNode,
    PartitionRandomHalves, Partition, PartitionMajoritiesRing, PartitionRandomNode, ClientLink)}
PARTITIONS = tuple(n for n, f in FAULTS.items() if issubclass(f, Partition))
NEMESIS_KINDS = tuple(n for n, f in FAULTS.items() if f.nemesis)
SINGLE = tuple(sorted(n for n, f in FAULTS.items() if f.single))


def spelled(text: str) -> str:
    """The one spelling of a fault's name: ``kill_consumer`` is ``kill-consumer``."""
    return text.strip().lower().replace("_", "-")


def fault_class(text: str, flag: str = "--fault") -> type[Fault]:
    name = spelled(text)
    found = FAULTS.get(name)
    if found is None:
        raise BadInput(f"{flag}: unknown fault {text!r} (faults: {', '.join(SINGLE)})")
    return found


def needs_iptables(names: tuple[str, ...]) -> bool:
    return any(getattr(FAULTS[n], "needs_iptables", False) for n in names)
