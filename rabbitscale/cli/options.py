"""Option groups several commands share, each defined once, as argparse parent parsers.

A command lists the groups it takes (``parents=[profile(), load()]``); an option's name,
type, default and help live here only, so two commands cannot drift apart.
"""

from __future__ import annotations

import argparse

from rabbitscale.cli import args as a
from rabbitscale.core import targets
from rabbitscale.topology.profile_file import DEFAULT_PROFILE, builtin_names

TASK_RATE = f"{targets.TASKS_PER_MIN:g}/min"
WEBHOOK_RATE = f"{targets.WEBHOOK_BASELINE_PER_S:g}/s"
BURST_RATES = ",".join(f"{r:g}/s" for r in targets.WEBHOOK_BURSTS_PER_S)
PAYLOAD = "10KB"


def _group(title: str) -> tuple[argparse.ArgumentParser, argparse._ArgumentGroup]:
    parent = argparse.ArgumentParser(add_help=False, allow_abbrev=False)
    return parent, parent.add_argument_group(title)


def profile(choose: bool = True) -> argparse.ArgumentParser:
    """The system: a built-in profile and/or a profile file."""
    parent, g = _group("the system")
    if choose:
        g.add_argument("--profile", choices=builtin_names(), default=None,
                       help=f"a built-in profile (default: the one the profile file extends, "
                            f"else {DEFAULT_PROFILE})")
    g.add_argument("--profile-file", metavar="FILE",
                   help="a profile file: the system as data (docs/profile-format.md)")
    return parent


def load(*, tasks: bool = True, webhooks: bool = True, users: bool = True
         ) -> argparse.ArgumentParser:
    """The load: arrival rates, task mix and message size."""
    parent, g = _group("load")
    if tasks:
        g.add_argument("--task-rate", type=a.rate, default=TASK_RATE, metavar="RATE",
                       help="async task arrivals, e.g. 1000/min or 20/s")
    if webhooks:
        g.add_argument("--webhook-rate", type=a.rate, default=WEBHOOK_RATE, metavar="RATE",
                       help="webhook baseline between bursts")
        g.add_argument("--burst-rates", type=a.rates, default=BURST_RATES, metavar="RATES",
                       help="webhook burst rates, in order")
    g.add_argument("--payload-size", type=a.size_text, default=PAYLOAD, metavar="SIZE",
                   help="mean message size (B bytes: 10KB = 10,000 B, 10KiB = 10,240 B)")
    g.add_argument("--task-mix", type=a.mix, default=None, metavar="MIX",
                   help="the profile's task kinds and their weights, e.g. video=1,image=1 "
                        "(default: the profile's mix)")
    if users:
        g.add_argument("--users", type=a.positive_int, default=None,
                       help="Locust users (default: enough for the peak rate at 0.3 s a "
                            "request; arrivals are paced, users only bound concurrency)")
    return parent


def instances(default: int = 3) -> argparse.ArgumentParser:
    parent, g = _group("the system under test")
    g.add_argument("--instances", type=a.instances, default=default,
                   help="consumer instances (processes), like docker compose --scale")
    return parent


def cluster() -> argparse.ArgumentParser:
    """A local cluster (`rabbitscale cluster up`)."""
    parent, g = _group("cluster")
    g.add_argument("--cluster", action="store_true",
                   help="run against the local cluster (`rabbitscale cluster up`): "
                        "connections spread over its nodes and fail over, the sampler reads "
                        "every node")
    g.add_argument("--replicas", type=a.bounded(int, 1, 9, "a whole number"), default=None,
                   help="quorum queue members, one per node (default: min(3, nodes))")
    return parent


def run_output() -> argparse.ArgumentParser:
    """Where a run writes, and the vhost it uses."""
    parent, g = _group("run directory and vhost")
    g.add_argument("--out", metavar="DIR",
                   help="run directory (default: runs/NAME-YYYYmmdd-HHMMSS)")
    g.add_argument("--junit", metavar="FILE", help="also write the checks as JUnit XML")
    g.add_argument("--vhost", help="use this existing vhost instead of a fresh one")
    g.add_argument("--sample-interval", type=a.duration, default="1s", metavar="DURATION",
                   help="how often the broker is sampled")
    return parent


def container_memory(default: str | None) -> argparse.ArgumentParser:
    parent, g = _group("the broker's machine")
    g.add_argument("--container-memory", type=a.size, default=default, metavar="SIZE",
                   help="memory limit of the broker's container, e.g. 4GiB"
                        + ("" if default else ": checks the watermark against it"))
    return parent


def meters(g: argparse._ArgumentGroup) -> None:
    """MassTransit's meters of a deployed system (black-box runs, find-max and sweep on one)."""
    g.add_argument("--app-metrics", type=a.http_url, action="append", default=[],
                   metavar="URL",
                   help="an instance's Prometheus endpoint with MassTransit's meters "
                        "(messaging_masstransit_*), repeatable: one per instance; read before "
                        "the load and after the drain")
    g.add_argument("--app-prometheus", type=a.http_url, metavar="URL",
                   help="the team's Prometheus server, asked with PromQL over the run's window "
                        "for MassTransit's meters (instead of --app-metrics)")
