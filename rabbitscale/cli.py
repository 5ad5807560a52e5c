"""The ``rabbitscale`` command. Subcommands import their modules lazily so that quick ones
(``plan``, ``audit``) answer without loading aio-pika, pandas or matplotlib.

Exit codes: 0 success, 1 a check failed (SLO breach, messages lost), 2 bad input
(flags, config files), 3 the broker or another dependency could not be reached.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from typing import Any

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_UNAVAILABLE = 0, 1, 2, 3


class CliError(Exception):
    """A one-line error for the user; ``code`` is the exit status."""

    def __init__(self, message: str, code: int = EXIT_USAGE) -> None:
        super().__init__(message)
        self.code = code


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # one line, exit 2, like argparse but shorter
        raise CliError(f"{self.prog}: {message}", EXIT_USAGE)


def _bounded(kind: type, lo: float, hi: float | None, what: str) -> Callable[[str], Any]:
    """An argparse type: ``kind(text)`` within [lo, hi], with a one-line message otherwise."""

    def parse(text: str) -> Any:
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {what}, got {text!r}") from None
        if value < lo or (hi is not None and value > hi):
            bound = f"between {lo} and {hi}" if hi is not None else f"at least {lo}"
            raise argparse.ArgumentTypeError(f"must be {bound}, got {value}")
        return value

    return parse


_positive_int = _bounded(int, 1, None, "a whole number")
_port = _bounded(int, 0, 65535, "a port number")
_ratio = _bounded(float, 0, 1, "a number")


def _duration(text: str) -> float:
    from rabbitscale.core.units import UnitError, parse_duration_s

    try:
        return parse_duration_s(text)
    except UnitError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _cmd_stack(args: argparse.Namespace) -> int:
    import asyncio

    from rabbitscale.harness.overrides import load_stack_config
    from rabbitscale.harness.stack import StackOptions, run_stack
    from rabbitscale.harness.webhook_sink import SinkOptions

    settings, profile = load_stack_config(args.profile, args.profile_file)
    opts = StackOptions(instances=args.instances, profile=args.profile,
                        profile_file=args.profile_file, host=args.host, api_port=args.api_port,
                        sink_port=args.sink_port, time_scale=args.time_scale,
                        demo_s=args.demo, sink=SinkOptions(latency_s=args.sink_latency,
                                         failure_ratio=args.sink_failure_ratio))
    return asyncio.run(run_stack(settings, profile, opts))


def _rate(text: str) -> float:
    from rabbitscale.core.units import UnitError, parse_rate_per_s

    try:
        value = parse_rate_per_s(text)
    except UnitError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    if value <= 0:
        raise argparse.ArgumentTypeError(f"rate must be positive, got {text!r}")
    return value


def _rates(text: str) -> tuple[float, ...]:
    return tuple(_rate(part) for part in text.split(",") if part.strip())


def _size(text: str) -> str:
    from rabbitscale.core.units import UnitError, parse_size_bytes

    try:
        if parse_size_bytes(text) < 1:
            raise UnitError(f"size must be at least 1 byte, got {text!r}")
    except UnitError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    return text


def _cmd_run(args: argparse.Namespace) -> int:
    import asyncio
    from pathlib import Path

    from rabbitscale.harness.overrides import load_stack_config
    from rabbitscale.scenarios.run import Run, RunOptions
    from rabbitscale.scenarios.schedule import Rates

    if args.duration < 5:
        raise CliError("rabbitscale run: --duration must be at least 5s")
    settings, profile = load_stack_config(None, args.profile_file)
    opts = RunOptions(
        scenario=args.scenario, duration_s=args.duration, instances=args.instances,
        workers=args.workers, out=Path(args.out) if args.out else None,
        rates=Rates(args.task_rate, args.webhook_rate, args.burst_rates),
        payload=args.payload_size, transport=args.transport, users=args.users,
        task_mix=",".join(f"{k}={v}" for k, v in args.task_mix.items()),
        scale_to=args.scale_to, sample_interval_s=args.sample_interval,
        drain_timeout_s=args.drain_timeout, thresholds_file=args.thresholds,
        vhost=args.vhost, keep_vhost=args.keep_vhost, profile_file=args.profile_file,
        fault=args.fault, time_scale=args.time_scale)
    return asyncio.run(Run(settings, profile, opts).execute())


def _queue_durations(text: str) -> tuple[str, float]:
    queue, sep, value = text.partition("=")
    if not sep or not queue:
        raise argparse.ArgumentTypeError(f"expected QUEUE=DURATION, got {text!r}")
    return queue, _duration(value)


def _cmd_plan(args: argparse.Namespace) -> int:
    import json

    from rabbitscale.capacity.plan import (
        FAIL,
        PlanInputs,
        build,
        profile_findings,
        render_table,
        verdict,
    )
    from rabbitscale.core.units import parse_size_bytes
    from rabbitscale.harness.overrides import load_stack_config

    if args.calibrate:
        from rabbitscale.capacity.calibrate import CalibrationError, calibrate, render

        try:
            fitted, rows = calibrate(args.calibrate)
        except CalibrationError as exc:
            raise CliError(str(exc)) from None
        if args.json:
            print(json.dumps({"fitted": fitted, "comparisons": [
                {"quantity": r.quantity, "predicted": r.predicted, "measured": r.measured,
                 "unit": r.unit, "error_pct": r.error_pct, "note": r.note} for r in rows]},
                indent=2))
        else:
            print(render(fitted, rows))
        return EXIT_OK
    settings, profile = load_stack_config(args.profile, args.profile_file)
    known = {ep.queue for ep in profile.endpoints}
    for queue, _ in args.service_time:
        if queue not in known:
            raise CliError(f"rabbitscale plan: --service-time: no endpoint {queue!r} in "
                           f"profile {profile.name!r}")
    mix = args.task_mix
    inputs = PlanInputs(
        settings=settings, profile=profile, instances=args.instances,
        task_rate_per_s=args.task_rate, mix=mix, webhook_burst_per_s=args.webhook_burst,
        webhook_baseline_per_s=args.webhook_rate, burst_s=args.burst_duration,
        message_bytes=parse_size_bytes(args.message_size),
        worst_message_bytes=parse_size_bytes(args.worst_message_size),
        service_time_s=dict(args.service_time),
        node_memory_bytes=parse_size_bytes(args.node_memory),
        watermark_relative=args.watermark, queued_messages=args.queued_messages)
    figs = build(inputs)
    findings = profile_findings(profile, settings)
    if args.json:
        print(json.dumps({"profile": profile.name, "instances": args.instances,
                          "verdict": verdict(figs), "figures": [f.as_dict() for f in figs],
                          "findings": findings}, indent=2, default=str))
    else:
        print(f"capacity plan: profile {profile.name}, {args.instances} instances, "
              f"{args.task_rate * 60:g} tasks/min, webhook bursts {args.webhook_burst:g}/s "
              f"for {args.burst_duration:g}s")
        print(render_table(figs, findings))
    return EXIT_FAILED if verdict(figs) == FAIL else EXIT_OK


def _cmd_report(args: argparse.Namespace) -> int:
    import json

    from rabbitscale.reports.report import build
    from rabbitscale.reports.rundir import ReportError

    try:
        out = build(args.run_dir, args.baseline, args.out, args.tolerance)
    except ReportError as exc:
        raise CliError(str(exc)) from None
    print(f"report: {out}")
    regressions = json.loads((out.parent / "report.json").read_text())["regressions"]
    if regressions:
        print(f"regressions against the baseline: {', '.join(regressions)}")
        return EXIT_FAILED
    return EXIT_OK


def _cmd_audit(args: argparse.Namespace) -> int:
    import json

    from rabbitscale.capacity.audit import ERROR, AuditError, audit_file, load_schema
    from rabbitscale.core.units import parse_size_bytes

    try:
        schema = load_schema(prefer_installed=not args.snapshot)
        findings = audit_file(
            args.conf, schema=schema, target_version=args.target_version,
            container_memory_bytes=parse_size_bytes(args.container_memory)
            if args.container_memory else None,
            disk_bytes=parse_size_bytes(args.disk) if args.disk else None,
            enabled_plugins={p.strip() for p in args.plugins.split(",") if p.strip()})
    except AuditError as exc:
        raise CliError(str(exc)) from None
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
    return EXIT_FAILED if errors else EXIT_OK


def _mix(text: str) -> dict[str, float]:
    mix = {}
    for part in text.split(","):
        kind, _, weight = part.partition("=")
        try:
            value = float(weight)
        except ValueError:
            raise argparse.ArgumentTypeError(f"bad weight in {part!r}") from None
        if kind.strip() not in ("video", "image", "spend") or value < 0:
            raise argparse.ArgumentTypeError(f"bad entry {part!r} (video|image|spend=weight)")
        mix[kind.strip()] = value
    if not sum(mix.values()):
        raise argparse.ArgumentTypeError("weights must not all be 0")
    return mix


def _cmd_find_max(args: argparse.Namespace) -> int:
    from pathlib import Path

    from rabbitscale.capacity.find_max import run_find_max
    from rabbitscale.harness.overrides import load_stack_config
    from rabbitscale.scenarios.run import RunOptions
    from rabbitscale.scenarios.schedule import Rates

    if args.scenario not in ("sustained_tasks", "scale_out"):
        raise CliError("rabbitscale find-max: the task-stream scenarios are sustained_tasks "
                       "and scale_out")
    settings, profile = load_stack_config(None, args.profile_file)
    mix = args.task_mix
    base = RunOptions(scenario=args.scenario, duration_s=args.step_duration,
                      instances=args.instances, rates=Rates(1.0, 10.0, (50.0, 100.0)),
                      payload=args.payload_size, drain_timeout_s=args.drain_timeout,
                      profile_file=args.profile_file,
                      task_mix=",".join(f"{k}={v}" for k, v in mix.items()))
    out = Path(args.out) if args.out else Path("runs") / f"find-max-{args.scenario}"
    return run_find_max(settings, profile, base, start=args.start, mix=mix, out_dir=out)


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(prog="rabbitscale", description=__doc__.split("\n\n")[0])
    sub = p.add_subparsers(dest="command", required=True, parser_class=_Parser)

    s = sub.add_parser("stack", help="run the reference API + N consumers + webhook sink")
    s.add_argument("--instances", type=_positive_int, default=3)
    s.add_argument("--profile", choices=["conduit", "guide"], default=None,
                   help="topology profile (default: the profile file's, else conduit)")
    s.add_argument("--profile-file", help="TOML profile file ([rabbitmq], [endpoints.*])")
    s.add_argument("--host", default="127.0.0.1", help="address the API and sink listen on")
    s.add_argument("--api-port", type=_port, default=5000)
    s.add_argument("--sink-port", type=_port, default=5055)
    s.add_argument("--sink-latency", type=_duration, default=0.0, help="e.g. 50ms")
    s.add_argument("--sink-failure-ratio", type=_ratio, default=0.0)
    s.add_argument("--demo", type=_duration, default=0.0, metavar="DURATION",
                   help="run the guide's load script (1,000 webhooks/min) for DURATION, "
                        "then stop and print the ledger")
    s.add_argument("--time-scale", type=float, default=1.0,
                   help="multiply retry delays and breaker windows (e.g. 0.01 for tests)")
    s.set_defaults(func=_cmd_stack)

    r = sub.add_parser("run", help="drive a scenario against the stack and judge it",
                       description="Exit codes: 0 every check passed, 1 an SLO check failed, "
                                   "2 bad input, 3 broker unreachable, 4 the run itself failed.")
    r.add_argument("scenario", choices=["sustained_tasks", "webhook_burst", "mixed_peak",
                                        "scale_out"])
    r.add_argument("--duration", type=_duration, default=60.0, help="load time, e.g. 2m")
    r.add_argument("--instances", type=_positive_int, default=3)
    r.add_argument("--workers", type=_bounded(int, 0, 64, "a whole number"), default=0,
                   help="Locust workers (distributed mode); 0 = one local process")
    r.add_argument("--out", help="run directory (default runs/SCENARIO-TIMESTAMP)")
    r.add_argument("--task-rate", type=_rate, default=1000 / 60, help="e.g. 1000/min")
    r.add_argument("--webhook-rate", type=_rate, default=10.0, help="webhook baseline, e.g. 10/s")
    r.add_argument("--burst-rates", type=_rates, default=(50.0, 100.0), help="e.g. 50/s,100/s")
    r.add_argument("--payload-size", type=_size, default="10KB")
    r.add_argument("--task-mix", type=_mix, default={"video": 0.3, "image": 0.3, "spend": 0.4},
                   help="e.g. video=0.3,image=0.3,spend=0.4")
    r.add_argument("--transport", choices=["http", "amqp"], default="http")
    r.add_argument("--users", type=_positive_int, default=None)
    r.add_argument("--scale-to", type=_positive_int, default=5,
                   help="scale_out: instances after the midpoint")
    r.add_argument("--thresholds", help="TOML file overriding SLO thresholds")
    r.add_argument("--profile-file")
    r.add_argument("--sample-interval", type=_duration, default=1.0)
    r.add_argument("--drain-timeout", type=_duration, default=60.0)
    r.add_argument("--vhost", help="use this existing vhost instead of a fresh one")
    r.add_argument("--keep-vhost", action="store_true")
    r.add_argument("--fault", choices=["kill_consumer", "close_connections", "broker_restart",
                                       "memory_alarm", "overflow", "webhook_failures", "poison",
                                       "sac_failover"],
                   help="inject a fault mid-run (docs/reliability.md)")
    r.add_argument("--time-scale", type=_bounded(float, 0.0001, 100, "a number"), default=1.0,
                   help="multiply retry delays and breaker windows")
    r.set_defaults(func=_cmd_run)

    pl = sub.add_parser("plan", help="capacity model for a profile, settings and targets",
                        description="Exit codes: 0 plan holds (OK/WARN), 1 a figure FAILs, "
                                    "2 bad input.")
    pl.add_argument("--profile", choices=["conduit", "guide"], default=None)
    pl.add_argument("--profile-file")
    pl.add_argument("--instances", type=_positive_int, default=5)
    pl.add_argument("--task-rate", type=_rate, default=1000 / 60, help="e.g. 1000/min")
    pl.add_argument("--task-mix", type=_mix, default={"video": 0.3, "image": 0.3, "spend": 0.4})
    pl.add_argument("--webhook-burst", type=_rate, default=100.0, help="e.g. 100/s")
    pl.add_argument("--webhook-rate", type=_rate, default=10.0, help="baseline after bursts")
    pl.add_argument("--burst-duration", type=_duration, default=300.0, help="e.g. 5m")
    pl.add_argument("--message-size", type=_size, default="10KB")
    pl.add_argument("--worst-message-size", type=_size, default="1MB")
    pl.add_argument("--service-time", type=_queue_durations, action="append", default=[],
                    metavar="QUEUE=DURATION", help="e.g. video-generation-events=30s")
    pl.add_argument("--node-memory", type=_size, default="4GiB")
    pl.add_argument("--watermark", type=_bounded(float, 0.01, 1.0, "a fraction"), default=0.6)
    pl.add_argument("--queued-messages", type=_bounded(int, 0, None, "a whole number"),
                    default=100_000)
    pl.add_argument("--json", action="store_true")
    pl.add_argument("--calibrate", metavar="DIR",
                    help="fit service times and broker memory per message from a run (or "
                         "find-max) directory and print predicted vs measured")
    pl.set_defaults(func=_cmd_plan)

    rp = sub.add_parser("report", help="HTML capacity report of a run directory",
                        description="Exit codes: 0 report written, 1 regressions against "
                                    "the baseline, 2 bad input or run directory.")
    rp.add_argument("run_dir")
    rp.add_argument("--baseline", help="another run directory to compare against")
    rp.add_argument("--out", help="HTML file (default RUN_DIR/report.html)")
    rp.add_argument("--tolerance", type=_bounded(float, 0.0, 10.0, "a fraction"), default=0.10,
                    help="relative change counted as a regression (default 0.10)")
    rp.set_defaults(func=_cmd_report)

    au = sub.add_parser("audit", help="check a rabbitmq.conf before deploying it",
                        description="Exit codes: 0 no errors, 1 errors (the node would not "
                                    "boot or the settings do not fit), 2 unreadable input.")
    au.add_argument("conf")
    au.add_argument("--target-version", default="3.13")
    au.add_argument("--container-memory", type=_size, default="4GiB",
                    help="memory limit of the container (default 4GiB, the compose file's)")
    au.add_argument("--disk", type=_size, default=None, help="disk size, e.g. 50GB")
    au.add_argument("--plugins", default="rabbitmq_management",
                    help="enabled plugins, comma-separated")
    au.add_argument("--snapshot", action="store_true",
                    help="use the bundled schema snapshot even if RabbitMQ is installed")
    au.add_argument("--json", action="store_true")
    au.set_defaults(func=_cmd_audit)

    fm = sub.add_parser("find-max", help="step the arrival rate up until an SLO breaks",
                        description="Exit codes: 0 a maximum was found, 1 no step held, "
                                    "2 bad input.")
    fm.add_argument("scenario", choices=["sustained_tasks", "scale_out"])
    fm.add_argument("--start", type=_rate, default=None,
                    help="first rate (default: half the model's prediction)")
    fm.add_argument("--step-duration", type=_duration, default=15.0)
    fm.add_argument("--instances", type=_positive_int, default=3)
    fm.add_argument("--task-mix", type=_mix, default={"video": 0.3, "image": 0.3, "spend": 0.4})
    fm.add_argument("--payload-size", type=_size, default="10KB")
    fm.add_argument("--profile-file")
    fm.add_argument("--drain-timeout", type=_duration, default=20.0)
    fm.add_argument("--out", help="directory for the step runs (default runs/find-max-SCENARIO)")
    fm.set_defaults(func=_cmd_find_max)
    return p


def main(argv: list[str] | None = None) -> int:
    from rabbitscale.harness.config import ConfigError

    try:
        args = build_parser().parse_args(argv)
        return args.func(args)
    except CliError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return exc.code
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        return 130
    except (ConnectionError, OSError) as exc:
        print(f"error: cannot reach a dependency: {exc}", file=sys.stderr)
        return EXIT_UNAVAILABLE


if __name__ == "__main__":
    sys.exit(main())
