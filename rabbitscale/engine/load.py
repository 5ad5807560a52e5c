"""The load generator's processes: Locust headless, alone or as a master with local workers.

Locust reads every rabbitscale setting as an ordinary Locust option (scenarios/contract.py), so
the master passes them to its workers with each spawn message; nothing but the scenario file
and the master's address has to reach a worker.
"""

from __future__ import annotations

import asyncio
import contextlib
import csv
import math
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from rabbitscale.core import rundir
from rabbitscale.scenarios import contract
from rabbitscale.scenarios.registry import Scenario
from rabbitscale.scenarios.schedule import Rates

START_DELAY_S = 3.0  # time for Locust (and its workers) to start before the first slot
WORKER_START_DELAY_S = 2.0  # and for workers to connect to the master


@dataclass(frozen=True)
class LoadSpec:
    scenario: Scenario
    duration_s: float
    rates: Rates
    payload: str
    transport: str
    task_mix: str
    users: int
    workers: int = 0  # local worker processes
    expect_workers: int = 0  # workers joining from other machines (rabbitscale worker)
    master_port: int = 5557
    arrivals: str = "even"  # even | poisson (contract.ARRIVALS)
    max_in_flight: int = contract.MAX_IN_FLIGHT.default  # sends in flight per Locust process

    @property
    def distributed(self) -> bool:
        return bool(self.workers or self.expect_workers)

    @property
    def worker_count(self) -> int:
        return self.workers + self.expect_workers


def start_delay_s(spec: LoadSpec) -> float:
    return START_DELAY_S + (WORKER_START_DELAY_S if spec.distributed else 0.0)


def commands(spec: LoadSpec, run_dir: Path, host: str) -> list[list[str]]:
    """Locust's command lines: [single] or [master, local worker, ...]."""
    # Locust's run time covers the start delay and the last replies; the schedule itself
    # (scenarios/schedule.py) spans exactly [start_at, start_at + duration).
    run_time = math.ceil(spec.duration_s + start_delay_s(spec) + 2)
    locustfile = str(spec.scenario.locustfile)
    base = [sys.executable, "-m", "locust", "-f", locustfile,
            "--host", host, "--headless", "--run-time", f"{run_time}s",
            "--users", str(spec.users), "--spawn-rate", str(spec.users),
            "--stop-timeout", "5", "--only-summary", "--loglevel", "WARNING",
            contract.TASK_RATE.flag, f"{spec.rates.task_rate}/s",
            contract.WEBHOOK_RATE.flag, f"{spec.rates.webhook_rate}/s",
            contract.BURST_RATES.flag, ",".join(f"{r}/s" for r in spec.rates.burst_rates),
            contract.PAYLOAD_SIZE.flag, spec.payload, contract.TRANSPORT.flag, spec.transport,
            contract.TASK_MIX.flag, spec.task_mix,
            contract.SCHEDULE_TIME.flag, f"{spec.duration_s}",
            contract.ARRIVALS.flag, spec.arrivals,
            contract.MAX_IN_FLIGHT.flag, str(spec.max_in_flight),
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
        self._cpu: dict[int, tuple[float, float]] = {}  # pid -> (cpu seconds, wall seconds)

    def sample_cpu(self) -> None:
        """Note each process's CPU time so far (called every second: a process that has
        exited keeps its last figure)."""
        import psutil

        for p in self.procs:
            if p.returncode is not None:
                continue
            try:
                proc = psutil.Process(p.pid)
                t = proc.cpu_times()
                self._cpu[p.pid] = (t.user + t.system, time.time() - proc.create_time())
            except psutil.Error:
                continue

    def cpu_fractions(self) -> dict[str, float]:
        """Locust process -> its CPU time over its life, as a share of one core (Locust runs
        one gevent thread per process)."""
        names = ["master" if self.spec.distributed else "locust"] + \
            [f"worker-{i}" for i in range(1, len(self.procs))]
        out = {}
        for name, p in zip(names, self.procs, strict=False):
            cpu, wall = self._cpu.get(p.pid, (0.0, 0.0))
            if wall > 1.0:
                out[name] = round(cpu / wall, 4)
        return out

    def clock_offsets(self) -> dict[str, float]:
        """Remote worker -> its clock's offset against the master's, as measured at its start
        (the master's workers file)."""
        import json

        path = self.run_dir / contract.WORKERS_FILE
        try:
            workers = json.loads(path.read_text()) if path.exists() else []
        except ValueError:
            return {}
        return {f"worker {w.get('index')}": float(w["clock_offset_s"]) for w in workers
                if isinstance(w, dict) and w.get("clock_offset_s") is not None}

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

    async def stop(self) -> None:
        """End the load early (--abort-on-fail): SIGTERM, on which Locust fires its quitting
        event (the histograms are written) and closes its CSV files."""
        import signal

        if self.procs and self.procs[0].returncode is None:
            with contextlib.suppress(ProcessLookupError):
                self.procs[0].send_signal(signal.SIGTERM)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.procs[0].wait(), 30)

    async def close(self) -> None:
        for p in self.procs:
            if p.returncode is None:
                with contextlib.suppress(ProcessLookupError):
                    p.kill()
                await p.wait()
        if self._log:
            self._log.close()
            self._log = None


def master_address(text: str, default_port: int = 5557) -> tuple[str, int]:
    """HOST[:PORT] of a Locust master, or a one-line BadInput."""
    from rabbitscale.core.errors import BadInput

    if "://" in text or "/" in text or "@" in text:
        raise BadInput(f"--master: expected HOST[:PORT] (no scheme or path: Locust's master "
                       f"speaks ZeroMQ, not HTTP), got {text!r}")
    host, _, port_text = text.rpartition(":") if ":" in text else (text, "", str(default_port))
    try:
        port = int(port_text)
        if not 0 < port < 65536 or not host:
            raise ValueError
    except ValueError:
        raise BadInput(f"--master: expected HOST[:PORT], got {text!r}") from None
    return host, port


def run_worker(host: str, port: int, wait_s: float) -> None:
    """A Locust worker for a master on another machine: the scenario file, its options, the
    keys and the schedule all come from the master. Waits up to ``wait_s`` for the master."""
    import os
    import socket
    import subprocess
    import tempfile
    import time

    from rabbitscale.core.errors import Unavailable

    deadline = time.monotonic() + wait_s
    while True:  # a worker may well start before its master
        try:
            with socket.create_connection((host, port), timeout=5):
                break
        except OSError as exc:
            if time.monotonic() >= deadline:
                raise Unavailable(f"cannot reach the Locust master at {host}:{port} (waited "
                                  f"{wait_s:g}s): {exc.strerror or exc}; start `rabbitscale "
                                  f"run ... --expect-workers N` there") from None
            time.sleep(0.5)
    # Locust writes the locustfile it downloads to <temp dir>/<its name>: workers on one
    # machine would truncate and rewrite one file while another imports it. Each its own.
    with tempfile.TemporaryDirectory(prefix="rabbitscale-worker-") as tmp:
        done = subprocess.run([sys.executable, "-m", "locust", "-f", "-", "--worker",
                               "--master-host", host, "--master-port", str(port),
                               "--loglevel", "WARNING"], stderr=subprocess.PIPE, text=True,
                              env={**os.environ, "TMPDIR": tmp})
    if done.returncode != 0:
        last = (done.stderr.strip().splitlines() or ["no output"])[-1]
        raise Unavailable(f"the Locust worker stopped: {last}")


def amqp_publishes(run_dir: Path) -> dict[str, tuple[int, int]]:
    """task kind -> (publishes, confirmed) of the tasks Locust's users published straight to
    the broker (their AMQP requests, named "publish KIND"; a failure is any other outcome)."""
    path = run_dir / rundir.LOCUST_STATS_CSV
    out: dict[str, tuple[int, int]] = {}
    if not path.exists():
        return out
    with path.open(newline="") as f:
        for r in csv.DictReader(f):
            if r.get("Type") == "AMQP" and r.get("Name", "").startswith("publish "):
                n, failed = int(r["Request Count"]), int(r["Failure Count"])
                out[r["Name"].removeprefix("publish ")] = (n, n - failed)
    return out


async def drive(spec: LoadSpec, run_dir: Path, host: str, env: dict[str, str]) -> str:
    """The generator alone (the benchmarks, its tests): Locust for ``spec`` against ``host``
    with no system watched, its schedule starting once the processes can be up; reaped on
    every path. The error text, '' when Locust ran to its end."""
    start_at = time.time() + start_delay_s(spec)
    procs = LocustProcesses(spec, run_dir, host, {
        **env, contract.ENV_API_URL: host, contract.ENV_RUN_DIR: str(run_dir),
        contract.RUN_NAME.env: run_dir.name, contract.START_AT.env: f"{start_at:.3f}"})
    try:
        await procs.start()
        return await procs.wait()
    finally:
        await procs.close()
