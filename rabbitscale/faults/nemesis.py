"""Schedules of fault objects and their injection: the nemesis (a random, reproducible schedule
of a cluster's faults under load) and a single ``--fault`` (one event) go through the same
``Injector``: at each event's time ``fault.apply(ctx)``, held, ``fault.heal(ctx)``.

A seed fixes the nemesis' schedule: the same seed, duration and interval give the same faults
on the same nodes. Each fault's start and heal, the nodes it hit and, on a cluster, what the
system did (publishes refused or left unknown meanwhile, queue leaders moved, seconds until
every node runs again and until the completion rate recovered) go in the run's summary and on
the report's charts. ``heal_all`` runs on every exit path: nothing of a fault outlives its
run.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from rabbitscale.core.errors import BadInput
from rabbitscale.faults.base import Fault, FaultContext
from rabbitscale.faults.catalogue import FAULTS, NEMESIS_KINDS, PARTITIONS, spelled

KINDS = NEMESIS_KINDS
DEFAULT_INTERVAL_S = 30.0
MAX_HOLD_S = 30.0  # a fault is held for half the interval, at most this
RECOVERED_FRACTION = 0.8  # throughput recovered: this share of the rate before the fault
NODES_BACK_S = 20.0  # after a heal, how long to wait for every node to run again


def parse_kinds(text: str | None) -> tuple[str, ...]:
    """``--nemesis`` alone: every kind; else a comma list of kinds, or ``partitions``."""
    if not text or text == "all":
        return KINDS
    out: list[str] = []
    for part in (spelled(p) for p in text.split(",")):
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
    """One scheduled fault object: when, for how long, and what it did."""

    index: int
    fault: Fault
    at_s: float
    hold_s: float
    applied: str = ""
    healed: str = ""
    applied_at_s: float | None = None
    healed_at_s: float | None = None
    effects: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.fault.tag = str(self.index)

    @property
    def kind(self) -> str:
        return self.fault.name

    @property
    def nodes(self) -> tuple[int, ...]:
        return self.fault.target.nodes

    @property
    def cut(self) -> tuple[tuple[int, int], ...]:
        return self.fault.target.cut

    def as_dict(self, names: tuple[str, ...]) -> dict[str, Any]:
        node_names = [names[i] for i in self.nodes] if self.kind != "kill-consumer" else \
            [f"consumer-{i + 1}" for i in self.nodes]
        return {"index": self.index, "kind": self.kind, "at_s": self.at_s,
                "hold_s": self.hold_s, "nodes": node_names,
                "cut": [[names[a], names[b]] for a, b in self.cut], "applied": self.applied,
                "healed": self.healed, "applied_at_s": self.applied_at_s,
                "healed_at_s": self.healed_at_s, "effects": self.effects}


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
        cls = FAULTS[rng.choice(kinds)]
        events.append(Event(len(events) + 1, cls(cls.choose(rng, nodes, instances)),
                            round(t, 3), round(hold, 3)))
        t += interval_s
    return events


def single(fault: Fault, duration_s: float) -> list[Event]:
    """``--fault``: the one fault at its share of the load, held its own time."""
    return [Event(1, fault, round(duration_s * fault.at_fraction, 3), fault.hold_s)]


OnEvent = Callable[[Event, str, str], None]  # (event, "inject" | "heal", what it said)


class Injector:
    """Applies and heals a schedule's fault objects from ``start_at``; on a cluster it also
    observes what each did (leaders moved, publishes refused, nodes back)."""

    def __init__(self, events: list[Event], ctx: FaultContext, label: str = "fault") -> None:
        self.events, self.ctx, self.label = events, ctx, label
        self.names = tuple(n.name for n in ctx.cluster.nodes) if ctx.cluster else ()
        self._active: list[Event] = []

    async def _apply(self, ev: Event) -> None:
        ev.applied_at_s = round(time.time() - self._start, 2)
        self._active.append(ev)
        try:
            ev.applied = await ev.fault.apply(self.ctx)
        except Exception as exc:  # reported in the run, judged by the ledger
            ev.applied = f"failed: {type(exc).__name__}: {exc}"

    async def _heal(self, ev: Event) -> None:
        ev.healed_at_s = round(time.time() - self._start, 2)
        if ev in self._active:
            self._active.remove(ev)
        try:
            ev.healed = await ev.fault.heal(self.ctx)
        except Exception as exc:
            ev.healed = f"failed: {type(exc).__name__}: {exc}"

    async def heal_all(self) -> None:
        """Heal whatever is still applied (the run ended or was interrupted mid-fault)."""
        for ev in list(self._active):
            with contextlib.suppress(Exception):
                await self._heal(ev)

    async def run(self, start_at: float, on_event: OnEvent | None = None) -> None:
        """Apply and heal each event at its time from ``start_at`` (epoch seconds)."""
        self._start = start_at
        try:
            for ev in self.events:
                await asyncio.sleep(max(0.0, start_at + ev.at_s - time.time()))
                before = await self._observe()
                await self._apply(ev)
                self.ctx.say(f"  {self.label} {ev.index}: {ev.applied}")
                if on_event:
                    on_event(ev, "inject", ev.applied)
                await asyncio.sleep(max(0.0, start_at + ev.at_s + ev.hold_s - time.time()))
                await self._heal(ev)
                self.ctx.say(f"  {self.label} {ev.index}: healed: {ev.healed}")
                if on_event:
                    on_event(ev, "heal", ev.healed)
                await self._effects(ev, before, start_at)
        finally:
            await self.heal_all()

    # --- what a fault did, on a cluster ----------------------------------------------------

    async def _observe(self) -> tuple[dict[str, str], dict[str, int]]:
        if self.ctx.cluster is None:
            return {}, {}
        return await self.leaders(), self._publisher_counts()

    async def _effects(self, ev: Event, before: tuple[dict[str, str], dict[str, int]],
                       start_at: float) -> None:
        if self.ctx.cluster is None:
            return
        leaders, pubs = before
        after, pubs_after = await self.leaders(), self._publisher_counts()
        nxt = next((e.at_s for e in self.events if e.index == ev.index + 1), None)
        wait_s = NODES_BACK_S if nxt is None else \
            min(NODES_BACK_S, start_at + nxt - time.time() - 1)
        back, down = await self._await_nodes(wait_s)
        ev.effects["nodes_back_s"], ev.effects["not_running_after_heal"] = back, down
        ev.effects["leaders_moved"] = sum(  # None: the management API did not answer
            1 for q, node in after.items() if leaders.get(q) and node != leaders[q]) \
            if leaders and after else None
        ev.effects["publishes"] = {k: pubs_after.get(k, 0) - pubs.get(k, 0)
                                   for k in pubs_after
                                   if pubs_after.get(k, 0) - pubs.get(k, 0)}

    async def leaders(self) -> dict[str, str]:
        """queue -> leader node, read through the management API (empty when it does not
        answer in time: a paused node can hold a request)."""
        try:
            queues = await asyncio.wait_for(self.ctx.management.queues(), 5)
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
        assert self.ctx.cluster is not None
        for n in self.ctx.cluster.nodes:
            try:
                done = cl.ctl(n, "eval", "rabbit:is_running().", timeout=15)
                running = done.returncode == 0 and done.stdout.strip() == "true"
            except Exception:
                running = False
            if not running:
                out.append(n.name)
        return out

    def _publisher_counts(self) -> dict[str, int]:
        return self.ctx.stack.publish_outcomes()

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
