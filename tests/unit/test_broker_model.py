"""The broker side: the broker model's arithmetic, `run backlog` end to end on the real broker
(a small one on the shared node, the guide's 100,000 on a fresh node of our own), calibration
from it, and the checks failing where they must (a wrong model, a slow drain, a loss)."""

from __future__ import annotations

import json
import subprocess
from dataclasses import replace
from pathlib import Path

import pytest

from rabbitscale.capacity import broker
from rabbitscale.capacity.calibrate import read_calibration
from rabbitscale.capacity.plan import PlanInputs, broker_plan
from rabbitscale.core.errors import BadInput
from rabbitscale.engine.backlog import (
    BacklogFacts,
    fill_plan,
    judge,
    measure,
    model_checks,
    predicted_drain_s,
    with_service_time,
)
from rabbitscale.topology.profile_file import get_profile
from rabbitscale.topology.settings import RabbitSettings
from tests import support

CONDUIT = get_profile("conduit")

ROOT = Path(__file__).resolve().parents[2]
KB10 = 10_000
WAL = broker.WAL_MAX_BYTES


def rabbitscale(*args: str, env: dict[str, str] | None = None, timeout: float = 600
                ) -> subprocess.CompletedProcess[str]:
    return support.rabbitscale(*args, timeout=timeout, environ=env)


# --- the model ------------------------------------------------------------------------------


def test_memory_is_bounded_by_the_wal_not_by_the_backlog():
    c = broker.BrokerCoefficients()
    small = broker.memory_growth_bytes(1_000, KB10, c=c)
    assert small == pytest.approx(1_000 * (KB10 * c.alloc_overhead
                                           + c.index_bytes_per_message))
    # beyond the WAL, bodies held stop growing: only the per-message index does
    a = broker.memory_growth_bytes(200_000, KB10, c=c)
    b = broker.memory_growth_bytes(400_000, KB10, c=c)
    assert b - a == pytest.approx(200_000 * c.index_bytes_per_message)
    assert broker.bodies_in_memory_bytes(400_000, KB10, c=c) == WAL * (1 + c.rollover_overlap)


def test_disk_counts_segments_replicas_and_the_wal():
    c = broker.BrokerCoefficients()
    in_wal = broker.disk_bytes(10_000, KB10, c=c)  # 100 MB: never left the WAL
    assert in_wal == pytest.approx(10_000 * (KB10 + c.segment_overhead_bytes))
    big = broker.disk_bytes(100_000, KB10, c=c)
    assert big == pytest.approx(100_000 * (KB10 + c.segment_overhead_bytes) + WAL)
    assert broker.disk_bytes(100_000, KB10, replicas_on_disk=3, c=c) == pytest.approx(3 * big)


def test_network_and_ceiling():
    net = broker.network_bps(100, KB10, replicas=3)
    assert net["in"] == net["out"] == 100 * (KB10 + broker.AMQP_FRAMING_BYTES) * 8
    assert net["replication"] == 100 * KB10 * 8 * 2
    assert broker.network_bps(100, KB10)["replication"] == 0
    c = replace(broker.BrokerCoefficients(), replica_ceiling_factor=0.5)
    assert broker.publish_ceiling_per_s(KB10, 3, c) == broker.publish_ceiling_per_s(KB10, 1, c) / 2


def test_fit_reproduces_a_measurement():
    c = broker.BrokerCoefficients()
    n, size = 100_000, 10_500
    grown = broker.memory_growth_bytes(n, size, c=replace(c, alloc_overhead=1.4))
    disk = broker.stored_bytes(n, size, c=replace(c, segment_overhead_bytes=900))
    fitted = broker.fit(grown, n, size, disk, base=c, baseline_bytes=160e6,
                        publish_rate_per_s=5000)
    assert fitted.alloc_overhead == pytest.approx(1.4, rel=1e-3)
    assert fitted.segment_overhead_bytes == pytest.approx(900, rel=1e-3)
    assert fitted.baseline_bytes == 160e6
    assert fitted.publish_ceiling_bytes_per_s == pytest.approx(5000 * size)


def test_plan_broker_figures_and_verdicts():
    base = PlanInputs(RabbitSettings(), CONDUIT, mix={"video": 1, "image": 1})
    b = broker_plan(base)
    assert b.memory_bytes > b.inputs["coefficients"]["baseline_bytes"]
    assert all(isinstance(v, float) for v in (b.memory_bytes, b.disk_bytes, b.network_in_bps,
                                              b.network_out_bps))
    verdicts = {f.name: f.verdict for f in b.figures}
    assert verdicts["disk per node, backlog at its peak"] == "INFO"  # no --disk given
    assert "FAIL" not in verdicts.values()
    small_disk = {f.name: f.verdict for f in broker_plan(replace(base, disk_bytes=5e9)).figures}
    assert small_disk["disk per node, backlog at its peak"] == "FAIL"  # + 8.6 GB free limit
    slow_link = {f.name: f.verdict for f in broker_plan(replace(base, link_bps=5e6)).figures}
    assert slow_link["network in, busiest node"] == "FAIL"
    three = broker_plan(replace(base, replicas=3))
    assert three.network_out_bps > b.network_out_bps and three.replication_bps > 0
    tiny = {f.name: f.verdict for f in broker_plan(replace(base, node_memory_bytes=1e9)).figures}
    assert tiny["node memory, backlog at its peak"] == "FAIL"


def test_plan_json_broker_and_bad_flags():
    done = rabbitscale("plan", "--json", "--task-mix", "video=1,image=1", "--disk", "100GB",
                       "--link-speed", "1Gbps", "--replicas", "3")
    assert done.returncode == 0, done.stdout + done.stderr
    b = json.loads(done.stdout)["broker"]
    for key in ("memory_bytes", "disk_bytes", "network_in_bps", "network_out_bps"):
        assert isinstance(b[key], float) and b[key] > 0
    assert b["inputs"]["replicas"] == 3 and b["inputs"]["link_bps"] == 1e9
    assert b["inputs"]["queued_messages"] == 100_000
    for argv in (["--link-speed", "fast"], ["--disk", "big"], ["--replicas", "0"],
                 ["--queued", "-1"], ["--calibration", "/nonexistent.json"],
                 ["--out", "x.json"]):
        done = rabbitscale("plan", *argv)
        assert done.returncode == 2, argv
        assert done.stderr.count("\n") == 1 and "Traceback" not in done.stderr, done.stderr


def test_calibration_files_are_checked(tmp_path):
    good = tmp_path / "good.json"
    good.write_text(json.dumps({"service_time_s": {"video-generation-events": 0.05},
                                "broker": {"alloc_overhead": 1.1, "source": "here"}}))
    c, svc = read_calibration(good)
    assert c.alloc_overhead == 1.1 and c.source == "here"
    assert svc == {"video-generation-events": 0.05}
    for doc in ({"broker": {"alloc_overhead": -1}}, {"broker": {"nope": 1}},
                {"broker": {"alloc_overhead": "1.2"}}, {"broker": [1]},
                {"service_time_s": {"q": "fast"}}):
        bad = tmp_path / "bad.json"
        bad.write_text(json.dumps(doc))
        with pytest.raises(BadInput) as exc:
            read_calibration(bad)
        assert "\n" not in str(exc.value)
    (tmp_path / "junk.json").write_text("{")
    with pytest.raises(BadInput):
        read_calibration(tmp_path / "junk.json")


# --- the scenario's pure parts --------------------------------------------------------------


def test_fill_plan_sums_and_refuses_what_a_queue_cannot_hold():
    plan = fill_plan(CONDUIT.resolved(RabbitSettings()), "video=1,image=1", 1001)
    assert sum(n for _, n in plan.values()) == 1001
    with pytest.raises(BadInput, match="x-max-length is 10,000"):
        fill_plan(CONDUIT.resolved(RabbitSettings()), "video=0.3,image=0.3,spend=0.4", 100_000)
    with pytest.raises(BadInput):
        fill_plan(CONDUIT, "video=1", 0)


def _rows(base_mem: float, peak_mem: float, base_dir: float, peak_dir: float) -> list[dict]:
    common = {"node": "n1", "mem_limit": 10e9, "mem_alarm": "False", "disk_free": 80e9,
              "disk_free_limit": 50e6, "disk_alarm": "False"}
    return [{**common, "t": 0, "mem_used": base_mem, "rss": base_mem, "data_dir_bytes": base_dir},
            {**common, "t": 2, "mem_used": peak_mem, "rss": peak_mem, "data_dir_bytes": peak_dir},
            {**common, "t": 3, "mem_used": base_mem, "rss": base_mem, "data_dir_bytes": peak_dir}]


def _facts(nodes: dict, **kw) -> BacklogFacts:
    base = dict(queued=100_000, published=100_000, unconfirmed=0, message_bytes=10_500,
                fill_s=20, drain_s=100, predicted_drain_s=100, completed=100_000, faulted=0,
                still_queued=0, duplicates=0, nodes=nodes,
                predicted_memory_growth_bytes=1.0e9, predicted_disk_bytes=1.6e9,
                predicted_stored_bytes=1.6e9)
    return BacklogFacts(**{**base, **kw})


def test_checks_fail_where_they_must():
    nodes = measure(_rows(150e6, 850e6, 1e6, 1.6e9 + 1e6), fill_start=1)
    assert nodes["n1"]["memory_growth_bytes"] == pytest.approx(700e6)
    assert nodes["n1"]["disk_growth_bytes"] == pytest.approx(1.6e9)
    assert nodes["n1"]["disk_settled_bytes"] == pytest.approx(1.6e9)  # no drain in these rows
    drained = measure(_rows(150e6, 850e6, 1e6, 1.6e9 + 1e6)
                      + [{**_rows(0, 0, 0, 0)[0], "t": 4, "data_dir_bytes": 2e6}], 1, 3.5)
    assert drained["n1"]["disk_settled_bytes"] == pytest.approx(1.6e9)  # before the drain
    _, checks = judge(_facts(nodes))
    assert {c.name: c.verdict for c in checks} == {
        "queued_ratio": "PASS", "peak_memory_fraction_of_watermark": "PASS",
        "memory_alarm": "PASS", "disk_free_above_limit": "PASS", "drain_time_s": "PASS",
        "unfinished_after_drain": "PASS", "lost": "PASS", "model_memory_bound": "PASS",
        "model_disk_error": "PASS", "model_disk_bound": "PASS"}
    # a deliberately wrong model: memory below the measured peak, disk off by half
    wrong = {c.name: c.verdict for c in model_checks(_facts(
        nodes, predicted_memory_growth_bytes=500e6, predicted_disk_bytes=0.8e9,
        predicted_stored_bytes=0.8e9))}
    assert wrong == {"model_memory_bound": "WARN", "model_disk_error": "WARN",
                     "model_disk_bound": "WARN"}
    loose = {c.name: c.verdict for c in model_checks(_facts(
        nodes, predicted_memory_growth_bytes=1.5e9))}
    assert loose["model_memory_bound"] == "WARN"  # a bound more than twice the peak
    slow = {c.name: c.verdict for c in judge(_facts(nodes, drain_s=130))[1]}
    assert slow["drain_time_s"] == "FAIL"
    stuck = {c.name: c.verdict for c in judge(_facts(nodes, drain_s=None))[1]}
    assert stuck["drain_time_s"] == "FAIL"
    lost = {c.name: c.verdict for c in judge(_facts(nodes, completed=99_990))[1]}
    assert lost["lost"] == "FAIL"
    hot = measure([{**r, "mem_limit": 900e6} for r in _rows(150e6, 850e6, 1e6, 2e6)], 1)
    assert {c.name: c.verdict for c in judge(_facts(hot))[1]}[
        "peak_memory_fraction_of_watermark"] == "FAIL"


def test_drain_prediction_follows_the_slowest_queue():
    profile = with_service_time(CONDUIT, "fixed:50ms").resolved(RabbitSettings())
    plan = fill_plan(profile, "video=1,image=1", 100_000)
    d = predicted_drain_s(profile, plan, 3, 10_500, broker.BrokerCoefficients())
    # image-generation-events is single-active-consumer: 1 x min(50, prefetch 25) / 50 ms
    assert d["per_queue_s"]["image-generation-events"] == pytest.approx(50_000 / 500)
    assert d["per_queue_s"]["video-generation-events"] == pytest.approx(50_000 / 1500)
    assert d["drain_s"] == pytest.approx(100)
    # the credit held 10 ms after each work (the ack waits on the completion record): where
    # prefetch binds, each of the 25 credits turns over per 60 ms; a queue without a hold
    # given keeps its figure
    held = predicted_drain_s(profile, plan, 3, 10_500, broker.BrokerCoefficients(),
                             hold_s={"image-generation-events": 0.010})
    assert held["per_queue_s"]["image-generation-events"] == pytest.approx(50_000 / (25 / 0.06))
    assert held["per_queue_s"]["video-generation-events"] == pytest.approx(50_000 / 1500)
    assert held["drain_s"] == pytest.approx(120)


def test_bad_backlog_flags_exit_2():
    for argv in (["--queued", "0"], ["--queued", "many"], ["--duration", "10s"],
                 ["--fault", "poison"], ["--task-mix", "video=0.3,image=0.3,spend=0.4"],
                 ["--drain-service-time", "soon"], ["--calibration", "/nonexistent.json"]):
        done = rabbitscale("run", "backlog", *argv, timeout=60)
        assert done.returncode == 2, (argv, done.stdout, done.stderr)
        assert done.stderr.count("\n") == 1 and "Traceback" not in done.stderr, done.stderr
    done = rabbitscale("run", "sustained_tasks", "--queued", "5", timeout=60)
    assert done.returncode == 2 and "backlog" in done.stderr


# --- on the real broker ---------------------------------------------------------------------


