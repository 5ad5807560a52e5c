"""The fault interface. Every ``--fault`` and every nemesis kind is a ``Fault``: ``apply(ctx)``
does it and says what it did, ``heal(ctx)`` undoes it and says so. A fault object knows where
it strikes (``target``: cluster nodes, the pairs a partition cuts, a consumer instance), which
the nemesis chooses (``choose``) and ``--fault`` leaves to the fault.

As ``--fault NAME`` a fault may also change the run before it starts (endpoint overrides, the
webhook sink's failures and latency, a time scale for retry and breaker windows, thresholds it
is *meant* to break), strikes at ``at_fraction`` of the load and heals ``hold_s`` later.
"""

from __future__ import annotations

import abc
import random
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar

if TYPE_CHECKING:  # the CLI reads the catalogue for its choices: keep this module light
    from rabbitscale.broker.cluster import Cluster, Node
    from rabbitscale.broker.management import Management
    from rabbitscale.harness.stack import Stack
    from rabbitscale.topology.profiles import Profile


@dataclass(frozen=True)
class Target:
    """Where a fault strikes: cluster node indexes (for ``kill-consumer``, a consumer
    instance's index), and the node pairs a partition cuts."""

    nodes: tuple[int, ...] = ()
    cut: tuple[tuple[int, int], ...] = ()


@dataclass
class FaultContext:
    """What a fault acts on: the run's stack and broker, the local cluster when the run has
    one, and where it reports (``say``). ``extra_published`` counts confirmed publishes the
    fault made itself (the ledger owes them too)."""

    stack: Stack
    management: Management
    run_name: str
    say: Callable[[str], None] = print
    kinds: tuple[str, ...] = ()  # the task kinds the run sends
    cluster: Cluster | None = None
    extra_published: int = 0
    notes: list[str] = field(default_factory=list)

    def node(self, target: Target) -> Node:
        """The cluster node a node fault strikes."""
        if self.cluster is None or not target.nodes:
            raise RuntimeError("this fault acts on a node of the local cluster (--cluster)")
        return self.cluster.nodes[target.nodes[0]]


class Fault(abc.ABC):
    """One fault; subclasses are listed once, in faults/catalogue.py."""

    name: ClassVar[str] = ""
    description: ClassVar[str] = ""
    single: ClassVar[bool] = True  # offered to --fault
    nemesis: ClassVar[bool] = False  # offered to --nemesis (a cluster's faults)
    needs_cluster: ClassVar[bool] = False
    # as --fault: when it strikes, how long it holds, what it changes before the run
    at_fraction: ClassVar[float] = 0.4
    hold_s: ClassVar[float] = 3.0
    thresholds: ClassVar[Mapping[str, float]] = {}
    time_scale: ClassVar[float] = 1.0
    sink_failure_ratio: ClassVar[float] = 0.0
    sink_latency_s: ClassVar[float] = 0.0

    def __init__(self, target: Target | None = None) -> None:
        self.target = target or Target()
        self.tag = ""  # its place in a schedule (the event's index), set by the scheduler

    def overrides(self, profile: Profile, kinds: tuple[str, ...]) -> dict[str, dict[str, Any]]:
        """Endpoint tables this fault applies to the profile before a --fault run."""
        return {}

    @classmethod
    def choose(cls, rng: random.Random, nodes: int, instances: int) -> Target:
        """Where the nemesis strikes with it: one node at random."""
        return Target((rng.randrange(nodes),))

    @abc.abstractmethod
    async def apply(self, ctx: FaultContext) -> str:
        """Do it; the text says what was done."""

    async def heal(self, ctx: FaultContext) -> str:
        """Undo it; the text says what was undone."""
        return "nothing to heal"
