"""The nemesis: a random, reproducible schedule of faults against a local cluster under load.

The partition kinds are those of RabbitMQ's Jepsen suite (random halves, fixed halves, a ring
of majorities, one node isolated), cut for real with iptables (broker/partition.py); beside
them a client-broker link cut, a node paused (SIGSTOP/SIGCONT), a node killed and booted again,
a consumer killed with -9, and memory and disk alarms. A seed fixes the schedule: the same
seed, duration and interval give the same faults on the same nodes.

Each fault is applied, held, healed; its start and heal, the nodes it hit and what the system
did (publishes refused or left unknown meanwhile, queue leaders moved, seconds until the
completion rate recovered) go in the run's summary and on the report's charts. ``heal_all``
runs on every exit path: nothing of a fault outlives its run.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import signal
import time
from dataclasses import asdict, dataclass, field
from typing import Any

from rabbitscale.core.errors import BadInput

PARTITIONS = ("partition-random-halves", "partition-halves", "partition-majorities-ring",
              "partition-random-node")
KINDS = (*PARTITIONS, "client-link", "pause-node", "kill-node", "kill-consumer",
         "memory-alarm", "disk-alarm")
DEFAULT_INTERVAL_S = 30.0
MAX_HOLD_S = 30.0  # a fault is held for half the interval, at most this
RECOVERED_FRACTION = 0.8  # throughput recovered: this share of the rate before the fault
NODES_BACK_S = 20.0  # after a heal, how long to wait for every node to run again


def parse_kinds(text: str | None) -> tuple[str, ...]:
    """``--nemesis`` alone: every kind; else a comma list of kinds, or ``partitions``."""
    if not text or text == "all":
        return KINDS
    out: list[str] = []
    for part in (p.strip() for p in text.split(",")):
        if part == "partitions":
            out.extend(PARTITIONS)
        elif part in KINDS:
            out.append(part)
        else:
            raise BadInput(f"--nemesis: unknown fault kind {part!r} (kinds: partitions, "
                           f"{', '.join(KINDS)})")
    return tuple(dict.fromkeys(out))


@dataclass
class Event:
    """One scheduled fault: when, for how long, and on which nodes (indexes)."""

    index: int
    kind: str
    at_s: float
    hold_s: float
    nodes: tuple[int, ...] = ()
    cut: tuple[tuple[int, int], ...] = ()  # node pairs a partition cuts
    applied: str = ""
    healed: str = ""
    applied_at_s: float | None = None
    healed_at_s: float | None = None
    effects: dict[str, Any] = field(default_factory=dict)

    def as_dict(self, names: tuple[str, ...]) -> dict[str, Any]:
        d = asdict(self)
        d["nodes"] = [names[i] for i in self.nodes]
        d["cut"] = [[names[a], names[b]] for a, b in self.cut]
        return d


def _cut(kind: str, count: int, rng: random.Random) -> tuple[tuple[int, ...],
                                                             tuple[tuple[int, int], ...]]:
    """The nodes a partition isolates (the minority side) and the pairs it cuts."""
    order = list(range(count))
    if kind == "partition-halves":  # the first half against the rest, as Jepsen's
        minority = order[:count // 2]
    elif kind == "partition-random-halves":
        rng.shuffle(order)
        minority = sorted(order[:count // 2])
    elif kind == "partition-random-node":
        minority = [rng.randrange(count)]
    else:  # majorities ring: each node sees a majority, no two the same one
        rng.shuffle(order)
        reach = (count // 2 + 1) // 2  # ring neighbours each side: itself + 2 x reach >= m
        linked = {frozenset((order[i], order[(i + d) % count]))
                  for i in range(count) for d in range(1, reach + 1)}
        cut = [(a, b) for a in range(count) for b in range(a + 1, count)
               if frozenset((a, b)) not in linked]
        if not cut:  # 3 nodes: the ring is complete; break it into a path a-b-c, whose ends
            # each see a majority with b
            ends = sorted((order[0], order[-1]))
            cut = [(ends[0], ends[1])]
        return tuple(sorted({x for pair in cut for x in pair})), tuple(sorted(cut))
    side = set(minority)
    return tuple(minority), tuple((a, b) for a in range(count) for b in range(a + 1, count)
                                  if (a in side) != (b in side))


def schedule(kinds: tuple[str, ...], nodes: int, duration_s: float, interval_s: float,
             seed: int, instances: int = 1) -> list[Event]:
    """Faults every ``interval_s`` from half an interval in, each held for half an interval
    (at most MAX_HOLD_S) and healed before the next; the last healed before the load ends."""
    if nodes < 2 and any(k in PARTITIONS for k in kinds):
        raise BadInput("--nemesis: partitions need a cluster of at least 2 nodes")
    rng = random.Random(seed)
    hold = min(interval_s / 2, MAX_HOLD_S)
    events: list[Event] = []
    t = interval_s / 2
    while t + hold < duration_s:
        kind = rng.choice(kinds)
        ev = Event(len(events) + 1, kind, round(t, 3), round(hold, 3))
        if kind in PARTITIONS:
            ev.nodes, ev.cut = _cut(kind, nodes, rng)
        elif kind == "kill-consumer":
            ev.nodes = (rng.randrange(max(1, instances)),)  # a consumer instance, not a node
        else:
            ev.nodes = (rng.randrange(nodes),)
        events.append(ev)
        t += interval_s
    return events


class Nemesis:
    """Applies and heals the schedule's faults on the running local cluster."""

    def __init__(self, cluster: Any, events: list[Event], owner: str, stack: Any = None,
                 management: Any = None, say: Any = print) -> None:
        self.cluster, self.events, self.owner = cluster, events, owner
        self.stack, self.management, self.say = stack, management, say
        self.names = tuple(n.name for n in cluster.nodes)
        self._active: list[Event] = []
        self._consumer_victims: dict[int, Any] = {}

    # --- one fault -------------------------------------------------------------------------

    def _rule_owner(self, ev: Event) -> str:
        return f"{self.owner}-{ev.index}"

    async def apply(self, ev: Event) -> str:
        from rabbitscale.broker import cluster as cl
        from rabbitscale.broker import partition

        nodes = self.cluster.nodes
        self._active.append(ev)
        if ev.kind in PARTITIONS:
            rules = [r for a, b in ev.cut for r in partition.link_rules(
                nodes[a].ip, nodes[a].dist, nodes[b].ip, nodes[b].dist, self._rule_owner(ev))]
            added = await asyncio.to_thread(partition.add, rules)
            pairs = ", ".join(f"{nodes[a].short}|{nodes[b].short}" for a, b in ev.cut)
            return f"{ev.kind}: cut {pairs} ({added} rules)"
        n = nodes[ev.nodes[0]] if ev.kind != "kill-consumer" else None
        if ev.kind == "client-link":
            assert n is not None
            added = await asyncio.to_thread(partition.add, partition.client_rules(
                n.ip, n.amqp, self._rule_owner(ev)))
            return f"client-link: clients cut from {n.short} {n.ip}:{n.amqp} ({added} rules)"
        if ev.kind == "pause-node":
            assert n is not None
            return f"pause-node: SIGSTOP {n.short} (pid {cl.signal_node(n, signal.SIGSTOP)})"
        if ev.kind == "kill-node":
            assert n is not None
            return f"kill-node: SIGKILL {n.short} (pid {cl.signal_node(n, signal.SIGKILL)})"
        if ev.kind == "kill-consumer":
            procs = self.stack.procs
            live = [p for p in procs if p.returncode is None]
            proc = live[ev.nodes[0] % len(live)] if live else None
            if proc is None:
                return "kill-consumer: no consumer running"
            proc.send_signal(signal.SIGKILL)
            return f"kill-consumer: SIGKILL consumer-{procs.index(proc) + 1} (pid {proc.pid})"
        assert n is not None
        if ev.kind == "memory-alarm":
            await asyncio.to_thread(self._ctl, n, "set_vm_memory_high_watermark", "0.000001")
            return f"memory-alarm on {n.short}: watermark 0.000001"
        await asyncio.to_thread(self._ctl, n, "set_disk_free_limit", "1000000GB")
        return f"disk-alarm on {n.short}: disk_free_limit 1000000GB"

    async def heal(self, ev: Event) -> str:
        from rabbitscale.broker import cluster as cl
        from rabbitscale.broker import partition

        if ev in self._active:
            self._active.remove(ev)
        nodes = self.cluster.nodes
        if ev.kind in PARTITIONS or ev.kind == "client-link":
            removed = await asyncio.to_thread(partition.remove, self._rule_owner(ev))
            return f"removed {removed} rules"
        if ev.kind == "kill-consumer":
            return f"started {await self.stack.add_instance()}"
        n = nodes[ev.nodes[0]]
        if ev.kind == "pause-node":
            cl.signal_node(n, signal.SIGCONT)
            return f"SIGCONT {n.short}"
        if ev.kind == "kill-node":
            await asyncio.to_thread(cl.restart_node, n)
            return f"booted {n.short} again"
        if ev.kind == "memory-alarm":
            await asyncio.to_thread(self._ctl, n, "set_vm_memory_high_watermark", "0.4")
            return f"watermark 0.4 on {n.short}"
        await asyncio.to_thread(self._ctl, n, "set_disk_free_limit", "50MB")
        return f"disk_free_limit 50MB on {n.short}"

    @staticmethod
    def _ctl(n: Any, *args: str) -> None:
        from rabbitscale.broker import cluster as cl

        done = cl.ctl(n, *args, timeout=60)
        if done.returncode != 0:
            raise RuntimeError(f"rabbitmqctl -n {n.name} {' '.join(args)}: "
                               f"{(done.stderr or done.stdout).strip()[:200]}")

    async def heal_all(self) -> None:
        """Heal whatever is still applied (the run ended or was interrupted mid-fault)."""
        for ev in list(self._active):
            with contextlib.suppress(Exception):
                ev.healed = await self.heal(ev)
        from rabbitscale.broker import partition

        for ev in self.events:  # a rule whose heal failed half-way
            if ev.kind in PARTITIONS or ev.kind == "client-link":
                with contextlib.suppress(Exception):
                    await asyncio.to_thread(partition.remove, self._rule_owner(ev))

    # --- the schedule ----------------------------------------------------------------------

    async def leaders(self) -> dict[str, str]:
        """queue -> leader node, read through the management API (empty when it does not
        answer in time: a paused node can hold a request)."""
        if self.management is None:
            return {}
        try:
            queues = await asyncio.wait_for(self.management.queues(), 5)
        except Exception:
            return {}
        return {q["name"]: q.get("leader") or q.get("node") or "" for q in queues}

    async def _await_nodes(self, wait_s: float) -> tuple[float | None, list[str]]:
        """Seconds after the heal until every node's broker runs again (a node paused by
        pause_minority resumes a few seconds after its partition heals), or None and the
        nodes still down once ``wait_s`` is over."""
        t0 = time.monotonic()
        while True:
            down = await asyncio.to_thread(self._stopped)
            if not down:
                return round(time.monotonic() - t0, 1), []
            if time.monotonic() - t0 >= wait_s:
                return None, down
            await asyncio.sleep(2.0)

    def _stopped(self) -> list[str]:
        """Nodes whose broker does not run after a heal (e.g. one paused by pause_minority
        that did not resume): reported, not repaired, as Jepsen does."""
        from rabbitscale.broker import cluster as cl

        out = []
        for n in self.cluster.nodes:
            try:
                done = cl.ctl(n, "eval", "rabbit:is_running().", timeout=15)
                running = done.returncode == 0 and done.stdout.strip() == "true"
            except Exception:
                running = False
            if not running:
                out.append(n.name)
        return out

    def _publisher_counts(self) -> dict[str, int]:
        pub = getattr(self.stack, "_publisher", None) if self.stack else None
        return dict(pub.stats.outcomes) if pub else {}

    async def run(self, start_at: float, on_event: Any = None) -> None:
        """Apply and heal each event at its time from ``start_at`` (epoch seconds)."""
        try:
            for ev in self.events:
                await asyncio.sleep(max(0.0, start_at + ev.at_s - time.time()))
                before, pubs = await self.leaders(), self._publisher_counts()
                ev.applied_at_s = round(time.time() - start_at, 2)
                try:
                    ev.applied = await self.apply(ev)
                except Exception as exc:  # reported in the run, judged by the ledger
                    ev.applied = f"failed: {type(exc).__name__}: {exc}"
                self.say(f"  nemesis {ev.index}: {ev.applied}")
                if on_event:
                    on_event(ev, "inject", ev.applied)
                await asyncio.sleep(max(0.0, start_at + ev.at_s + ev.hold_s - time.time()))
                ev.healed_at_s = round(time.time() - start_at, 2)
                try:
                    ev.healed = await self.heal(ev)
                except Exception as exc:
                    ev.healed = f"failed: {type(exc).__name__}: {exc}"
                self.say(f"  nemesis {ev.index}: healed: {ev.healed}")
                if on_event:
                    on_event(ev, "heal", ev.healed)
                after, pubs_after = await self.leaders(), self._publisher_counts()
                nxt = next((e.at_s for e in self.events if e.index == ev.index + 1), None)
                wait_s = NODES_BACK_S if nxt is None else \
                    min(NODES_BACK_S, start_at + nxt - time.time() - 1)
                back, down = await self._await_nodes(wait_s)
                ev.effects["nodes_back_s"], ev.effects["not_running_after_heal"] = back, down
                ev.effects["leaders_moved"] = sum(  # None: the management API did not answer
                    1 for q, node in after.items() if before.get(q) and node != before[q]) \
                    if before and after else None
                ev.effects["publishes"] = {k: pubs_after.get(k, 0) - pubs.get(k, 0)
                                           for k in pubs_after
                                           if pubs_after.get(k, 0) - pubs.get(k, 0)}
        finally:
            await self.heal_all()

    def summary(self, per_second: dict[int, int], start_at: float, load_s: float
                ) -> dict[str, Any]:
        """The events with their recovery times, from the completions per second (while the
        load ran: ``load_s`` from ``start_at``)."""
        out = []
        for ev in self.events:
            if ev.applied_at_s is None:
                continue
            fault_at = int(start_at + ev.applied_at_s)
            healed_at = int(start_at + (ev.healed_at_s or ev.applied_at_s))
            ev.effects["recovery_s"] = recovery_s(per_second, fault_at, healed_at)
            ev.effects["degraded_s"] = degraded_s(per_second, fault_at, healed_at,
                                                  until=int(start_at + load_s))
            out.append(ev.as_dict(self.names))
        recovered = [e["effects"]["recovery_s"] for e in out
                     if e["effects"]["recovery_s"] is not None]
        return {"events": out, "recovery_s_max": max(recovered) if recovered else None,
                "degraded_s_total": sum(e["effects"]["degraded_s"] for e in out),
                "not_recovered": sum(1 for e in out if e["effects"]["recovery_s"] is None)}


def recovery_s(per_second: dict[int, int], fault_at: int, healed_at: int,
               baseline_s: int = 10, window_s: int = 3) -> float | None:
    """Seconds from the heal until completions per second, averaged over ``window_s``,
    are back to RECOVERED_FRACTION of their mean over the ``baseline_s`` before the fault.
    0 where the fault never pulled the rate below that; None where it never came back."""
    level = _level(per_second, fault_at, baseline_s)
    if level <= 0:
        return 0.0
    last = max(per_second) if per_second else healed_at
    for t in range(healed_at, last - window_s + 2):
        if sum(per_second.get(t + i, 0) for i in range(window_s)) / window_s >= level:
            return float(max(0, t - healed_at))
    return None


def _level(per_second: dict[int, int], fault_at: int, baseline_s: int = 10) -> float:
    base = [per_second.get(t, 0) for t in range(fault_at - baseline_s, fault_at)]
    return RECOVERED_FRACTION * sum(base) / max(1, len(base))


def degraded_s(per_second: dict[int, int], fault_at: int, healed_at: int,
               after_s: int = 60, until: int | None = None) -> int:
    """Seconds from the fault's start to a minute after its heal (at most ``until``, the
    load's end) in which fewer messages finished than RECOVERED_FRACTION of the rate before
    it: the outage as users saw it."""
    level = _level(per_second, fault_at)
    end = healed_at + after_s if until is None else min(healed_at + after_s, until)
    return sum(1 for t in range(fault_at, end) if per_second.get(t, 0) < level)
