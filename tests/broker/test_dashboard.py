"""The Grafana dashboard's queries name metrics that a run or the live broker's
rabbitmq_prometheus export."""

from __future__ import annotations

import json
import os
import re
import urllib.parse
import urllib.request
from pathlib import Path

from prometheus_client import generate_latest

from rabbitscale.broker.prometheus import RAFT
from rabbitscale.harness.metrics import Metrics

ROOT = Path(__file__).resolve().parents[2]
DASHBOARD = ROOT / "deploy" / "grafana" / "rabbitscale.json"


def _names(exposition: str) -> set[str]:
    """Metric names in a text exposition, histogram/counter suffixes included."""
    names = set()
    for line in exposition.splitlines():
        if line.startswith("# TYPE "):
            name, kind = line.split()[2:4]
            names.add(name)
            if kind == "counter":
                names.add(name + "_total")
            if kind == "histogram":
                names.update({name + "_bucket", name + "_sum", name + "_count"})
        elif line and not line.startswith("#"):
            names.add(re.split(r"[{ ]", line, maxsplit=1)[0])
    return names


def test_dashboard_queries_name_exported_metrics():
    """Every panel's query names a metric the run exports or rabbitmq_prometheus does (read
    from the live broker's own endpoints)."""
    ours = _names(generate_latest(Metrics().registry).decode())
    host = os.environ.get("CONDUITLLM__RABBITMQ__HOST", "127.0.0.1")
    theirs: set[str] = set()
    for path in ("/metrics", "/metrics/per-object"):
        with urllib.request.urlopen(f"http://{host}:15692{path}", timeout=10) as resp:
            theirs |= _names(resp.read().decode())
    # the 4.2 names of the raft gauges, which a 3.x broker cannot show (the queries ask for
    # either: `old or new`)
    theirs |= {new for _, new in RAFT.values()}
    dash = json.loads(DASHBOARD.read_text())
    exprs = [t["expr"] for p in dash["panels"] for t in p["targets"]]
    assert len(exprs) >= 10
    functions = {"sum", "rate", "by", "histogram_quantile", "le", "queue", "kind", "outcome",
                 "status", "instance", "process", "without", "max", "avg", "job", "vhost",
                 "or"}
    for expr in exprs:
        bare = re.sub(r"\[[0-9]+[smh]\]", "", re.sub(r'"[^"]*"', "", expr))  # ranges, strings
        words = set(re.findall(r"[a-zA-Z_:][a-zA-Z0-9_:]*", bare))
        metrics = {w for w in words if w.startswith(("rabbitscale_", "rabbitmq_"))}
        assert metrics, expr
        assert metrics <= ours | theirs, (expr, metrics - ours - theirs)
        assert words - metrics <= functions, (expr, words - metrics - functions)
    assert any("5000" in json.dumps(p.get("fieldConfig")) for p in dash["panels"])  # critical
    # each raft gauge asked for under both names
    for old, new in RAFT.values():
        assert any(old in e and new in e for e in exprs), (old, new)




def test_the_run_exports_only_its_own_metrics():
    """No rabbitmq_* name: the broker's figures come from its rabbitmq_prometheus, which the
    dashboard scrapes; re-exporting them counted each queue twice."""
    names = _names(generate_latest(Metrics().registry).decode())
    assert names and all(n.startswith("rabbitscale_") for n in names), sorted(names)
