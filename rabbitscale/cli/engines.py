"""Flags to engines, in one place: ``run``, ``find-max`` and ``sweep`` turn their options into
``LoadOptions`` and an ``EngineFactory`` of the kind the flags choose: the reference stack
(the default), a deployed system's API (``--target http://...``) or its broker
(``--target amqp://...``). A command has the flags of the kinds it offers; an absent flag takes
the kind's default."""

from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path
from typing import Any

from rabbitscale.core.errors import BadInput
from rabbitscale.core.urls import is_amqp, masked
from rabbitscale.engine.base import EngineFactory, LoadOptions
from rabbitscale.scenarios import contract
from rabbitscale.scenarios.schedule import Rates
from rabbitscale.topology.profiles import Profile
from rabbitscale.topology.settings import RabbitSettings
from rabbitscale.topology.tasks import format_task_mix

STACK, HTTP, AMQP = "stack", "http", "amqp"


def _get(args: argparse.Namespace, name: str, default: Any = None) -> Any:
    value = getattr(args, name, default)
    return default if value is None else value


def kind(args: argparse.Namespace) -> str:
    target = _get(args, "target")
    return STACK if not target else AMQP if is_amqp(target) else HTTP


def load_options(args: argparse.Namespace, *, duration_s: float, rates: Rates | None = None,
                 **extra: Any) -> LoadOptions:
    """The shared load options from a command's flags."""
    mix = _get(args, "task_mix")
    return LoadOptions(
        scenario=args.scenario, duration_s=duration_s,
        rates=rates or Rates(args.task_rate, args.webhook_rate, args.burst_rates),
        payload=args.payload_size, task_mix=format_task_mix(mix) if mix else "",
        users=_get(args, "users"), workers=_get(args, "workers", 0),
        max_in_flight=_get(args, "max_in_flight", contract.MAX_IN_FLIGHT.default),
        arrivals=_get(args, "arrivals", "even"),
        sample_interval_s=_get(args, "sample_interval", 1.0),
        drain_timeout_s=args.drain_timeout, thresholds_file=_get(args, "thresholds"),
        threshold_exprs=tuple(_get(args, "threshold", ())),
        abort_on_fail_s=_get(args, "abort_on_fail"),
        out=Path(args.out) if _get(args, "out") else None, force=_get(args, "force", False),
        junit=Path(args.junit) if _get(args, "junit") else None,
        profile_file=_get(args, "profile_file"), **extra)


def factory(args: argparse.Namespace, settings: RabbitSettings, profile: Profile
            ) -> tuple[EngineFactory, str, RabbitSettings, Profile]:
    """(the factory, what it loads in words, the settings and profile it runs with)."""
    chosen = kind(args)
    if chosen == AMQP:
        return _amqp(args, settings, profile)
    if chosen == HTTP:
        return _http(args, settings, profile)
    return _stack(args, settings, profile)


def _stack(args: argparse.Namespace, settings: RabbitSettings, profile: Profile
           ) -> tuple[EngineFactory, str, RabbitSettings, Profile]:
    from rabbitscale.engine.stack import StackRun, StackRunOptions

    if _get(args, "cluster", False):
        from rabbitscale.broker.cluster import on_local_cluster

        settings, profile, _ = on_local_cluster(settings, profile, _get(args, "replicas"))
    elif _get(args, "replicas"):
        raise BadInput(f"{_prog(args)}: --replicas needs --cluster")
    if _get(args, "nemesis") and not _get(args, "cluster", False):
        raise BadInput(f"{_prog(args)}: --nemesis acts on a local cluster: add --cluster "
                       f"(after `rabbitscale cluster up --nodes 3`)")
    s = StackRunOptions(
        instances=args.instances, transport=_get(args, "transport", "http"),
        scale_to=_get(args, "scale_to", 5), vhost=_get(args, "vhost"),
        keep_vhost=_get(args, "keep_vhost", False), fault=_get(args, "fault"),
        time_scale=_get(args, "time_scale", 1.0),
        prometheus_port=_get(args, "prometheus_port"),
        prometheus_linger_s=_get(args, "prometheus_linger", 0.0),
        nemesis=tuple(_get(args, "nemesis", ())), seed=_get(args, "seed", 0),
        nemesis_interval_s=_get(args, "nemesis_interval", 30.0))
    system = f"profile {profile.name!r} simulated on the reference stack ({s.instances} " \
             f"instances)"
    return (lambda load: StackRun(settings, profile, load, s)), system, settings, profile


def _http(args: argparse.Namespace, settings: RabbitSettings, profile: Profile
          ) -> tuple[EngineFactory, str, RabbitSettings, Profile]:
    from rabbitscale.blackbox.http import TargetOptions, TargetRun, read_keys
    from rabbitscale.scenarios import contract

    if _get(args, "management"):
        settings = dataclasses.replace(settings, management_url=args.management)
    if _get(args, "vhost"):
        settings = settings.with_vhost(args.vhost)
    wait = _get(args, "expect_workers_max_wait")
    t = TargetOptions(url=args.target, prometheus=list(_get(args, "prometheus", [])),
                      callback_url=_get(args, "callback_url"),
                      poll_interval_s=_get(args, "poll", 0.0),
                      expect_workers=_get(args, "expect_workers", 0),
                      master_port=_get(args, "master_port", 5557),
                      workers_wait_s=contract.WORKERS_MAX_WAIT_S if wait is None else wait)
    keys = read_keys(list(_get(args, "api_key", [])))
    sources = meter_sources(args)
    return (lambda load: TargetRun(settings, profile, load, t, keys, sources)), \
        f"the system at {masked(args.target)}", settings, profile


def _amqp(args: argparse.Namespace, settings: RabbitSettings, profile: Profile
          ) -> tuple[EngineFactory, str, RabbitSettings, Profile]:
    from rabbitscale.blackbox.amqp import AmqpTargetOptions, AmqpTargetRun

    for flag, given in (("--api-key", _get(args, "api_key")),
                        ("--callback-url", _get(args, "callback_url")),
                        ("--poll", _get(args, "poll")),
                        ("--prometheus", _get(args, "prometheus")),
                        ("--expect-workers", _get(args, "expect_workers")),
                        ("--expect-workers-max-wait",
                         _get(args, "expect_workers_max_wait") is not None),
                        ("--vhost", _get(args, "vhost"))):
        if given:
            raise BadInput(f"{_prog(args)}: {flag} does not apply to --target amqp://... (the "
                           f"URL names the vhost; the run calls no API)")
    t = AmqpTargetOptions(url=args.target, management_url=_get(args, "management"),
                          meters=meter_sources(args))
    return (lambda load: AmqpTargetRun(settings, profile, load, t)), \
        f"the system at {masked(args.target)}", settings, profile


def meter_sources(args: argparse.Namespace) -> Any:
    from rabbitscale.blackbox.base import MeterSources

    return MeterSources(app_metrics=tuple(_get(args, "app_metrics", [])),
                        app_prometheus=_get(args, "app_prometheus"))


def _prog(args: argparse.Namespace) -> str:
    return str(_get(args, "prog", "rabbitscale run"))
