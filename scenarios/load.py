"""The load generator's processes: Locust headless, alone or as a master with local workers.

Locust reads every rabbitscale setting as an ordinary Locust option (scenarios/common.py), so
the master passes them to its workers with each spawn message; nothing but the scenario file
and the master's address has to reach a worker.
"""

from __future__ import annotations

import asyncio
import contextlib
import csv
import math
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from rabbitscale.core import rundir
from rabbitscale.scenarios.schedule import Rates

SCENARIO_DIR = Path(__file__).resolve().parent

# what a run hands its Locust master through the environment (never on a command line); the
# Locust options of scenarios/common.py read them, and the master passes them to workers
ENV_API_URL = "RABBITSCALE_API_URL"
ENV_RUN = "RABBITSCALE_RUN"
ENV_RUN_DIR = "RABBITSCALE_RUN_DIR"
ENV_START_AT = "RABBITSCALE_START_AT"
ENV_WEBHOOK_URL = "RABBITSCALE_WEBHOOK_URL"
ENV_CALLBACK_URL = "RABBITSCALE_CALLBACK_URL"
ENV_CALLBACK_SECRET = "RABBITSCALE_CALLBACK_SECRET"
ENV_POLL = "RABBITSCALE_POLL"
ENV_TARGET_KEYS = "RABBITSCALE_TARGET_API_KEYS"  # bearer keys of a deployed system
# what the Locust master writes into the run directory (scenarios/common.py)
WORKERS_FILE = "locust_workers.json"  # the master's view of its workers at the end
START_FILE = "locust_start.json"  # when the schedule starts, if the master chose it
START_DELAY_S = 3.0  # time for Locust (and its workers) to start before the first slot
WORKER_START_DELAY_S = 2.0  # and for workers to connect to the master


def scenario_file(scenario: str) -> Path:
    return SCENARIO_DIR / f"{scenario}.py"


@dataclass(frozen=True)
class LoadSpec:
    scenario: str
    duration_s: float
    rates: Rates
    payload: str
    transport: str
    task_mix: str
    users: int
    workers: int = 0  # local worker processes
    expect_workers: int = 0  # workers joining from other machines (rabbitscale worker)
    master_port: int = 5557

    @property
    def distributed(self) -> bool:
        return bool(self.workers or self.expect_workers)

    @property
    def worker_count(self) -> int:
        return self.workers + self.expect_workers


def default_users(scenario: str, rates: Rates) -> int:
    """Users bound concurrency only (arrivals are paced): enough for ~0.3 s per request."""
    peak = max(rates.task_rate, rates.webhook_rate, *rates.burst_rates)
    return max(10, math.ceil(peak * 0.3)) + (10 if scenario == "mixed_peak" else 0)


def start_delay_s(spec: LoadSpec) -> float:
    return START_DELAY_S + (WORKER_START_DELAY_S if spec.distributed else 0.0)


def commands(spec: LoadSpec, run_dir: Path, host: str) -> list[list[str]]:
    """Locust's command lines: [single] or [master, local worker, ...]."""
    # Locust's run time covers the start delay and the last replies; the schedule itself
    # (scenarios/schedule.py) spans exactly [start_at, start_at + duration).
    run_time = math.ceil(spec.duration_s + start_delay_s(spec) + 2)
    locustfile = str(scenario_file(spec.scenario))
    base = [sys.executable, "-m", "locust", "-f", locustfile,
            "--host", host, "--headless", "--run-time", f"{run_time}s",
            "--users", str(spec.users), "--spawn-rate", str(spec.users),
            "--stop-timeout", "5", "--only-summary", "--loglevel", "WARNING",
            "--task-rate", f"{spec.rates.task_rate}/s",
            "--webhook-rate", f"{spec.rates.webhook_rate}/s",
            "--burst-rates", ",".join(f"{r}/s" for r in spec.rates.burst_rates),
            "--payload-size", spec.payload, "--transport", spec.transport,
            "--task-mix", spec.task_mix, "--schedule-time", f"{spec.duration_s}",
            "--csv", str(run_dir / rundir.LOCUST_CSV_PREFIX)]
    if not spec.distributed:
        return [base]
    master = base + ["--master", "--expect-workers", str(spec.worker_count),
                     "--master-bind-port", str(spec.master_port)]
    worker = [sys.executable, "-m", "locust", "-f", locustfile, "--worker",
              "--master-port", str(spec.master_port), "--loglevel", "WARNING"]
    return [master] + [worker] * spec.workers


class LocustProcesses:
    """Starts the processes, and always reaps them (``close``), whatever happened."""

    def __init__(self, spec: LoadSpec, run_dir: Path, host: str, env: dict[str, str]) -> None:
        self.spec = spec
        self.run_dir = run_dir
        self.host = host
        self.env = env
        self.procs: list[asyncio.subprocess.Process] = []
        self._log: IO[str] | None = None

    async def start(self) -> None:
        self._log = (self.run_dir / rundir.LOCUST_LOG).open("w", encoding="utf-8")
        for cmd in commands(self.spec, self.run_dir, self.host):
            self.procs.append(await asyncio.create_subprocess_exec(
                *cmd, env=self.env, stdout=self._log, stderr=asyncio.subprocess.STDOUT))

    @property
    def running(self) -> bool:
        return bool(self.procs) and self.procs[0].returncode is None

    async def wait(self) -> str:
        """Wait for all processes; an error text when Locust itself failed, else ''."""
        await asyncio.gather(*(p.wait() for p in self.procs))
        rc = self.procs[0].returncode if self.procs else None
        log = self.run_dir / rundir.LOCUST_LOG
        if rc not in (0, 1):  # Locust: 1 = some requests failed, which the checks judge
            return f"Locust exited with code {rc} (see {log})"
        crashed = self.user_exceptions()
        if crashed:
            return f"Locust users raised {crashed} exception(s) (see {log})"
        return ""

    def user_exceptions(self) -> int:
        """Exceptions raised in user code (a broken scenario), from Locust's CSV."""
        path = self.run_dir / f"{rundir.LOCUST_CSV_PREFIX}_exceptions.csv"
        if not path.exists():
            return 0
        with path.open(newline="") as f:
            return sum(int(row.get("Count") or 0) for row in csv.DictReader(f))

    async def close(self) -> None:
        for p in self.procs:
            if p.returncode is None:
                with contextlib.suppress(ProcessLookupError):
                    p.kill()
                await p.wait()
        if self._log:
            self._log.close()
            self._log = None
