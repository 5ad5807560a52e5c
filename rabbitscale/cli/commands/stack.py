"""`rabbitscale stack`: the reference system on its own, like `docker compose up --scale`."""

from __future__ import annotations

import argparse

from rabbitscale.cli import args as a
from rabbitscale.cli import options
from rabbitscale.cli.args import Parser


def parser(argv: list[str]) -> Parser:
    p = Parser(prog="rabbitscale stack", parents=[options.instances(), options.profile()],
               description="Declare the topology, then run the API, N consumer processes and "
                           "the webhook sink until Ctrl-C; print the ledger at the stop.\n\n"
                           "Exit codes: 0 stopped with nothing lost, 1 messages lost, 2 bad "
                           "input, 3 broker unreachable, 4 failed.")
    g = p.add_argument_group("listening")
    g.add_argument("--host", default="127.0.0.1", help="address the API and sink listen on")
    g.add_argument("--api-port", type=a.port, default=5000, help="the API's port")
    g.add_argument("--sink-port", type=a.port, default=5055, help="the webhook sink's port")
    g.add_argument("--prometheus-port", type=a.port, default=None, metavar="PORT",
                   help="serve /metrics (Prometheus text format) on --host:PORT")
    g.add_argument("--webhook-allow", type=a.host_port, action="append", default=[],
                   metavar="HOST:PORT",
                   help="a place webhooks may be delivered besides the sink, e.g. a run's "
                        "callback receiver (run --callback-url); repeatable. Every other "
                        "webhook URL, loopback included, is delivered to the sink")
    g = p.add_argument_group("behaviour")
    g.add_argument("--sink-latency", type=a.duration_in(0, 60), default="0s", metavar="DURATION",
                   help="the webhook sink answers after this long")
    g.add_argument("--sink-failure-ratio", type=a.fraction, default=0.0, metavar="FRACTION",
                   help="share of webhook calls the sink fails (HTTP 500)")
    g.add_argument("--demo", type=a.duration_in(0, a.WEEK_S), default="0s", metavar="DURATION",
                   help="run the guide's load script (1,000 webhooks/min) for DURATION, then "
                        "stop and print the ledger")
    g.add_argument("--time-scale", type=a.time_scale, default=1.0, metavar="FACTOR",
                   help="multiply retry delays and breaker windows (e.g. 0.01 for tests)")
    return p


def run(args: argparse.Namespace) -> int:
    import asyncio

    from rabbitscale.harness.stack import StackOptions, run_stack
    from rabbitscale.harness.webhook_sink import SinkOptions
    from rabbitscale.topology.profile_file import load_system

    settings, profile = load_system(args.profile, args.profile_file)
    opts = StackOptions(instances=args.instances, host=args.host, api_port=args.api_port,
                        sink_port=args.sink_port, time_scale=args.time_scale,
                        demo_s=args.demo, prometheus_port=args.prometheus_port,
                        webhook_allow=tuple(args.webhook_allow),
                        sink=SinkOptions(latency_s=args.sink_latency,
                                         failure_ratio=args.sink_failure_ratio))
    return asyncio.run(run_stack(settings, profile, opts))
