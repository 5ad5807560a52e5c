"""``summary.json``: what every kind of run concluded, as one typed model.

The engine writes it (engine/output.py), the report, compare, JUnit, calibration, find-max
and sweep read it (``read``); ``rabbitscale schema summary`` prints its JSON Schema and
docs/run-directory.md is checked against it (tests/unit/test_results.py). A field a kind of
run cannot know is absent (None), never 0. Reading an older summary works: fields added since
take their defaults.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from rabbitscale.core.errors import BadInput
from rabbitscale.results.check import Check

Mode = Literal["stack", "backlog", "black-box", "black-box amqp"]
LedgerValue = int | float | str | dict[str, int] | None


class Model(BaseModel):
    """Results are written once and read as they are: frozen; a key the model does not know
    is refused when read (a hand-edited or foreign file is one line, exit 2)."""

    model_config = ConfigDict(frozen=True, extra="forbid")


class LatencySummary(Model):
    """One HDR histogram's figures in milliseconds (core/latency.summary_ms)."""

    count: int
    mean_ms: float | None = None
    p50_ms: float | None = None
    p90_ms: float | None = None
    p95_ms: float | None = None
    p99_ms: float | None = None
    p99_9_ms: float | None = None
    max_ms: float | None = None


class Targets(Model):
    task_rate_per_min: float
    webhook_rate_per_s: float
    burst_rates_per_s: list[float]
    scheduled_arrivals: float = 0.0
    thresholds: dict[str, Any] = Field(default_factory=dict,
                                       description="judge/slo.Thresholds, as its fields")


class Measured(Model):
    arrivals: int
    keep_up_ratio: float | None = None
    achieved_rate_per_min: float
    peak_queue_depth: int
    latency_ms: dict[str, dict[str, LatencySummary]] = Field(
        default_factory=dict, description="name (queue, sink, callback kind) -> metric")
    locust_hdr: dict[str, LatencySummary] = Field(
        default_factory=dict, description="the Locust side's histograms, merged over workers")


class FaultEvent(Model):
    t: float
    step: str  # inject | heal
    what: str
    kind: str | None = None
    index: int | None = None


class NemesisEvent(Model):
    index: int
    kind: str
    at_s: float
    hold_s: float
    nodes: list[str]
    cut: list[list[str]]
    applied: str
    healed: str
    applied_at_s: float | None
    healed_at_s: float | None
    effects: dict[str, Any]


class NemesisSummary(Model):
    events: list[NemesisEvent]
    recovery_s_max: float | None
    degraded_s_total: int
    not_recovered: int


class FaultSummary(Model):
    name: str
    description: str
    events: list[FaultEvent]
    seed: int | None = None
    nemesis: NemesisSummary | None = None


class Validity(Model):
    valid: bool
    checks: list[str]
    send_delay_ms: dict[str, LatencySummary]
    hdr_precision: str


class ProcessGrowth(Model):
    first_bytes: float
    last_bytes: float
    peak_bytes: float
    growth_bytes_per_hour: float | None


class EndpointResult(Model):
    """One endpoint of a black-box run: what the broker's counters and MassTransit's meters
    say of it over the run."""

    queue: str
    arrived: int = Field(description="messages the queue received during the load (broker "
                                     "counter, differenced)")
    consumed: int = Field(description="acks during the load (broker counter, differenced)")
    arrival_rate_per_s: float
    consumed_rate_per_s: float
    keep_up_ratio: float | None = Field(description="consumed / arrived over the load")
    backlog_growth: int = Field(description="depth at the end of the load minus at its start")
    kept_up: bool
    window_s: float = Field(description="the load's window between two refreshes of the "
                                        "broker's counters")
    queue_wait_derived_ms: float | None = Field(None, description="Little's law over the "
                                                                  "window, at most the window")
    consumers: int | None = Field(None, description="consumers when the run started")
    instances: int | None = Field(None, description="their distinct connections")
    prefetch: int | None = Field(None, description="their prefetch summed (0: unlimited)")
    meters: dict[str, Any] | None = Field(None, description="MassTransit's meters for the "
                                                            "endpoint (blackbox/meters.py)")


class Summary(Model):
    run: str
    scenario: str
    verdict: str
    mode: Mode = "stack"
    profile: str = Field("", description="the system's profile: simulated on the reference "
                                         "stack, or the deployed system a black-box run loaded")
    started_at: float
    load_ended_at: float
    duration_s: float
    instances: int
    workers: int
    transport: str
    targets: Targets
    measured: Measured
    ledger: dict[str, LedgerValue]
    publisher: dict[str, Any] = Field(default_factory=dict)
    fault: FaultSummary | None = None
    checks: list[Check]
    validity: Validity | None = None
    peak_backlog: dict[str, int] = Field(default_factory=dict)
    processes: dict[str, ProcessGrowth] = Field(default_factory=dict)
    total_queue: dict[str, Any] | None = None
    cluster: dict[str, Any] | None = None
    backlog: dict[str, Any] | None = Field(None, description="run backlog (results/backlog.py)")
    target: str | None = None
    broker_source: str | None = None
    callback_url: str | None = None
    queues: list[str] | None = None
    latency: dict[str, Any] | None = None
    endpoints: list[EndpointResult] | None = None

    def failed(self, verdicts: tuple[str, ...]) -> list[str]:
        return [c.name for c in self.checks if c.verdict in verdicts]

    def check(self, name: str) -> Check | None:
        return next((c for c in self.checks if c.name == name), None)

    def to_json(self) -> str:
        return self.model_dump_json(indent=2, exclude_none=False)


def _one_line(exc: ValidationError, source: str) -> BadInput:
    err = exc.errors()[0]
    if err["type"] == "json_invalid":
        return BadInput(f"{source}: unreadable: not JSON ({err['msg']})")
    where = ".".join(str(p) for p in err["loc"]) or "(top)"
    return BadInput(f"{source}: {where}: {err['msg']}")


def parse(text: str | bytes, source: str) -> Summary:
    """A summary.json's text as a ``Summary``, or one line naming the field."""
    try:
        return Summary.model_validate_json(text)
    except ValidationError as exc:
        raise _one_line(exc, source) from None


def read(path: Path) -> Summary:
    try:
        text = path.read_bytes()
    except FileNotFoundError:
        raise BadInput(f"{path}: not found") from None
    except OSError as exc:
        raise BadInput(f"{path}: cannot read: {exc.strerror or exc}") from None
    return parse(text, str(path))
