"""Live metrics and CI reports: the /metrics exposition, a metrics port in use, and JUnit XML
against the schema CI tools read."""

from __future__ import annotations

import json
import shutil
import socket
from pathlib import Path
from types import SimpleNamespace

import xmlschema
from prometheus_client import generate_latest

from rabbitscale.harness.metrics import LATENCY_BUCKETS_S, Metrics
from rabbitscale.reports.junit import build as junit_build
from rabbitscale.topology.profile_file import get_profile
from tests import support

ROOT = Path(__file__).resolve().parents[2]
XSD = ROOT / "tests" / "fixtures" / "junit" / "junit-10.xsd"
FIXTURE_RUN = ROOT / "tests" / "fixtures" / "run_burst"
def _record(queue: str = "video-generation-events", status: str = "completed",
            e2e: float = 0.2) -> SimpleNamespace:
    return SimpleNamespace(queue=queue, status=status, e2e_s=e2e, queue_wait_s=0.01,
                           slot_wait_s=0.001, processing_s=0.1, sent=10.0, intended=9.99)


def test_exposition_has_the_run_figures():
    m = Metrics(scenario="sustained_tasks", run="r1", profile=get_profile("conduit"))
    m.on_publish(SimpleNamespace(message_type="VideoGenerationRequested", ok=True,
                                 outcome=SimpleNamespace(value="confirmed")))
    m.on_publish(SimpleNamespace(message_type="WebhookDeliveryRequested", ok=False,
                                 outcome=SimpleNamespace(value="rejected")))
    m.on_completion(_record())
    m.on_completion(_record(status="faulted"))
    m.set_outcome({"published": 2, "lost": 0}, [SimpleNamespace(name="lost", verdict="PASS"),
                                                SimpleNamespace(name="x", verdict="FAIL")])
    text = generate_latest(m.registry).decode()
    assert 'rabbitscale_arrivals_total{kind="video",scenario="sustained_tasks"} 1.0' in text
    assert 'rabbitscale_publishes_total{kind="webhook",outcome="rejected"} 1.0' in text
    assert 'rabbitscale_completions_total{queue="video-generation-events",status="faulted"}' \
        in text
    assert 'rabbitscale_e2e_seconds_count{queue="video-generation-events"} 1.0' in text
    assert 'rabbitscale_slo_check{check="x"} 0.0' in text
    assert 'rabbitscale_ledger_messages{field="published"} 2.0' in text
    # the guide's 5 s burst lag and 5-minute message age are bucket bounds
    assert 5.0 in LATENCY_BUCKETS_S and 300.0 in LATENCY_BUCKETS_S


def test_a_metrics_port_in_use_is_bad_input_before_anything_starts():
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        done = support.rabbitscale("run", "sustained_tasks", "--prometheus-port", str(port),
                                   timeout=60)
    assert done.returncode == 2, done.stderr
    assert "already in use" in done.stderr and done.stderr.count("\n") == 1


def test_junit_validates_against_the_schema_ci_tools_read(tmp_path):
    schema = xmlschema.XMLSchema(str(XSD))
    tree = junit_build(FIXTURE_RUN)
    out = tmp_path / "junit.xml"
    tree.write(out, encoding="UTF-8", xml_declaration=True)
    schema.validate(str(out))
    summary = json.loads((FIXTURE_RUN / "summary.json").read_text())
    cases = tree.getroot().findall(".//testcase")
    assert [c.get("name") for c in cases] == [c["name"] for c in summary["checks"]]
    failed = {c["name"] for c in summary["checks"] if c["verdict"] == "FAIL"}
    assert {c.get("name") for c in cases if c.find("failure") is not None} == failed
    # against a baseline: the regression flags are test cases too, still valid
    deltas = [{"metric": "e2e_p99_ms", "baseline": 10, "current": 20, "change_pct": 100,
               "better": "lower", "regression": True},
              {"metric": "achieved_rate", "baseline": 16, "current": 16, "change_pct": 0,
               "better": "higher", "regression": False}]
    tree = junit_build(FIXTURE_RUN, deltas, "base-run")
    tree.write(out, encoding="UTF-8", xml_declaration=True)
    schema.validate(str(out))
    suites = tree.getroot().findall("testsuite")
    assert len(suites) == 2 and suites[1].get("failures") == "1"


def test_junit_with_a_failed_and_a_skipped_check_is_still_valid(tmp_path):
    run = tmp_path / "run"
    shutil.copytree(FIXTURE_RUN, run)
    summary = json.loads((run / "summary.json").read_text())
    summary["checks"] += [
        {"name": "lost", "target": "<= 0", "measured": 3, "verdict": "FAIL", "detail": "x<y&z"},
        {"name": "order_violations", "target": "-", "measured": "not measured",
         "verdict": "SKIP", "detail": "black-box"}]
    (run / "summary.json").write_text(json.dumps(summary))
    out = tmp_path / "j.xml"
    done = support.rabbitscale("report", str(run), "--junit", str(out))
    assert done.returncode == 0, done.stderr
    xmlschema.XMLSchema(str(XSD)).validate(str(out))
    root = xmlschema.XMLSchema(str(XSD)).to_dict(str(out))
    assert root is not None
    text = out.read_text()
    assert "<skipped" in text and 'message="lost: measured 3, target &lt;= 0"' in text


# --- with a real Prometheus server ---------------------------------------------------------


