import json
import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from rabbitscale.capacity import model
from rabbitscale.capacity.plan import PlanInputs, build, profile_findings, verdict
from rabbitscale.cli import main
from rabbitscale.core.units import (
    UnitError,
    format_bytes,
    parse_duration_s,
    parse_rate_per_s,
    parse_size_bytes,
)
from rabbitscale.harness.config import RabbitSettings
from rabbitscale.harness.profiles import CONDUIT, GUIDE


def test_units_are_explicit():
    assert parse_size_bytes("10KB") == 10_000 and parse_size_bytes("10KiB") == 10_240
    assert parse_size_bytes("1.5MB") == 1_500_000 and parse_size_bytes("4GiB") == 4 * 2**30
    assert parse_rate_per_s("1000/min") == pytest.approx(16.6667, rel=1e-4)
    assert parse_rate_per_s("100/s") == 100 and parse_rate_per_s("6000/m") == 100
    assert parse_duration_s("5m") == 300 and parse_duration_s("250ms") == 0.25
    assert parse_duration_s("1h30m") == 5400 and parse_duration_s(10) == 10
    for bad, fn in [("10XB", parse_size_bytes), ("fast", parse_rate_per_s),
                    ("5 parsecs", parse_duration_s), ("", parse_duration_s),
                    ("1/fortnight", parse_rate_per_s), (-1, parse_size_bytes)]:
        with pytest.raises(UnitError):
            fn(bad)
    assert format_bytes(1_250_000) == "1.25MB"


def test_guide_arithmetic():
    assert model.prefetch_memory_bytes(25, 10_000, 5) == 1_250_000  # "1.25MB"
    assert model.partition_throughput_per_s(30, 2) == 60
    assert model.partition_throughput_per_s(30, 3) == 90
    assert model.concurrency_bound_per_s(50, 0.5) == 100  # Little's law
    assert model.instances_needed(100, 30, headroom=0.3) == 5


def test_erlang_c_textbook_values():
    assert model.erlang_c(1, 0.5) == pytest.approx(0.5)  # M/M/1: P(wait) = rho
    assert model.erlang_c(2, 1.0) == pytest.approx(1 / 3)
    assert model.erlang_c(10, 8.0) == pytest.approx(0.4092, abs=1e-4)
    # M/M/1 mean wait = rho / (mu - lambda)
    assert model.mmc_mean_wait_s(0.5, 1.0, 1) == pytest.approx(1.0)
    assert model.mmc_mean_wait_s(2, 1.0, 2) == math.inf
    # P(W > t) = C exp(-(c mu - lambda) t): M/M/1 rho .5, p99 = ln(0.5/0.01)/0.5
    assert model.mmc_wait_percentile_s(0.5, 1.0, 1, 99) == pytest.approx(math.log(50) / 0.5)
    assert model.erlang_c(500, 100.0) < 1e-100  # stable for many servers


@given(st.integers(1, 200), st.floats(0.01, 0.99), st.integers(1, 50))
def test_more_servers_never_wait_longer(c, rho, extra):
    arrival = rho * c  # service time 1 s
    assert model.mmc_mean_wait_s(arrival, 1.0, c + extra) <= \
        model.mmc_mean_wait_s(arrival, 1.0, c) + 1e-12
    assert model.erlang_c(c + extra, arrival) <= model.erlang_c(c, arrival) + 1e-12


@given(st.floats(0, 1000), st.floats(0.1, 1000), st.floats(0, 3600))
def test_burst_backlog_and_drain(arrival, capacity, burst):
    backlog = model.burst_backlog(arrival, capacity, burst, max_length=50_000)
    assert 0 <= backlog <= 50_000
    if arrival <= capacity:
        assert backlog == 0
    assert model.drain_time_s(backlog, capacity, 0) == pytest.approx(backlog / capacity)


def test_plan_holds_for_the_guide_and_says_where_it_does_not():
    figs = build(PlanInputs(RabbitSettings(), CONDUIT))
    by = {(f.section, f.name): f for f in figs}
    assert by[("guide", "prefetch memory (default endpoints)")].value == "1.25MB"
    assert "no effect" in by[("guide", "partition throughput")].note
    # one instance: its rate limit (100/s) is below a 150/s burst, so the queue grows
    heavy = build(PlanInputs(RabbitSettings(), CONDUIT, instances=1, webhook_burst_per_s=150))
    wh = {f.name: f for f in heavy if f.section == "webhook-delivery"}
    assert wh["utilisation at target"].verdict == "FAIL"
    assert wh["backlog after burst"].value == pytest.approx(50 * 300)
    assert verdict(heavy) == "FAIL"
    # a single-active-consumer queue cannot be fixed by instances
    slow = build(PlanInputs(RabbitSettings(), CONDUIT, task_rate_per_s=200,
                            service_time_s={"spend-update-events": 0.05}))
    spend = {f.name: f for f in slow if f.section == "spend-update-events"}
    assert spend["instances needed"].verdict == "FAIL"


def test_guide_profile_partition_findings():
    findings = profile_findings(GUIDE, RabbitSettings())
    assert any("raising PartitionCount beyond prefetch adds no parallelism" in f
               for f in findings)


def test_plan_cli_json_and_exit_codes(capsys):
    # the guide's "100,000 total queued messages" in its task mix puts 40,000 on
    # spend-update-events, whose x-max-length 10,000 (drop-head) drops confirmed messages
    assert main(["plan", "--json"]) == 1
    doc = json.loads(capsys.readouterr().out)
    failed = [f["name"] for f in doc["figures"] if f["verdict"] == "FAIL"]
    assert failed == ["spend-update-events share of the backlog"]
    assert main(["plan", "--json", "--queued", "20000"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["verdict"] in ("OK", "WARN") and doc["figures"]
    assert main(["plan", "--instances", "1", "--webhook-burst", "150/s"]) == 1
    capsys.readouterr()
    for argv in (["plan", "--task-rate", "lots"], ["plan", "--message-size", "10XB"],
                 ["plan", "--service-time", "nope=1s"], ["plan", "--task-mix", "video=x"],
                 ["plan", "--watermark", "2"], ["plan", "--burst-duration", "soon"]):
        assert main(argv) == 2, argv
        err = capsys.readouterr().err.strip()
        assert err.startswith("error:") and "\n" not in err
