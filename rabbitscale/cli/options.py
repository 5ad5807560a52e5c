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


def load(*, tasks: bool = True, webhooks: bool = True, users: bool = True,
         task_default: str | None = TASK_RATE) -> argparse.ArgumentParser:
    """The load: arrival rates, task mix and message size."""
    parent, g = _group("load")
    if tasks:
        g.add_argument("--task-rate", type=a.rate, default=task_default, metavar="RATE",
                       help="async task arrivals, e.g. 1000/min or 20/s"
                            + ("" if task_default else " (default: the profile's [plan] rate, "
                                                       "else the guide's 1000/min)"))
    if webhooks:
        g.add_argument("--webhook-rate", type=a.rate, default=WEBHOOK_RATE, metavar="RATE",
                       help="webhook baseline between bursts")
        g.add_argument("--burst-rates", type=a.rates, default=BURST_RATES, metavar="RATES",
                       help="webhook burst rates, in order")
    g.add_argument("--payload-size", type=a.message_size, default=PAYLOAD, metavar="SIZE",
                   help="mean message size (B bytes: 10KB = 10,000 B, 10KiB = 10,240 B)")
    g.add_argument("--task-mix", type=a.mix, default=None, metavar="MIX",
                   help="the profile's task kinds and their weights, e.g. video=1,image=1 "
                        "(default: the profile's mix)")
    if users:
        g.add_argument("--users", type=a.positive_int, default=None,
                       help="Locust users per process (default: 4 per arrival stream): each "
                            "takes slots and hands each send to a greenlet of its own")
        g.add_argument("--max-in-flight", type=a.bounded(int, 1, 100_000, "a whole number"),
                       default=1024, metavar="N",
                       help="sends one Locust process keeps in flight at most (default 1024): "
                            "sends leave on time while the system is slow, up to this bound; "
                            "a slot that finds it reached leaves late and makes the run "
                            "INVALID (generator_in_flight_waits)")
    return parent


def instances(default: int | None = 3, what: str = "") -> argparse.ArgumentParser:
    parent, g = _group("the system under test")
    g.add_argument("--instances", type=a.instances, default=default,
                   help="consumer instances (processes), like docker compose --scale"
                        + (f" {what}" if what else ""))
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
    g.add_argument("--force", action="store_true",
                   help="write into --out even if it is not empty (a run's files there are "
                        "replaced)")
    g.add_argument("--junit", metavar="FILE", help="also write the checks as JUnit XML")
    g.add_argument("--vhost", help="use this existing vhost instead of a fresh one")
    g.add_argument("--sample-interval", type=a.duration_in(0.1, 300), default="1s",
                   metavar="DURATION",
                   help="how often the broker is sampled")
    return parent


def container_memory(default: str | None) -> argparse.ArgumentParser:
    parent, g = _group("the broker's machine")
    g.add_argument("--container-memory", type=a.size, default=default, metavar="SIZE",
                   help="memory limit of the broker's container, e.g. 4GiB"
                        + ("" if default else ": checks the watermark against it"))
    return parent


def target(p: argparse.ArgumentParser, required: bool = False, vhost: bool = False) -> None:
    """A deployed system: where it is, how to reach it, and where its meters are."""
    g = p.add_argument_group("a deployed system (--target)")
    g.add_argument("--target", metavar="URL", required=required,
                   help="the API of a system rabbitscale did not start (http://host:port), or "
                        "its broker (amqp://USER:PASS@HOST:PORT/VHOST): Locust then publishes "
                        "the profile's message types to the system's exchanges"
                        + ("" if required else " (default: the reference stack)"))
    g.add_argument("--api-key", action="append", default=[], metavar="KEY",
                   help="bearer key for the target (repeatable); or set "
                        "RABBITSCALE_TARGET_API_KEYS=k1,k2 to keep keys off the command line")
    g.add_argument("--prometheus", type=a.http_url, action="append", default=[], metavar="URL",
                   help="read the broker from rabbitmq_prometheus (http://host:15692), one per "
                        "node, instead of the management API")
    g.add_argument("--management", type=a.http_url, metavar="URL",
                   help="the broker's management API, read-only (default: http://HOST:15672)")
    g.add_argument("--callback-url", type=a.http_url, metavar="URL",
                   help="where the target can reach rabbitscale's callback receiver (default: "
                        "a free port on 127.0.0.1)")
    g.add_argument("--poll", type=a.duration_in(0, 3600), default="0s", metavar="INTERVAL",
                   help="follow tasks whose route can be polled (the profile's route poll) "
                        "with GET every INTERVAL instead of a callback (0: callbacks)")
    if vhost:
        g.add_argument("--vhost", help="the vhost an HTTP target's broker is observed in "
                                       "(default: the configuration's)")
    meters(g)


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


def thresholds(p: argparse.ArgumentParser) -> argparse._ArgumentGroup:
    """The thresholds a run is judged by: a file, and latency expressions."""
    g = p.add_argument_group("thresholds")
    g.add_argument("--thresholds", metavar="FILE", help="TOML file overriding SLO thresholds "
                                                        "(error_rate_max, depth_warning, ...)")
    g.add_argument("--threshold", action="append", default=[], metavar="EXPR",
                   type=a.latency_threshold,
                   help="[TASK_KIND_OR_QUEUE.]METRIC.STAT<DURATION, repeatable: METRIC e2e, "
                        "queue_wait, processing or publish_delay; STAT p50, p95, p99, p999 or "
                        "max; e.g. e2e.p99<2s, video.queue_wait.p95<500ms. Added to the "
                        "profile's [thresholds] latency list (one of the same scope, metric and "
                        "stat replaces it)")
    return g
