"""The ``rabbitscale`` command: argument parsing, one handler per subcommand, and ``main``, the
one place where an error becomes an exit status (the codes: rabbitscale/core/errors.py).

Subcommands import their modules when they run, so quick ones (``plan``, ``audit``) answer
without loading aio-pika, pandas or matplotlib; choice lists come from their registries.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Callable
from typing import Any, NoReturn

from rabbitscale.core import rundir, targets
from rabbitscale.core.errors import (
    EXIT_CHECK_FAILED,
    EXIT_INTERRUPTED,
    EXIT_OK,
    EXIT_RUN_FAILED,
    BadInput,
    RabbitscaleError,
)
from rabbitscale.core.units import (
    parse_bitrate_bps,
    parse_duration_s,
    parse_rate_per_s,
    parse_size_bytes,
)
from rabbitscale.core.verdicts import FAIL
from rabbitscale.harness.profiles import PROFILES
from rabbitscale.harness.tasks import DEFAULT_MIX, format_task_mix, parse_task_mix
from rabbitscale.scenarios.faults import FAULTS
from rabbitscale.scenarios.schedule import BACKLOG, SCENARIOS, TASK_SCENARIOS


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:  # one line, exit 2, like argparse but shorter
        raise BadInput(f"{self.prog}: {message}")


def _typed(parse: Callable[[str], Any], what: str = "") -> Callable[[str], Any]:
    """An argparse type from a parser that raises BadInput (or ValueError)."""

    def convert(text: str) -> Any:
        try:
            return parse(text)
        except ValueError as exc:  # BadInput is a ValueError
            raise argparse.ArgumentTypeError(str(exc) or f"expected {what}") from None

    return convert


def _bounded(kind: type, lo: float, hi: float | None, what: str) -> Callable[[str], Any]:
    """``kind(text)`` within [lo, hi], with a one-line message otherwise."""

    def parse(text: str) -> Any:
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {what}, got {text!r}") from None
        if value != value or value < lo or (hi is not None and value > hi):  # NaN too
            bound = f"between {lo} and {hi}" if hi is not None else f"at least {lo}"
            raise argparse.ArgumentTypeError(f"must be {bound}, got {value}")
        return value

    return parse


def _positive_rate(text: str) -> float:
    value = parse_rate_per_s(text)
    if not 0 < value < 1e7:
        raise BadInput(f"rate must be positive and finite, got {text!r}")
    return value


def _size(text: str) -> str:
    if not 1 <= parse_size_bytes(text) <= 2**40:
        raise BadInput(f"size must be between 1 byte and 1TiB, got {text!r}")
    return text


def _queue_duration(text: str) -> tuple[str, float]:
    queue, sep, value = text.partition("=")
    if not sep or not queue:
        raise BadInput(f"expected QUEUE=DURATION, got {text!r}")
    return queue, parse_duration_s(value)


_instances = _bounded(int, 1, 1000, "a whole number")
_positive_int = _bounded(int, 1, None, "a whole number")
_port = _bounded(int, 0, 65535, "a port number")
_ratio = _bounded(float, 0, 1, "a number")
_duration = _typed(parse_duration_s, "a duration")
_rate = _typed(_positive_rate, "a rate")
_rates = _typed(lambda t: tuple(_positive_rate(p) for p in t.split(",") if p.strip()), "rates")
_payload = _typed(_size, "a size")
_mix = _typed(parse_task_mix, "a task mix")
_service_time = _typed(_queue_duration, "QUEUE=DURATION")


# --- handlers ------------------------------------------------------------------------------


def _cmd_stack(args: argparse.Namespace) -> int:
    import asyncio

    from rabbitscale.harness.overrides import load_stack_config
    from rabbitscale.harness.stack import StackOptions, run_stack
    from rabbitscale.harness.webhook_sink import SinkOptions

    settings, profile = load_stack_config(args.profile, args.profile_file)
    opts = StackOptions(instances=args.instances, host=args.host, api_port=args.api_port,
                        sink_port=args.sink_port, time_scale=args.time_scale,
                        demo_s=args.demo, prometheus_port=args.prometheus_port,
                        sink=SinkOptions(latency_s=args.sink_latency,
                                                           failure_ratio=args.sink_failure_ratio))
    return asyncio.run(run_stack(settings, profile, opts))


def _cmd_run(args: argparse.Namespace) -> int:
    import asyncio
    from pathlib import Path

    from rabbitscale.harness.overrides import load_stack_config
    from rabbitscale.scenarios.run import Run, RunOptions
    from rabbitscale.scenarios.schedule import Rates

    if args.scenario == BACKLOG:
        return _run_backlog(args)
    if args.queued is not None or args.drain_service_time is not None or args.calibration:
        raise BadInput("rabbitscale run: --queued, --drain-service-time and --calibration "
                       "apply to `run backlog`")
    if args.duration is None:
        args.duration = 60.0
    if args.drain_timeout is None:
        args.drain_timeout = 60.0
    if args.task_mix is None:
        args.task_mix = DEFAULT_MIX
    if args.duration < 5:
        raise BadInput("rabbitscale run: --duration must be at least 5s")
    settings, profile = load_stack_config(args.profile, args.profile_file)
    if args.vhost and args.target:
        settings = settings.with_vhost(args.vhost)
    if args.cluster:
        settings, profile = _on_cluster(settings, profile, args.replicas)
    elif args.replicas:
        raise BadInput("rabbitscale run: --replicas needs --cluster")
    opts = RunOptions(
        scenario=args.scenario, duration_s=args.duration, instances=args.instances,
        workers=args.workers, out=Path(args.out) if args.out else None,
        rates=Rates(args.task_rate, args.webhook_rate, args.burst_rates),
        payload=args.payload_size, transport=args.transport, users=args.users,
        task_mix=format_task_mix(args.task_mix), scale_to=args.scale_to,
        sample_interval_s=args.sample_interval, drain_timeout_s=args.drain_timeout,
        thresholds_file=args.thresholds, vhost=args.vhost, keep_vhost=args.keep_vhost,
        profile_file=args.profile_file, fault=args.fault, time_scale=args.time_scale,
        prometheus_port=args.prometheus_port, prometheus_linger_s=args.prometheus_linger,
        junit=Path(args.junit) if args.junit else None)
    if args.target:
        from rabbitscale.scenarios.target import TargetOptions, TargetRun, read_keys

        if args.prometheus_port is not None:
            raise BadInput("rabbitscale run: --prometheus-port serves the reference stack's "
                           "figures; a black-box run (--target) does not export them yet")

        run = TargetRun(settings, opts, TargetOptions(
            url=args.target, prometheus=args.prometheus, callback_url=args.callback_url,
            poll_interval_s=args.poll, expect_workers=args.expect_workers,
            master_port=args.master_port), read_keys(args.api_key))
        return asyncio.run(run.execute())
    for flag in ("api_key", "prometheus", "callback_url", "poll", "expect_workers"):
        if getattr(args, flag):
            raise BadInput(f"rabbitscale run: --{flag.replace('_', '-')} needs --target "
                           f"(a black-box run)")
    return asyncio.run(Run(settings, profile, opts).execute())


def _run_backlog(args: argparse.Namespace) -> int:
    """`run backlog`: the broker with a backlog, against the broker model."""
    import asyncio
    from pathlib import Path

    from rabbitscale.capacity.broker import BrokerCoefficients
    from rabbitscale.capacity.calibrate import read_calibration
    from rabbitscale.harness.overrides import load_stack_config
    from rabbitscale.scenarios.backlog import (
        DEFAULT_MIX as BACKLOG_MIX,
    )
    from rabbitscale.scenarios.backlog import (
        DRAIN_SERVICE_TIME,
        BacklogOptions,
        BacklogRun,
    )

    refused = [flag for flag, given in (
        ("--duration", args.duration is not None), ("--workers", args.workers),
        ("--fault", args.fault), ("--target", args.target), ("--users", args.users),
        ("--transport amqp", args.transport != "http"), ("--thresholds", args.thresholds),
        ("--prometheus-port", args.prometheus_port is not None))
        if given]
    if refused:
        raise BadInput(f"rabbitscale run backlog: {', '.join(refused)} do(es) not apply (a "
                       f"backlog is filled to --queued, then drained)")
    settings, profile = load_stack_config(args.profile, args.profile_file)
    replicas = 1
    if args.cluster:
        settings, profile = _on_cluster(settings, profile, args.replicas)
        replicas = args.replicas or min(3, len(settings.cluster_nodes))
    elif args.replicas:
        raise BadInput("rabbitscale run: --replicas needs --cluster")
    opts = BacklogOptions(
        queued=args.queued if args.queued is not None else targets.QUEUED_MESSAGES,
        payload=args.payload_size,
        task_mix=format_task_mix(args.task_mix) if args.task_mix else BACKLOG_MIX,
        instances=args.instances, out=Path(args.out) if args.out else None,
        vhost=args.vhost, keep_vhost=args.keep_vhost,
        sample_interval_s=args.sample_interval,
        drain_timeout_s=args.drain_timeout if args.drain_timeout is not None else 600.0,
        service_time=args.drain_service_time or DRAIN_SERVICE_TIME, replicas=replicas,
        junit=Path(args.junit) if args.junit else None,
        coefficients=read_calibration(args.calibration)[0] if args.calibration
        else BrokerCoefficients())
    return asyncio.run(BacklogRun(settings, profile, opts).execute())


def _on_cluster(settings: Any, profile: Any, replicas: int | None) -> tuple[Any, Any]:
    """Settings that reach every node of the local cluster; queues with a replica count."""
    import dataclasses

    from rabbitscale.harness import cluster
    from rabbitscale.harness.overrides import with_replicas

    c = cluster.require()
    first = c.nodes[0]
    n = replicas or min(3, len(c.nodes))
    if n > len(c.nodes):
        raise BadInput(f"--replicas {n}: the local cluster has {len(c.nodes)} node(s)")
    settings = dataclasses.replace(settings, host="127.0.0.1", port=first.amqp,
                                   management_port=first.management, management_url=None,
                                   cluster_nodes=c.amqp_nodes())
    return settings, with_replicas(profile, n)


def _cmd_worker(args: argparse.Namespace) -> int:
    """A Locust worker for a master on another machine: the scenario file, its options, the
    keys and the schedule all come from the master."""
    import socket
    import subprocess
    import time

    from rabbitscale.core.errors import Unavailable

    host, _, port_text = args.master.rpartition(":") if ":" in args.master \
        else (args.master, "", "5557")
    try:
        port = int(port_text)
        if not 0 < port < 65536 or not host:
            raise ValueError
    except ValueError:
        raise BadInput(f"rabbitscale worker: --master: expected HOST[:PORT], got "
                       f"{args.master!r}") from None
    deadline = time.monotonic() + args.wait
    while True:  # a worker may well start before its master
        try:
            with socket.create_connection((host, port), timeout=5):
                break
        except OSError as exc:
            if time.monotonic() >= deadline:
                raise Unavailable(f"cannot reach the Locust master at {host}:{port} (waited "
                                  f"{args.wait:g}s): {exc.strerror or exc}; start `rabbitscale "
                                  f"run ... --expect-workers N` there") from None
            time.sleep(0.5)
    done = subprocess.run([sys.executable, "-m", "locust", "-f", "-", "--worker",
                           "--master-host", host, "--master-port", str(port),
                           "--loglevel", "WARNING"], stderr=subprocess.PIPE, text=True)
    if done.returncode != 0:
        last = (done.stderr.strip().splitlines() or ["no output"])[-1]
        raise Unavailable(f"the Locust worker stopped: {last}")
    return EXIT_OK


def _cmd_plan(args: argparse.Namespace) -> int:
    import json

    from rabbitscale.capacity.broker import BrokerCoefficients
    from rabbitscale.capacity.plan import (
        PlanInputs,
        broker_plan,
        build,
        profile_findings,
        render_table,
        verdict,
    )
    from rabbitscale.harness.overrides import load_stack_config

    if args.calibrate:
        from rabbitscale.capacity.calibrate import calibrate, render, write_calibration

        fitted, rows = calibrate(args.calibrate)
        if args.out:
            write_calibration(args.out, fitted)
        if args.json:
            print(json.dumps({"fitted": fitted, "comparisons": [
                {"quantity": r.quantity, "predicted": r.predicted, "measured": r.measured,
                 "unit": r.unit, "error_pct": r.error_pct, "note": r.note} for r in rows]},
                indent=2))
        else:
            print(render(fitted, rows))
            if args.out:
                print(f"calibration written to {args.out}: plan with `rabbitscale plan "
                      f"--calibration {args.out}`")
        return EXIT_OK
    if args.out:
        raise BadInput("rabbitscale plan: --out goes with --calibrate RUN")
    settings, profile = load_stack_config(args.profile, args.profile_file)
    known = {ep.queue for ep in profile.endpoints}
    for queue, _ in args.service_time:
        if queue not in known:
            raise BadInput(f"rabbitscale plan: --service-time: no endpoint {queue!r} in "
                           f"profile {profile.name!r}")
    coefficients, fitted_service = BrokerCoefficients(), dict[str, float]()
    if args.calibration:
        from rabbitscale.capacity.calibrate import read_calibration

        coefficients, fitted_service = read_calibration(args.calibration)
    inputs = PlanInputs(
        settings=settings, profile=profile, instances=args.instances,
        task_rate_per_s=args.task_rate, mix=args.task_mix,
        webhook_burst_per_s=args.webhook_burst, webhook_baseline_per_s=args.webhook_rate,
        burst_s=args.burst_duration, message_bytes=parse_size_bytes(args.message_size),
        worst_message_bytes=parse_size_bytes(args.worst_message_size),
        service_time_s={**{q: v for q, v in fitted_service.items() if q in known},
                        **dict(args.service_time)},
        node_memory_bytes=parse_size_bytes(args.node_memory),
        watermark_relative=args.watermark, queued_messages=args.queued_messages,
        replicas=args.replicas,
        disk_bytes=parse_size_bytes(args.disk) if args.disk else None,
        disk_free_limit_bytes=parse_size_bytes(args.disk_free_limit)
        if args.disk_free_limit else None,
        link_bps=args.link_speed, coefficients=coefficients)
    figs = build(inputs)
    findings = profile_findings(profile, settings)
    if args.json:
        print(json.dumps({"profile": profile.name, "instances": args.instances,
                          "verdict": verdict(figs), "figures": [f.as_dict() for f in figs],
                          "broker": broker_plan(inputs).as_dict(),
                          "findings": findings}, indent=2, default=str))
    else:
        print(f"capacity plan: profile {profile.name}, {args.instances} instances, "
              f"{args.task_rate * 60:g} tasks/min, webhook bursts {args.webhook_burst:g}/s "
              f"for {args.burst_duration:g}s, {args.queued_messages:,} queued x "
              f"{args.message_size}, {args.replicas} replica(s)")
        print(render_table(figs, findings))
    return EXIT_CHECK_FAILED if verdict(figs) == FAIL else EXIT_OK


def _cmd_report(args: argparse.Namespace) -> int:
    import json
    from pathlib import Path

    from rabbitscale.core.rundir import REPORT_JSON
    from rabbitscale.reports.report import build

    report = build(args.run_dir, args.baseline, args.out, args.tolerance)
    print(f"report: {report.path}")
    if args.junit:
        from rabbitscale.reports.junit import write_junit

        doc = json.loads((report.path.parent / REPORT_JSON).read_text())
        junit = write_junit(args.junit, Path(args.run_dir), doc.get("deltas"),
                            doc.get("baseline") or "")
        print(f"junit: {junit}")
    if report.regressions:
        print(f"regressions against the baseline: {', '.join(report.regressions)}")
        return EXIT_CHECK_FAILED
    return EXIT_OK


def _cmd_audit(args: argparse.Namespace) -> int:
    import json

    from rabbitscale.capacity.audit import ERROR, audit_file, load_schema

    schema = load_schema(prefer_installed=not args.snapshot)
    findings = audit_file(
        args.conf, schema=schema, target_version=args.target_version,
        container_memory_bytes=parse_size_bytes(args.container_memory)
        if args.container_memory else None,
        disk_bytes=parse_size_bytes(args.disk) if args.disk else None,
        enabled_plugins={p.strip() for p in args.plugins.split(",") if p.strip()})
    errors = sum(f.severity == ERROR for f in findings)
    if args.json:
        print(json.dumps({"file": args.conf, "schema": f"{schema.version} ({schema.source})",
                          "errors": errors, "findings": [f.as_dict() for f in findings]},
                         indent=2))
    else:
        for f in findings:
            where = f"{args.conf}:{f.line}: " if f.line else ""
            print(f"{where}{f.severity}: {f.key + ': ' if f.key else ''}{f.message}")
        print(f"{errors} error(s), {len(findings) - errors} other finding(s); schema "
              f"{schema.version} ({schema.source})")
    return EXIT_CHECK_FAILED if errors else EXIT_OK


def _cmd_doctor(args: argparse.Namespace) -> int:
    import asyncio
    import json

    from rabbitscale.capacity.doctor import diagnose, render, snapshot, verdict
    from rabbitscale.harness.management import Management
    from rabbitscale.harness.overrides import load_stack_config

    settings, profile = load_stack_config(args.profile, args.profile_file)
    if args.vhost:
        settings = settings.with_vhost(args.vhost)

    async def read() -> object:
        prometheus = None
        async with Management(settings, read_only=True) as mgmt:
            if args.prometheus:
                from rabbitscale.harness.prometheus import PrometheusSource

                prometheus = PrometheusSource(args.prometheus)
            try:
                return await snapshot(mgmt, settings.vhost, prometheus)
            finally:
                if prometheus is not None:
                    await prometheus.close()

    snap = asyncio.run(read())
    findings = diagnose(snap, profile, settings,  # type: ignore[arg-type]
                        container_memory_bytes=parse_size_bytes(args.container_memory)
                        if args.container_memory else None)
    if args.json:
        print(json.dumps({"vhost": settings.vhost, "profile": profile.name,
                          "verdict": verdict(findings),
                          "findings": [f.as_dict() for f in findings]}, indent=2, default=str))
    else:
        print(render(findings, settings.vhost, profile.name, verbose=args.verbose))
    return EXIT_CHECK_FAILED if verdict(findings) == FAIL else EXIT_OK


def _cmd_cluster(args: argparse.Namespace) -> int:
    from pathlib import Path

    from rabbitscale.harness import cluster

    base = Path(args.dir) if args.dir else cluster.default_base()
    if args.action == "up":
        c = cluster.up(args.nodes, base, args.port_offset, say=print)
        print(f"cluster of {len(c.nodes)} node(s) up; run against it with "
              f"`rabbitscale run SCENARIO --cluster`")
        for n in c.nodes:
            print(f"  {n.name}  amqp 127.0.0.1:{n.amqp}  management {n.management_url}  "
                  f"prometheus {n.prometheus_url}")
        return EXIT_OK
    if args.action == "down":
        print(f"stopped {cluster.down(base)} node(s); removed {base}")
        return EXIT_OK
    c = cluster.require(base)
    rows = cluster.status(c if not args.node else cluster.Cluster(c.base, (c.node(args.node),)))
    for r in rows:
        print(f"  {r['node']:16s} {'running' if r['running'] else 'STOPPED':8s} "
              f"amqp {r['amqp']}  management {r['management']}  prometheus {r['prometheus']}"
              f"  {r['version']}")
    return EXIT_OK if all(r["running"] for r in rows) else EXIT_CHECK_FAILED


def _cmd_find_max(args: argparse.Namespace) -> int:
    from pathlib import Path

    from rabbitscale.find_max import run_find_max
    from rabbitscale.harness.overrides import load_stack_config
    from rabbitscale.scenarios.run import RunOptions
    from rabbitscale.scenarios.schedule import Rates

    settings, profile = load_stack_config(None, args.profile_file)
    base = RunOptions(scenario=args.scenario, duration_s=args.step_duration,
                      instances=args.instances,
                      rates=Rates(1.0, targets.WEBHOOK_BASELINE_PER_S,
                                  targets.WEBHOOK_BURSTS_PER_S),
                      payload=args.payload_size, drain_timeout_s=args.drain_timeout,
                      profile_file=args.profile_file, task_mix=format_task_mix(args.task_mix))
    out = Path(args.out) if args.out else rundir.RUNS_DIR / f"find-max-{args.scenario}"
    return run_find_max(settings, profile, base, start=args.start, mix=args.task_mix,
                        out_dir=out)


def _cmd_validate(args: argparse.Namespace) -> int:
    from pathlib import Path

    from rabbitscale.harness.overrides import load_stack_config
    from rabbitscale.validation import run_validate

    settings, _ = load_stack_config(None, args.profile_file)
    out = Path(args.out) if args.out else rundir.RUNS_DIR / "validation"
    return run_validate(settings, out, args.case or None, args.search)


# --- the parser ----------------------------------------------------------------------------

_TASK_RATE = targets.TASKS_PER_MIN / 60


def _add_profile(p: argparse.ArgumentParser, choose: bool = True) -> None:
    if choose:
        p.add_argument("--profile", choices=sorted(PROFILES), default=None,
                       help="topology profile (default: the profile file's, else conduit)")
    p.add_argument("--profile-file", help="TOML profile file ([rabbitmq], [endpoints.*])")


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(prog="rabbitscale", description=(__doc__ or "").split("\n\n")[0])
    sub = p.add_subparsers(dest="command", required=True, parser_class=_Parser)

    s = sub.add_parser("stack", help="run the reference API + N consumers + webhook sink",
                       description="Exit codes: 0 stopped with nothing lost, 1 messages lost, "
                                   "2 bad input, 3 broker unreachable, 4 failed.")
    s.add_argument("--instances", type=_instances, default=3)
    _add_profile(s)
    s.add_argument("--host", default="127.0.0.1", help="address the API and sink listen on")
    s.add_argument("--api-port", type=_port, default=5000)
    s.add_argument("--prometheus-port", type=_port, default=None, metavar="PORT",
                   help="serve /metrics (Prometheus text format) on --host:PORT")
    s.add_argument("--sink-port", type=_port, default=5055)
    s.add_argument("--sink-latency", type=_duration, default=0.0, help="e.g. 50ms")
    s.add_argument("--sink-failure-ratio", type=_ratio, default=0.0)
    s.add_argument("--demo", type=_duration, default=0.0, metavar="DURATION",
                   help="run the guide's load script (1,000 webhooks/min) for DURATION, "
                        "then stop and print the ledger")
    s.add_argument("--time-scale", type=_bounded(float, 0.0001, 100, "a number"), default=1.0,
                   help="multiply retry delays and breaker windows (e.g. 0.01 for tests)")
    s.set_defaults(func=_cmd_stack)

    r = sub.add_parser("run", help="drive a scenario against the stack and judge it",
                       description="Exit codes: 0 every check passed, 1 an SLO check failed, "
                                   "2 bad input, 3 broker unreachable, 4 the run itself failed.")
    r.add_argument("scenario", choices=(*SCENARIOS, BACKLOG))
    r.add_argument("--duration", type=_duration, default=None,
                   help="load time, e.g. 2m (default 1m)")
    r.add_argument("--instances", type=_instances, default=3)
    r.add_argument("--workers", type=_bounded(int, 0, 64, "a whole number"), default=0,
                   help="Locust workers (distributed mode); 0 = one local process")
    r.add_argument("--out", help="run directory (default runs/SCENARIO-TIMESTAMP)")
    r.add_argument("--task-rate", type=_rate, default=_TASK_RATE, help="e.g. 1000/min")
    r.add_argument("--webhook-rate", type=_rate, default=targets.WEBHOOK_BASELINE_PER_S,
                   help="webhook baseline, e.g. 10/s")
    r.add_argument("--burst-rates", type=_rates, default=targets.WEBHOOK_BURSTS_PER_S,
                   help="e.g. 50/s,100/s")
    r.add_argument("--payload-size", type=_payload, default="10KB")
    r.add_argument("--task-mix", type=_mix, default=None,
                   help="e.g. video=0.3,image=0.3,spend=0.4 (backlog: video=0.5,image=0.5)")
    r.add_argument("--transport", choices=["http", "amqp"], default="http")
    r.add_argument("--users", type=_positive_int, default=None)
    r.add_argument("--scale-to", type=_instances, default=5,
                   help="scale_out: instances after the midpoint")
    r.add_argument("--thresholds", help="TOML file overriding SLO thresholds")
    _add_profile(r)
    r.add_argument("--sample-interval", type=_duration, default=1.0)
    r.add_argument("--drain-timeout", type=_duration, default=None,
                   help="default 1m (backlog: 10m)")
    r.add_argument("--vhost", help="use this existing vhost instead of a fresh one")
    r.add_argument("--keep-vhost", action="store_true")
    r.add_argument("--fault", choices=sorted(FAULTS),
                   help="inject a fault mid-run (docs/reliability.md)")
    r.add_argument("--time-scale", type=_bounded(float, 0.0001, 100, "a number"), default=1.0,
                   help="multiply retry delays and breaker windows")
    r.add_argument("--prometheus-port", type=_port, default=None, metavar="PORT",
                   help="serve live metrics at http://127.0.0.1:PORT/metrics for the whole run")
    r.add_argument("--prometheus-linger", type=_duration, default=0.0, metavar="DURATION",
                   help="keep serving after the verdict (a last scrape sees the checks)")
    r.add_argument("--junit", metavar="FILE", help="write the SLO checks as JUnit XML")
    r.add_argument("--cluster", action="store_true",
                   help="run against the local cluster (`rabbitscale cluster up`): connections "
                        "spread over its nodes and fail over, the sampler reads every node")
    r.add_argument("--replicas", type=_bounded(int, 1, 9, "a whole number"), default=None,
                   help="quorum queue members with --cluster (default min(3, nodes))")
    bl = r.add_argument_group("backlog: fill the queues with consumers paused, then drain")
    bl.add_argument("--queued", type=_bounded(int, 1, 10**8, "a whole number"), default=None,
                    help=f"messages to hold (default the guide's {targets.QUEUED_MESSAGES:,})")
    bl.add_argument("--drain-service-time", default=None, metavar="SPEC",
                    help="simulated work per message while draining, where the profile sets "
                         "none (default fixed:50ms)")
    bl.add_argument("--calibration", metavar="FILE",
                    help="broker model coefficients from `rabbitscale plan --calibrate RUN "
                         "--out FILE` (default: the measured ones, docs/benchmarks.md)")
    b = r.add_argument_group("load-test a deployed system (black-box)")
    b.add_argument("--target", metavar="URL",
                   help="the API of a system rabbitscale did not start: no stack is started, "
                        "the broker is only observed (read-only) in --vhost")
    b.add_argument("--api-key", action="append", default=[], metavar="KEY",
                   help="bearer key for the target (repeatable); or set "
                        "RABBITSCALE_TARGET_API_KEYS=k1,k2 to keep keys off the command line")
    b.add_argument("--prometheus", action="append", default=[], metavar="URL",
                   help="read the broker from rabbitmq_prometheus (http://host:15692), one per "
                        "node, instead of the management API")
    b.add_argument("--callback-url", metavar="URL",
                   help="where the target can reach rabbitscale's callback receiver (default: "
                        "a free port on 127.0.0.1)")
    b.add_argument("--poll", type=_duration, default=0.0, metavar="INTERVAL",
                   help="follow video/image tasks with GET /v1/tasks/{id} every INTERVAL "
                        "instead of a callback")
    b.add_argument("--expect-workers", type=_bounded(int, 0, 256, "a whole number"),
                   default=0, help="wait for N workers joining with `rabbitscale worker`")
    b.add_argument("--master-port", type=_port, default=5557,
                   help="port the Locust master listens on for workers")
    r.set_defaults(func=_cmd_run)

    w = sub.add_parser("worker", help="a Locust worker joining a run on another machine",
                       description="Exit codes: 0 the run ended, 2 bad input, 3 the master "
                                   "cannot be reached.")
    w.add_argument("--master", required=True, metavar="HOST[:PORT]",
                   help="the machine running `rabbitscale run ... --expect-workers N`")
    w.add_argument("--wait", type=_duration, default=60.0, metavar="DURATION",
                   help="how long to wait for the master to listen (default 60s)")
    w.set_defaults(func=_cmd_worker)

    pl = sub.add_parser("plan", help="capacity model for a profile, settings and targets",
                        description="Exit codes: 0 plan holds (OK/WARN), 1 a figure FAILs, "
                                    "2 bad input.")
    _add_profile(pl)
    pl.add_argument("--instances", type=_instances, default=targets.INSTANCES[-1])
    pl.add_argument("--task-rate", type=_rate, default=_TASK_RATE, help="e.g. 1000/min")
    pl.add_argument("--task-mix", type=_mix, default=DEFAULT_MIX)
    pl.add_argument("--webhook-burst", type=_rate, default=targets.WEBHOOK_BURSTS_PER_S[-1],
                    help="e.g. 100/s")
    pl.add_argument("--webhook-rate", type=_rate, default=targets.WEBHOOK_BASELINE_PER_S,
                    help="baseline after bursts")
    pl.add_argument("--burst-duration", type=_duration, default=300.0, help="e.g. 5m")
    pl.add_argument("--message-size", type=_payload, default="10KB")
    pl.add_argument("--worst-message-size", type=_payload, default="1MB")
    pl.add_argument("--service-time", type=_service_time, action="append", default=[],
                    metavar="QUEUE=DURATION", help="e.g. video-generation-events=30s")
    pl.add_argument("--node-memory", type=_payload, default="4GiB")
    pl.add_argument("--watermark", type=_bounded(float, 0.01, 1.0, "a fraction"),
                    default=targets.WATERMARK_RELATIVE)
    pl.add_argument("--queued", "--queued-messages", dest="queued_messages",
                    type=_bounded(int, 0, 10**9, "a whole number"),
                    default=targets.QUEUED_MESSAGES,
                    help=f"messages queued at once (default the guide's "
                         f"{targets.QUEUED_MESSAGES:,})")
    pl.add_argument("--replicas", type=_bounded(int, 1, 9, "a whole number"), default=1,
                    help="quorum queue members, one per node (default 1: the guide's compose)")
    pl.add_argument("--disk", type=_payload, default=None, metavar="SIZE",
                    help="disk under the broker's data directory, e.g. 100GB")
    pl.add_argument("--disk-free-limit", type=_payload, default=None, metavar="SIZE",
                    help="disk_free_limit (default the guide's relative 2.0 x --node-memory)")
    pl.add_argument("--link-speed", type=_typed(parse_bitrate_bps, "a link speed"),
                    default=targets.LINK_BPS, metavar="RATE",
                    help="the broker's network link, e.g. 100Mbps (the guide's), 1Gbps")
    pl.add_argument("--json", action="store_true")
    pl.add_argument("--calibrate", metavar="DIR",
                    help="fit the model to a run (or find-max) directory and print predicted "
                         "vs measured; a backlog run fits the broker model too")
    pl.add_argument("--out", metavar="FILE",
                    help="with --calibrate: write the fitted figures to FILE")
    pl.add_argument("--calibration", metavar="FILE",
                    help="plan with a file written by --calibrate ... --out FILE")
    pl.set_defaults(func=_cmd_plan)

    rp = sub.add_parser("report", help="HTML capacity report of a run directory",
                        description="Exit codes: 0 report written, 1 regressions against "
                                    "the baseline, 2 bad input or run directory.")
    rp.add_argument("run_dir")
    rp.add_argument("--baseline", help="another run directory to compare against")
    rp.add_argument("--out", help="HTML file (default RUN_DIR/report.html)")
    rp.add_argument("--junit", metavar="FILE",
                    help="write the checks (and, with --baseline, the regression flags) as "
                         "JUnit XML")
    rp.add_argument("--tolerance", type=_bounded(float, 0.0, 10.0, "a fraction"), default=0.10,
                    help="relative change counted as a regression (default 0.10)")
    rp.set_defaults(func=_cmd_report)

    au = sub.add_parser("audit", help="check a rabbitmq.conf before deploying it",
                        description="Exit codes: 0 no errors, 1 errors (the node would not "
                                    "boot or the settings do not fit), 2 unreadable input.")
    au.add_argument("conf")
    au.add_argument("--target-version", default="3.13")
    au.add_argument("--container-memory", type=_payload, default="4GiB",
                    help="memory limit of the container (default 4GiB, the compose file's)")
    au.add_argument("--disk", type=_payload, default=None, help="disk size, e.g. 50GB")
    au.add_argument("--plugins", default="rabbitmq_management",
                    help="enabled plugins, comma-separated")
    au.add_argument("--snapshot", action="store_true",
                    help="use the bundled schema snapshot even if RabbitMQ is installed")
    au.add_argument("--json", action="store_true")
    au.set_defaults(func=_cmd_audit)

    d = sub.add_parser("doctor", help="read-only audit of a live broker against the plan",
                       description="Reads the management API (and --prometheus) and never "
                                   "writes. Exit codes: 0 no FAIL, 1 a FAIL, 2 bad input, "
                                   "3 broker unreachable or not authorised.")
    _add_profile(d)
    d.add_argument("--vhost", help="the vhost the system uses (default: the configuration's)")
    d.add_argument("--prometheus", action="append", default=[], metavar="URL",
                   help="also read rabbitmq_prometheus (one per node), e.g. when the "
                        "management metrics collector is off")
    d.add_argument("--container-memory", type=_payload, default=None,
                   help="the broker container's memory limit, e.g. 4GiB: checks the watermark")
    d.add_argument("--json", action="store_true")
    d.add_argument("--verbose", action="store_true", help="show OK and INFO rows too")
    d.set_defaults(func=_cmd_doctor)

    cl = sub.add_parser("cluster", help="a local RabbitMQ cluster on this machine (no Docker)",
                        description="up: boot N nodes and join them; status: each node "
                                    "(exit 1 when one is down); down: stop them and remove "
                                    "their data. Exit codes: 2 bad input (one already runs, "
                                    "a port in use, an unknown node), 3 a node did not boot.")
    cl.add_argument("action", choices=["up", "status", "down"])
    cl.add_argument("--nodes", type=_bounded(int, 1, 9, "a whole number"), default=3)
    cl.add_argument("--node", help="status: one node only (rs2 or rs2@localhost)")
    cl.add_argument("--port-offset", type=_bounded(int, 0, 10000, "a whole number"),
                    default=0, help="added to the default ports (AMQP 5701.., management "
                                    "15701.., distribution 25701.., prometheus 35701..)")
    cl.add_argument("--dir", help=argparse.SUPPRESS)
    cl.set_defaults(func=_cmd_cluster)

    fm = sub.add_parser("find-max", help="step the arrival rate up until an SLO breaks",
                        description="Exit codes: 0 a maximum was found, 1 no step held, "
                                    "2 bad input, 3 broker unreachable.")
    fm.add_argument("scenario", choices=TASK_SCENARIOS)
    fm.add_argument("--start", type=_rate, default=None,
                    help="first rate (default: half the model's prediction)")
    fm.add_argument("--step-duration", type=_duration, default=15.0)
    fm.add_argument("--instances", type=_instances, default=3)
    fm.add_argument("--task-mix", type=_mix, default=DEFAULT_MIX)
    fm.add_argument("--payload-size", type=_payload, default="10KB")
    _add_profile(fm, choose=False)
    fm.add_argument("--drain-timeout", type=_duration, default=20.0)
    fm.add_argument("--out", help="directory for the step runs (default runs/find-max-SCENARIO)")
    fm.set_defaults(func=_cmd_find_max)

    v = sub.add_parser("validate", help="the capacity model against measurement (real broker)",
                       description="Exit codes: 0 every case within tolerance "
                                   f"({targets.MODEL_TOLERANCE:.0%}, burst "
                                   f"{targets.BURST_BACKLOG_TOLERANCE:.0%}), 1 a case is not, "
                                   "2 bad input, 3 broker unreachable.")
    v.add_argument("--case", action="append", default=[], metavar="NAME",
                   help="run only this case (repeatable): pooled, lognormal, rate_limited, "
                        "single_active, retries, burst")
    v.add_argument("--search", action="store_true",
                   help="find-max around each prediction (slower) instead of the bracket")
    v.add_argument("--profile-file", help="a profile file's [rabbitmq] settings (broker, "
                                          "prefetch defaults); the cases set their endpoints")
    v.add_argument("--out", help="directory for the runs (default runs/validation)")
    v.set_defaults(func=_cmd_validate)
    return p


def _quiet_libraries() -> None:
    """Library loggers must not add lines to a one-line error (we report what failed)."""
    logging.basicConfig(level=logging.WARNING, format="%(name)s: %(message)s")
    for name in ("aiormq", "aio_pika", "asyncio"):
        logging.getLogger(name).setLevel(logging.CRITICAL)


def main(argv: list[str] | None = None) -> int:
    """Run one command; every failure ends here as one line and its exit code."""
    _quiet_libraries()
    try:
        args = build_parser().parse_args(argv)
        return int(args.func(args))
    except RabbitscaleError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except Exception as exc:  # a bug: one line, the traceback on request
        if os.environ.get("RABBITSCALE_DEBUG"):
            raise
        print(f"error: unexpected {type(exc).__name__}: {exc} (set RABBITSCALE_DEBUG=1 for "
              f"the traceback)", file=sys.stderr)
        return EXIT_RUN_FAILED


if __name__ == "__main__":
    sys.exit(main())
