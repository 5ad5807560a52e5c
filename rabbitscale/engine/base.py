"""One engine for every kind of run.

A run has the same life whatever it loads: ``check`` (refusals and reachability, before
anything starts or is written), ``prepare`` (start or find what it needs), ``observe`` (the
broker sampler, receivers), ``load`` (Locust, or the backlog's fill), ``drain``, then
``result`` (the facts gathered once, judged, as a ``RunResult``), written by
engine/output.py. Its kinds: the reference-stack run (engine/stack.py), ``run backlog``
(engine/backlog.py), and the black-box HTTP and AMQP targets (blackbox/). Experiments
(find-max, sweep, validate) drive any of them through an ``EngineFactory``: a run of the same
kind at another rate.

Options: ``LoadOptions`` are what every kind shares (the load, its timing, thresholds, where
it writes), checked once when made; each kind has its own beside them.
"""

from __future__ import annotations

import abc
import asyncio
import contextlib
import math
import os
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, ClassVar

from rabbitscale.core import outputs, rundir, targets
from rabbitscale.core.errors import BadInput
from rabbitscale.engine import output
from rabbitscale.engine.load import LoadSpec, LocustProcesses
from rabbitscale.judge import slo, validity
from rabbitscale.scenarios import contract, registry
from rabbitscale.scenarios.schedule import Rates
from rabbitscale.topology.profile_file import profile_env
from rabbitscale.topology.profiles import Profile

DEFAULT_RATES = Rates(targets.TASKS_PER_MIN / 60, targets.WEBHOOK_BASELINE_PER_S,
                      targets.WEBHOOK_BURSTS_PER_S)
MIN_DURATION_S = 5.0
MAX_DURATION_S = 7 * 86400.0  # a week: a soak longer than that is a deployment, not a run
ARRIVALS = ("even", "poisson")


def _finite(v: float | None) -> bool:
    return v is None or math.isfinite(v)


@dataclass(frozen=True)
class LoadOptions:
    """What every kind of run shares. Checked when made (``BadInput``, exit 2): nothing has
    started yet."""

    scenario: str
    duration_s: float = 60.0
    rates: Rates = DEFAULT_RATES
    payload: str = "10KB"
    task_mix: str = ""  # kind=weight,...; empty: the profile's mix
    users: int | None = None
    workers: int = 0  # local Locust worker processes
    max_in_flight: int = contract.MAX_IN_FLIGHT.default  # sends in flight per Locust process
    arrivals: str = "even"  # even | poisson
    sample_interval_s: float = 1.0
    drain_timeout_s: float = 60.0
    thresholds_file: str | None = None
    threshold_exprs: tuple[str, ...] = ()
    abort_on_fail_s: float | None = None  # --abort-on-fail GRACE
    out: Path | None = None
    force: bool = False  # --force: --out may hold a run's files, which are replaced
    junit: Path | None = None
    quiet: bool = False  # experiment steps: no progress lines, no HTML page
    trace: bool = False  # records.csv (sweep, validate)
    profile_file: str | None = None  # recorded in config.json

    def __post_init__(self) -> None:
        if self.scenario != registry.BACKLOG:
            registry.get(self.scenario)  # an unknown one is BadInput
        rules = (
            (_finite(self.duration_s) and MIN_DURATION_S <= self.duration_s <= MAX_DURATION_S,
             f"--duration must be between {MIN_DURATION_S:g}s and 7 days, got "
             f"{self.duration_s:g}s"),
            (_finite(self.sample_interval_s) and 0.1 <= self.sample_interval_s <= 300,
             f"--sample-interval must be between 0.1s and 5m, got {self.sample_interval_s:g}s"),
            (_finite(self.drain_timeout_s) and 0 <= self.drain_timeout_s <= MAX_DURATION_S,
             f"--drain-timeout must be between 0s and 7 days, got {self.drain_timeout_s:g}s"),
            (0 <= self.workers <= 64, f"--workers must be between 0 and 64, got {self.workers}"),
            (self.users is None or self.users >= 1, "--users must be at least 1"),
            (1 <= self.max_in_flight <= 100_000, "--max-in-flight must be between 1 and "
                                                  "100,000"),
            (self.arrivals in ARRIVALS, f"arrivals must be one of {', '.join(ARRIVALS)}"),
            (self.abort_on_fail_s is None or (_finite(self.abort_on_fail_s)
                                             and 0 <= self.abort_on_fail_s <= self.duration_s),
             "--abort-on-fail: the grace must be between 0s and the run's --duration"),
            (all(_finite(r) and r >= 0 for r in (self.rates.task_rate, self.rates.webhook_rate,
                                                  *self.rates.burst_rates)),
             "rates must be finite and not negative"),
        )
        for ok, message in rules:
            if not ok:
                raise BadInput(f"rabbitscale run: {message}")

    def at_rate(self, rate: float, out: Path, *, trace: bool = False) -> LoadOptions:
        """The same load at another task rate, quietly, into ``out``: an experiment's step."""
        return replace(self, rates=Rates(rate, self.rates.webhook_rate, self.rates.burst_rates),
                       out=out, quiet=True, trace=trace)

    def spec(self, users_default: int, transport: str, mix: str, **extra: Any) -> LoadSpec:
        scenario = registry.get(self.scenario)
        return LoadSpec(scenario=scenario, duration_s=self.duration_s, rates=self.rates,
                        payload=self.payload, transport=transport, task_mix=mix,
                        users=self.users or users_default, workers=self.workers,
                        max_in_flight=self.max_in_flight,
                        arrivals=self.arrivals, **extra)


class RunEngine(abc.ABC):
    """One run. Subclasses give its kind's phases; ``execute`` runs them in order and makes
    sure everything started is stopped on every path."""

    mode: ClassVar[str] = "stack"  # summary.json's mode
    counted: ClassVar[str] = "completed"  # what the progress line counts
    watch_grace_s: ClassVar[float] = 60.0  # Locust may run this long past the schedule

    def __init__(self, opts: LoadOptions, profile: Profile, prefix: str | None = None) -> None:
        self.opts = opts
        self.profile = profile
        self.name, self.run_dir = rundir.place(opts.out, prefix or opts.scenario)
        outputs.new_dir(self.run_dir, "--out", opts.force)  # before anything starts
        if opts.junit is not None:
            outputs.new_file(opts.junit, "--junit")
        self.locust: LocustProcesses | None = None
        self.start_at = 0.0
        self.load_ended_at = 0.0
        self.error = ""  # the run itself failed: Locust crashed, a phase raised

    def say(self, text: str) -> None:
        if not self.opts.quiet:
            print(text, flush=True)

    # --- the phases ------------------------------------------------------------------------

    async def check(self) -> None:
        """Refusals and reachability that need I/O, before anything starts: raise BadInput or
        Unavailable. The constructor has checked everything that needs none."""
        return None

    @abc.abstractmethod
    async def prepare(self, cleanup: contextlib.AsyncExitStack) -> None:
        """Start or find what the run needs; register its stopping with ``cleanup``."""

    @abc.abstractmethod
    async def observe(self, cleanup: contextlib.AsyncExitStack) -> None:
        """Start watching: the broker sampler, receivers, listeners."""

    @abc.abstractmethod
    async def load(self, cleanup: contextlib.AsyncExitStack) -> str:
        """Apply the load; an error text when the run itself failed, else ''."""

    @abc.abstractmethod
    async def drain(self) -> None:
        """Wait, up to the drain timeout, until what the load owes has come back."""

    @abc.abstractmethod
    async def result(self) -> output.RunResult:
        """The facts, gathered once, judged."""

    @abc.abstractmethod
    def measurements(self) -> output.Measurements:
        """Where the run directory's histograms and throughput come from."""

    def concluded(self, result: output.RunResult) -> None:
        """Called with the result before it is written (live metrics)."""
        return None

    async def execute(self) -> int:
        await self.check()
        self.run_dir.mkdir(parents=True, exist_ok=True)
        async with contextlib.AsyncExitStack() as cleanup:
            await self.prepare(cleanup)
            await self.observe(cleanup)
            self.error = await self.load(cleanup)
            self.load_ended_at = time.time()
            await self.drain()
            result = await self.result()
        self.concluded(result)
        return output.conclude(self.run_dir, result, self.measurements(), say=self.say,
                               quiet=self.opts.quiet, junit=self.opts.junit)

    # --- what the kinds share ------------------------------------------------------------------

    def locust_env(self, start_at: float, **extra: str) -> dict[str, str]:
        """The Locust processes' environment: the run's name, directory and schedule start,
        the profile, and the kind's own settings."""
        return {**os.environ, contract.RUN_NAME.env: self.name,
                contract.ENV_RUN_DIR: str(self.run_dir), contract.START_AT.env: f"{start_at:.3f}",
                **profile_env(self.profile), **extra}

    async def run_locust(self, cleanup: contextlib.AsyncExitStack, spec: LoadSpec, host: str,
                         env: dict[str, str]) -> str:
        """Locust for ``spec`` until it ends, watched every second (``tick``, the progress
        line); reaped on every path."""
        locust = self.locust = LocustProcesses(spec, self.run_dir, host, env)
        cleanup.push_async_callback(locust.close)
        await locust.start()
        self.start_at = await self.started(locust)
        self.track_windows()
        error = await self.watch(locust)
        await locust.close()
        return error

    async def started(self, locust: LocustProcesses) -> float:
        """When the schedule starts (the kind fixed it before Locust started, by default)."""
        return self.start_at

    def track_windows(self) -> None:
        """The schedule is known: the kind may track its burst windows."""
        return None

    async def tick(self, now: float, locust: LocustProcesses) -> bool:
        """Each second of the load; True stops watching (the load was stopped)."""
        return False

    async def progress(self) -> tuple[int, int, float | None]:
        """(count, depth, e2e p99 ms or None) for the progress line."""
        return 0, 0, None

    async def watch(self, locust: LocustProcesses) -> str:
        progress = output.Progress(self.say, self.counted)
        while locust.running:
            await asyncio.sleep(1.0)
            now = time.time()
            locust.sample_cpu()
            if self.start_at and now > self.start_at + self.opts.duration_s + self.watch_grace_s:
                return "Locust did not finish in time"
            if await self.tick(now, locust):
                break
            if progress.due(now, self.start_at):
                progress.tick(now, self.start_at, *await self.progress())
        return await locust.wait()

    async def drain_until(self, done: Callable[[], Awaitable[bool]],
                          interval_s: float = 0.2) -> bool:
        """Poll ``done`` until it holds or the drain timeout passes; whether it held."""
        deadline = time.time() + self.opts.drain_timeout_s
        while True:
            if await done():
                return True
            if time.time() >= deadline:
                return False
            await asyncio.sleep(interval_s)

    def validity_checks(self, clock: bool = True) -> tuple[list[slo.Check], dict[str, Any]]:
        """The generator's checks (schedule, CPU, workers' clocks) and summary.json's
        ``validity``."""
        send_delays = validity.read_send_delays(self.run_dir)
        cpu = self.locust.cpu_fractions() if self.locust else {}
        offsets = self.locust.clock_offsets() if self.locust and clock else {}
        measured = validity.checks(send_delays, cpu, offsets,
                                   validity.read_in_flight(self.run_dir))
        return measured, validity.summary(send_delays, measured)

    def options_record(self, **extra: Any) -> dict[str, Any]:
        """The run's options as config.json records them (paths as text; the rates of the
        streams the scenario has, not those it has not)."""
        from dataclasses import asdict

        record = {k: (str(v) if isinstance(v, Path) else v)
                  for k, v in {**asdict(self.opts), **extra}.items() if k != "rates"}
        streams = registry.SCENARIOS[self.opts.scenario].streams(self.opts.rates, 1.0) \
            if self.opts.scenario in registry.SCENARIOS else {}
        if registry.TASKS in streams:
            record["task_rate_per_s"] = self.opts.rates.task_rate
        if registry.WEBHOOKS in streams:
            record["webhook_rate_per_s"] = self.opts.rates.webhook_rate
            record["burst_rates_per_s"] = list(self.opts.rates.burst_rates)
        return record


EngineFactory = Callable[[LoadOptions], RunEngine]

