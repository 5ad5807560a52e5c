"""The broker side of the capacity model: memory, disk and network for a backlog of quorum
queue messages, and the broker's publish ceiling. Pure functions, units in their names.

How a quorum queue holds a backlog (RabbitMQ 3.10-3.13): every message is appended to the
node's Raft write-ahead log; its body stays in memory (the WAL's mem tables, counted as
``binary``) until the WAL rolls over at ``raft.wal_max_size_bytes`` (512 MiB by default) and
the entries are written to per-queue segment files. So node memory for a backlog is bounded by
the WAL, not by the number of messages: it climbs with the data written, drops at a rollover,
and during a rollover the next WAL fills while the previous tables are still being flushed.
The model takes the peak the node can reach, not a sample:

    memory growth = min(data, WAL x (1 + overlap)) x allocation overhead + N x index bytes
    disk          = N x (message + segment overhead) (+ a WAL once it has rolled over)
                    x replicas on this disk

The first term of disk is what a node settles at once a fill is over (every message once, in a
segment or in the WAL not yet rolled); the WAL on top is the peak while a rollover is flushed,
which a run catches or not depending on when its last rollover fell.

Every default below is a measurement made by this project (docs/benchmarks.md, "Broker
memory and disk for a backlog"): RabbitMQ 3.10.8, Erlang/OTP 25, a fresh node on a 2-core,
24 GiB VM; `rabbitscale plan --calibrate RUN` fits them again from any backlog run and
``--calibration FILE`` plans with the fitted ones.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields
from typing import Any

from rabbitscale.core.errors import BadInput

WAL_MAX_BYTES = 512 * 2**20  # raft.wal_max_size_bytes default
AMQP_FRAMING_BYTES = 250  # method + header frames and properties per publish or delivery


MEASURED_ON = "3.10.8"
ASSUMED = ("rollover_overlap",)  # coefficients no run here measured (labelled assumptions)


def _minor(version: str) -> tuple[str, ...]:
    return tuple(str(version).strip().split(".")[:2])


@dataclass(frozen=True)
class BrokerCoefficients:
    """The measured constants of the broker model (see the module docstring)."""

    alloc_overhead: float = 1.25  # RSS growth / bodies held: 1.13 (30k) .. 1.30 (100k) seen
    # an assumption, not a measurement: the share of a WAL still held while the next one
    # fills; our runs at ~5,400 msg/s never showed more than one WAL held, faster ones may
    rollover_overlap: float = 0.5
    index_bytes_per_message: float = 200.0  # quorum_ets + queue process per queued message
    # on disk per message beyond its bytes on the wire, from the disk a node settled at after
    # filling 100,000 x 10 KB: 490 B and 400 B in two runs
    segment_overhead_bytes: float = 450.0
    baseline_bytes: float = 161e6  # a fresh node's memory (rss) before any message
    publish_ceiling_bytes_per_s: float = 70e6  # confirmed, 1 replica, 10 KB (bench/replicas.py)
    replica_ceiling_factor: float = 0.52  # ceiling 3 replicas / 1, one machine (ditto)
    source: str = "measured: RabbitMQ 3.10.8, 2-core VM, fresh node (docs/benchmarks.md)"
    rabbitmq_version: str = MEASURED_ON  # the version the figures were measured on

    def for_version(self, broker_version: str | None) -> dict[str, Any]:
        """Which figures were measured for ``broker_version`` and which are carried over
        untested: a coefficient holds for the minor version it was measured on; quorum queue
        storage and memory accounting change between minors (3.13's segment format, 4.0's
        checkpoints and default delivery limit), so on any other it is carried over."""
        names = [f.name for f in fields(self)
                 if f.name not in ("source", "rabbitmq_version", *ASSUMED)]
        same = broker_version is not None and \
            _minor(broker_version) == _minor(self.rabbitmq_version)
        return {"measured_on": self.rabbitmq_version, "broker_version": broker_version,
                "assumed": list(ASSUMED),
                "measured": names if same else [],
                "carried_over_untested": [] if same or broker_version is None else names,
                "note": (f"measured on RabbitMQ {self.rabbitmq_version}"
                         + ("" if broker_version is None else
                            f"; the broker runs {broker_version}: "
                            + ("they hold for it" if same else
                               "every coefficient is carried over untested")))}

    @classmethod
    def from_dict(cls, broker: Any, where: str) -> BrokerCoefficients:
        """The ``broker`` table of a calibration file (`plan --calibrate RUN --out FILE`);
        every value checked, one line naming the key otherwise."""
        if not isinstance(broker, dict):
            raise BadInput(f"{where}: 'broker' must be a table of coefficients")
        known = {f.name for f in fields(cls)}
        values: dict[str, Any] = {}
        for key, value in broker.items():
            if key not in known:
                raise BadInput(f"{where}: broker.{key}: unknown coefficient")
            if key in ("source", "rabbitmq_version"):
                values[key] = str(value)
            elif isinstance(value, bool) or not isinstance(value, int | float) or value < 0 \
                    or math.isnan(value) or math.isinf(value):
                raise BadInput(f"{where}: broker.{key}: expected a non-negative number, got "
                               f"{value!r}")
            else:
                values[key] = float(value)
        return cls(**values)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


DEFAULT = BrokerCoefficients()


def bodies_in_memory_bytes(messages: float, message_bytes: float,
                           wal_max_bytes: float = WAL_MAX_BYTES,
                           c: BrokerCoefficients = DEFAULT) -> float:
    """Message bodies the node holds in memory at worst: all of them until the WAL rolls over,
    then at most a WAL and the share of the previous one still being flushed."""
    data = messages * message_bytes
    if data <= wal_max_bytes:
        return data
    return min(data, wal_max_bytes * (1.0 + c.rollover_overlap))


def memory_growth_bytes(messages: float, message_bytes: float,
                        wal_max_bytes: float = WAL_MAX_BYTES,
                        c: BrokerCoefficients = DEFAULT) -> float:
    """Peak node memory a backlog adds, for one node holding one replica of each queue."""
    return (bodies_in_memory_bytes(messages, message_bytes, wal_max_bytes, c)
            * c.alloc_overhead + messages * c.index_bytes_per_message)


def node_memory_bytes(messages: float, message_bytes: float,
                      wal_max_bytes: float = WAL_MAX_BYTES, c: BrokerCoefficients = DEFAULT,
                      connections: int = 0, channels: int = 0) -> float:
    """Peak node memory: baseline, the backlog, connections (~100 KB) and channels (~40 KB),
    the last two from RabbitMQ's documented per-object cost."""
    return (c.baseline_bytes + memory_growth_bytes(messages, message_bytes, wal_max_bytes, c)
            + connections * 100e3 + channels * 40e3)


def stored_bytes(messages: float, message_bytes: float, replicas_on_disk: int = 1,
                 c: BrokerCoefficients = DEFAULT) -> float:
    """Disk the backlog holds once written: every message once, in a segment file or in the
    WAL not yet rolled over, for every replica that shares this disk. What a node settles at
    when the fill is over, whatever the moment of the last rollover."""
    return messages * (message_bytes + c.segment_overhead_bytes) * replicas_on_disk


def disk_bytes(messages: float, message_bytes: float, replicas_on_disk: int = 1,
               wal_max_bytes: float = WAL_MAX_BYTES, c: BrokerCoefficients = DEFAULT) -> float:
    """Disk the backlog needs at its peak, for every replica that shares this disk (a local
    cluster puts all of them on one). Until the WAL first rolls over everything is in the WAL;
    after that, segments for every message plus, while a rollover is flushed, the whole WAL
    beside them (a transient: a run's peak shows anything from none of it to all of it)."""
    stored = stored_bytes(messages, message_bytes, 1, c)
    if messages * message_bytes <= wal_max_bytes:
        return stored * replicas_on_disk
    return (stored + wal_max_bytes) * replicas_on_disk


def network_bps(rate_per_s: float, message_bytes: float, replicas: int = 1) -> dict[str, float]:
    """Bits per second for ``rate_per_s`` messages published and consumed: clients in and
    out, and what the leader sends to its followers (replication)."""
    wire = (message_bytes + AMQP_FRAMING_BYTES) * 8
    return {"in": rate_per_s * wire, "out": rate_per_s * wire,
            "replication": rate_per_s * message_bytes * 8 * max(0, replicas - 1)}


def publish_ceiling_per_s(message_bytes: float, replicas: int = 1,
                          c: BrokerCoefficients = DEFAULT) -> float:
    """Confirmed publishes per second the broker takes, from the measured bytes ceiling."""
    factor = c.replica_ceiling_factor if replicas > 1 else 1.0
    return c.publish_ceiling_bytes_per_s * factor / max(1.0, message_bytes)


def fit(peak_growth_bytes: float, messages: float, message_bytes: float,
        stored_disk_bytes: float | None, base: BrokerCoefficients = DEFAULT,
        baseline_bytes: float | None = None,
        publish_rate_per_s: float | None = None) -> BrokerCoefficients:
    """Coefficients that reproduce a measured backlog: the allocation overhead from the peak
    memory growth (the peak the model bounds), the segment overhead from the disk the node
    settled at after the fill (the peak depends on when the last WAL rolled over)."""
    held = bodies_in_memory_bytes(messages, message_bytes, WAL_MAX_BYTES, base)
    alloc = base.alloc_overhead
    if held > 0:
        alloc = max(1.0, (peak_growth_bytes - messages * base.index_bytes_per_message) / held)
    segment = base.segment_overhead_bytes
    if stored_disk_bytes and messages:
        segment = max(0.0, stored_disk_bytes / messages - message_bytes)
    values = {**asdict(base), "alloc_overhead": round(alloc, 4),
              "segment_overhead_bytes": round(segment, 1),
              "source": "calibrated from a backlog run"}
    if baseline_bytes:
        values["baseline_bytes"] = float(baseline_bytes)
    if publish_rate_per_s:
        values["publish_ceiling_bytes_per_s"] = round(publish_rate_per_s * message_bytes, 1)
    return BrokerCoefficients(**values)
