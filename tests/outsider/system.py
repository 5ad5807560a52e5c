"""Acme Freight for the tests: its instances started as separate processes in a vhost of
their own (tests/outsider/freight.py, which imports nothing of rabbitscale), its discovered
profile with what only its code knows, and a black-box run of it."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import tomllib
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import tomli_w

from rabbitscale.core.errors import EXIT_INVALID
from tests.support import (
    ROOT,
    amqp_url,
    broker,
    consumers_ready,
    management,
    own_vhost,
    rabbitscale,
    wait_until,
)

OUTSIDER = ROOT / "tests" / "outsider" / "freight.py"
QUEUES = ("shipment-booking", "rate-quotes", "customs-clearance")
CAPACITY = 80.0  # shipment-booking: 2 instances x 2 slots / 50 ms
MIX = "shipment_booked=1"
THRESHOLDS = ROOT / "tests" / "outsider" / "thresholds.toml"  # its customs faults 2%

@dataclass
class Freight:
    vhost: str
    truth: Path
    metrics: list[str] = field(default_factory=list)
    procs: list[subprocess.Popen[str]] = field(default_factory=list)

    @property
    def url(self) -> str:
        return amqp_url(self.vhost)

    def start(self, instance: int, *extra: str) -> None:
        proc = subprocess.Popen(
            [sys.executable, str(OUTSIDER), "--amqp", self.url, "--management",
             broker().management_base_url, "--instance", str(instance), "--fixed", "--truth",
             str(self.truth), *extra], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
            text=True)
        line = proc.stdout.readline() if proc.stdout else ""
        assert line.startswith("ready"), (line, proc.stderr.read() if proc.stderr else "")
        self.procs.append(proc)
        self.metrics.append(re.search(r"metrics=(\S+)", line).group(1))

    def stop(self, proc: subprocess.Popen[str]) -> None:
        """Stop an instance; its meters leave with it."""
        i = self.procs.index(proc)
        proc.terminate()
        proc.wait(timeout=20)
        del self.procs[i], self.metrics[i]

    def meters(self) -> list[str]:
        return [a for url in self.metrics for a in ("--app-metrics", url)]



@contextmanager
def running(truth: Path) -> Iterator[Freight]:
    """Two instances in a vhost of their own, consuming, the policy applied; stopped after."""
    with own_vhost("rs-acme") as vhost:
        system = Freight(vhost, truth)
        try:
            system.start(1, "--declare")
            system.start(2)
            consumers_ready(vhost, list(QUEUES))
            wait_until(lambda: _policy_shown(vhost), "the policy on customs-clearance")
            yield system
        finally:
            for proc in list(system.procs):
                if proc.poll() is None:
                    system.stop(proc)


def discovered_profile(freight: Freight, directory: Path) -> Path:
    """The discovered profile, with what only the system's code knows added: each endpoint's
    consumer class (its meters' label) and concurrency limit."""
    out = directory / "acme.toml"
    done = rabbitscale("discover", "--vhost", freight.vhost, "--window", "0s", "--out", str(out))
    assert done.returncode == 0, done.stderr
    data = tomllib.loads(out.read_text())
    for queue, (consumer, concurrency) in {"shipment-booking": ("BookShipmentConsumer", 2),
                                           "customs-clearance": ("ClearCustomsConsumer", 4),
                                           "rate-quotes": ("QuoteRatesConsumer", 8)}.items():
        data["endpoints"][queue].update(consumer_types=[consumer], concurrency=concurrency)
        data["estimates"].pop(f"endpoints.{queue}.concurrency", None)
    edited = out.with_name("acme-edited.toml")
    edited.write_text(tomli_w.dumps(data))
    return edited


def _policy_shown(vhost: str) -> bool:
    """The management API shows a queue's policy with its statistics, seconds late."""
    with management() as mgmt:
        q = mgmt("GET", f"/queues/{vhost}/customs-clearance", None)
    return bool(q.get("effective_policy_definition"))


INVALID_RETRIES = 2  # a run whose generator could not hold its schedule is made again


def run_at(freight: Freight, profile: Path, out: Path, rate: str, *extra: str,
           duration: str = "12s") -> tuple[subprocess.CompletedProcess[str], dict, Path]:
    """A black-box run of Freight at ``rate``: its process, summary and run directory. A run
    that is INVALID (exit 5: the machine stalled the load generator) says nothing of
    Freight: it is made again (into out-2, out-3), and after the retries the test is skipped
    as inconclusive, never passed or failed."""
    for attempt in range(1, INVALID_RETRIES + 2):
        into = out if attempt == 1 else out.with_name(f"{out.name}-{attempt}")
        done = rabbitscale("run", "sustained_tasks", "--target", freight.url, "--profile-file",
                           str(profile), "--task-mix", MIX, "--task-rate", rate, "--duration",
                           duration, "--drain-timeout", "40s", "--thresholds", str(THRESHOLDS),
                           "--out", str(into), *extra, timeout=300)
        summary = into / "summary.json"
        assert summary.exists(), done.stdout[-3000:] + done.stderr[-2000:]
        if done.returncode != EXIT_INVALID:
            return done, json.loads(summary.read_text()), into
    pytest.skip(f"inconclusive: the run at {rate} was INVALID {INVALID_RETRIES + 1} times (the "
                f"machine stalled its load generator): {done.stdout[-600:]}")


