"""`rabbitscale cluster up|status|down`: RabbitMQ nodes from this machine's installation."""

from __future__ import annotations

import argparse

from rabbitscale.cli import args as a
from rabbitscale.cli.args import Parser


def parser(argv: list[str]) -> Parser:
    from rabbitscale.broker.cluster import NET_TICKTIME_S, PARTITION_HANDLING

    p = Parser(prog="rabbitscale cluster",
               description="up: boot N nodes and join them; status: each node (exit 1 when "
                           "one is down); down: stop them and remove their data.\n\nExit "
                           "codes: 2 bad input (one already runs, a port in use, an unknown "
                           "node), 3 a node did not boot.")
    p.add_argument("action", choices=["up", "status", "down"], help="up, status or down")
    p.add_argument("--nodes", type=a.bounded(int, 1, 9, "a whole number"), default=3,
                   help="up: how many nodes")
    p.add_argument("--node", help="status: one node only (rs2 or rs2@localhost)")
    p.add_argument("--port-offset", type=a.bounded(int, 0, 10000, "a whole number"),
                   default=0, help="added to the default ports (AMQP 5701.., management "
                                   "15701.., distribution 25701.., prometheus 35701..)")
    p.add_argument("--partition-handling", choices=PARTITION_HANDLING,
                   default=PARTITION_HANDLING[0],
                   help="up: what a node does on a partition (cluster_partition_handling); "
                        "recorded in every run against the cluster")
    p.add_argument("--net-ticktime", type=a.bounded(int, 1, 120, "a whole number of seconds"),
                   default=NET_TICKTIME_S,
                   help="up: seconds until an unreachable peer is declared down (Erlang's "
                        "net_ticktime; its own default is 60)")
    p.add_argument("--dir", help=argparse.SUPPRESS)
    return p


def run(args: argparse.Namespace) -> int:
    from pathlib import Path

    from rabbitscale.broker import cluster

    base = Path(args.dir) if args.dir else cluster.default_base()
    if args.action == "up":
        c = cluster.up(args.nodes, base, args.port_offset, say=print,
                       partition_handling=args.partition_handling,
                       net_ticktime=args.net_ticktime)
        print(f"cluster of {len(c.nodes)} node(s) up ({c.partition_handling}, net_ticktime "
              f"{c.net_ticktime}s); run against it with `rabbitscale run SCENARIO --cluster`")
        for n in c.nodes:
            print(f"  {n.name}  amqp {n.ip}:{n.amqp}  management {n.management_url}  "
                  f"prometheus {n.prometheus_url}")
        return 0
    if args.action == "down":
        import contextlib

        from rabbitscale.faults import partition

        running = cluster.load(base)
        if running is not None:
            with contextlib.suppress(Exception):  # a partition left behind by a killed run
                partition.clear(n.ip for n in running.nodes)
        print(f"stopped {cluster.down(base)} node(s); removed {base} and any firewall rule "
              f"of ours")
        return 0
    c = cluster.require(base)
    rows = cluster.status(c if not args.node else cluster.Cluster(c.base, (c.node(args.node),)))
    for r in rows:
        print(f"  {r['node']:16s} {'running' if r['running'] else 'STOPPED':8s} "
              f"amqp {r['amqp']}  management {r['management']}  prometheus {r['prometheus']}"
              f"  {r['version']}")
    return 0 if all(r["running"] for r in rows) else 1
