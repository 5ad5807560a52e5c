import json
import math
import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from rabbitscale.capacity import model
from rabbitscale.capacity.calibrate import calibrate
from rabbitscale.capacity.plan import (
    PlanInputs,
    build,
    predicted_max_per_s,
    profile_findings,
    verdict,
)
from rabbitscale.cli.main import main
from rabbitscale.core.units import (
    UnitError,
    format_bytes,
    format_iec,
    parse_bitrate_bps,
    parse_duration_s,
    parse_rate_per_s,
    parse_size_bytes,
)
from rabbitscale.topology.profile_file import apply_overrides, get_profile, profile_spec
from rabbitscale.topology.settings import RabbitSettings
from tests.support import plan_exit, summary_json

CONDUIT = get_profile("conduit")
GUIDE = get_profile("guide")


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


@pytest.mark.parametrize("text,bps", [
    ("100Mbps", 1e8), ("100Mbit/s", 1e8), ("100MBps", 8e8), ("100MB/s", 8e8),
    ("1Gbit/s", 1e9), ("1GiB/s", 8 * 2**30), ("10Gbps", 1e10), ("100kbps", 1e5)])
def test_link_speeds_tell_bits_from_bytes(text, bps):
    assert parse_bitrate_bps(text) == bps


@pytest.mark.parametrize("fn,text,says", [
    (parse_rate_per_s, "1000", "1000/min or 1000/s"),
    (parse_rate_per_s, "-5/s", "must not be negative"),
    (parse_size_bytes, "10Kb", "in bits (b); sizes are in bytes (B), e.g. 10KB"),
    (parse_size_bytes, "-1KB", "not a size"),
    (parse_bitrate_bps, "100M", "not a link speed"),
    (parse_bitrate_bps, "-1Gbps", "must not be negative"),
])
def test_unit_mistakes_are_named(fn, text, says):
    with pytest.raises(UnitError, match=re.escape(says)):
        fn(text)


def test_sizes_reach_petabytes_and_print_in_iec():
    assert parse_size_bytes("2TB") == 2 * 10**12 and parse_size_bytes("1PiB") == 2**50
    assert format_iec(4 * 2**30) == "4GiB" and format_iec(537_000_000) == "512MiB"


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
    assert by[("guide", "prefetch memory (default endpoints)")].value == 1_250_000
    assert by[("guide", "prefetch memory (default endpoints)")].display == "1.19MiB (1.25MB)"
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


# --- defects of the first plan, each held by a test ------------------------------------------


def test_zero_service_time_is_no_work_not_a_crash(tmp_path, capsys):
    figs = build(PlanInputs(RabbitSettings(), CONDUIT,
                            service_time_s={"video-generation-events": 0.0}))
    video = {f.name: f for f in figs if f.section == "video-generation-events"}
    assert math.isinf(video["capacity"].value) and video["queue wait p99"].value == 0
    assert main(["plan", "--service-time", "video-generation-events=0", "--queued", "0"]) == 0
    conf = tmp_path / "zero.toml"
    conf.write_text('profile = "conduit"\n[endpoints.spend-update-events]\n'
                    'service_time = "fixed:0"\n')
    capsys.readouterr()
    assert main(["plan", "--profile-file", str(conf), "--queued", "0", "--json"]) == 0
    spend = {f["name"]: f for f in json.loads(capsys.readouterr().out)["figures"]
             if f["section"] == "spend-update-events"}
    # a configured 0 is kept (no work), not replaced by the plan's 20 ms assumption
    assert spend["capacity"]["value"] is None and spend["capacity"]["display"] == "unbounded"


def test_plan_json_is_strict_json_with_numbers(capsys):
    def refuse(constant: str) -> None:
        raise ValueError(f"not JSON: {constant}")

    for argv in (["plan", "--json"], ["plan", "--json", "--instances", "1",
                                      "--webhook-burst", "500/s", "--webhook-rate", "200/s"]):
        main(argv)
        doc = json.loads(capsys.readouterr().out, parse_constant=refuse)
        for f in doc["figures"]:
            assert f["value"] is None or isinstance(f["value"], int | float), f
            assert isinstance(f["display"], str)
        units = {f["unit"] for f in doc["figures"]}
        assert "B" in units and "bps" in units


def test_the_plan_reads_top_down(capsys):
    """Counts first, the FAILs and WARNs before everything, headers, % for utilisation; the
    JSON versioned with stable ids and a unit for every figure."""
    assert main(["plan"]) == 1
    lines = capsys.readouterr().out.splitlines()
    assert re.fullmatch(r"plan: 1 FAIL, 1 WARN, \d+ OK, \d+ INFO -> verdict FAIL", lines[0])
    attention = lines.index("[needs attention]")
    assert attention < 6 and "figure" in lines[attention + 1] and "verdict" in lines[attention + 1]
    assert "FAIL" in lines[attention + 2] and "share of the backlog" in lines[attention + 2]
    util = next(line for line in lines if "utilisation at target" in line)
    assert re.search(r"\s\d+%\s+OK", util)
    assert any(line.startswith("INFO: ") or "INFO: a figure shown for context" in line
               for line in lines)
    main(["plan", "--json"])
    doc = json.loads(capsys.readouterr().out)
    assert doc["schema_version"] == 3 and doc["counts"]["FAIL"] == 1
    ids = [f["id"] for f in doc["figures"]]
    assert len(ids) == len(set(ids)) and all(re.fullmatch(r"[a-z0-9_]+\.[a-z0-9_]+", i)
                                             for i in ids)
    assert "video_generation_events.utilisation_at_target" in ids
    assert doc["broker"]["stored_bytes"] < doc["broker"]["disk_bytes"]


def test_a_link_nearly_full_fails():
    figs = build(PlanInputs(RabbitSettings(), CONDUIT, link_bps=9.9e6))  # ~97% full
    net = [f for f in figs if f.name.startswith("network in")]
    assert net[0].verdict == "FAIL"


def test_verdicts_follow_the_figures():
    never = build(PlanInputs(RabbitSettings(), CONDUIT, instances=1, webhook_burst_per_s=150,
                             webhook_baseline_per_s=120, queued_messages=0))
    wh = {f.name: f for f in never if f.section == "webhook-delivery"}
    assert math.isinf(wh["drain time after burst"].value)  # the baseline alone fills it
    assert wh["drain time after burst"].verdict == "FAIL"
    slow = build(PlanInputs(RabbitSettings(), CONDUIT, instances=1, webhook_burst_per_s=110,
                            webhook_baseline_per_s=99, queued_messages=0))
    wh = {f.name: f for f in slow if f.section == "webhook-delivery"}
    drain = wh["drain time after burst"]
    assert drain.value > 300 and drain.verdict == "WARN"
    big = build(PlanInputs(RabbitSettings(), CONDUIT, worst_message_bytes=20e6,
                           queued_messages=0))
    wh = {f.name: f for f in big if f.section == "webhook-delivery"}
    assert wh["client prefetch memory (worst size)"].verdict == "FAIL"  # 2 GB per instance


def test_partitions_are_bounded_by_prefetch_and_held_against_the_burst():
    figs = build(PlanInputs(RabbitSettings(), GUIDE, queued_messages=0))
    part = {f.name: f for f in figs if f.name.startswith("partition throughput")}
    video = part["partition throughput (video-generation-events)"]
    assert video.value == 2 * 25  # prefetch 25 keeps 25 of the 30 partitions busy
    assert video.verdict == "WARN" and "100/s webhook burst" in video.note
    fewer = build(PlanInputs(RabbitSettings(prefetch_count=5), GUIDE, queued_messages=0,
                             task_rate_per_s=40, mix={"video": 1}))
    video = next(f for f in fewer if f.name == "partition throughput (video-generation-events)")
    assert video.value == 10 and video.verdict == "FAIL"  # 5 busy x 2 msg/s < 40 arriving


def test_connections_come_from_the_publisher_the_profile_has():
    conduit = {f.name: f for f in build(PlanInputs(RabbitSettings(max_connections=9), CONDUIT,
                                                   queued_messages=0))}
    assert conduit["connections"].value == 5 * (1 + 1)  # MassTransit: one bus connection
    guide = {f.name: f for f in build(PlanInputs(RabbitSettings(max_connections=9), GUIDE,
                                                 queued_messages=0))}
    assert guide["connections"].value == 5 * (9 + 1)  # the guide's pool


def test_failures_and_retries_hold_slots():
    assert model.expected_attempts(0.5, 2) == pytest.approx(1.75)
    assert model.faulted_fraction(0.5, 2) == pytest.approx(0.125)
    assert model.effective_service_time_s(0.1, 0.5, [1.0, 2.0]) == pytest.approx(
        0.1 * 1.75 + 0.5 * 1.0 + 0.25 * 2.0)
    flaky = apply_overrides(CONDUIT, {"video-generation-events": {
        "failure_probability": 0.5, "retry": "immediate:2", "service_time": "fixed:100ms"}})
    clean = apply_overrides(CONDUIT, {"video-generation-events": {
        "service_time": "fixed:100ms"}})
    s = RabbitSettings()
    assert predicted_max_per_s(s, flaky, 3, {"video": 1}) == pytest.approx(
        predicted_max_per_s(s, clean, 3, {"video": 1}) / 1.75)
    figs = {f.name: f for f in build(PlanInputs(s, flaky, mix={"video": 1}, queued_messages=0))
            if f.section == "video-generation-events"}
    assert figs["faulted to _error"].value == pytest.approx(1000 / 60 * 0.125)


def test_instances_are_bounded_and_a_large_plan_answers(capsys):
    assert main(["plan", "--instances", "1000000000"]) == 2
    capsys.readouterr()
    code = main(["plan", "--instances", "1000", "--queued", "0"])
    out = capsys.readouterr().out
    assert "verdict:" in out and code == plan_exit(out)


def test_calibrate_uses_the_profile_the_run_recorded(tmp_path):
    """A run made with a profile file (concurrency 3 on video) is calibrated with concurrency
    3, not with the built-in profile's."""
    custom = apply_overrides(CONDUIT, {"video-generation-events": {"concurrency": 3,
                                                                   "prefetch": 3}})
    run = tmp_path / "run"
    run.mkdir()
    (run / "config.json").write_text(json.dumps({
        "rabbitmq": RabbitSettings().masked(), "profile": "conduit",
        "profile_spec": profile_spec(custom)}))
    (run / "summary.json").write_text(summary_json(
        instances=2, duration_s=10, measured={"peak_queue_depth": 0, "latency_ms": {
            "video-generation-events": {"processing": {"count": 100, "mean_ms": 100.0}}}}))
    fitted, rows = calibrate(run)
    cap = next(r for r in rows if r.quantity == "video-generation-events capacity")
    assert cap.predicted == pytest.approx(2 * 3 / 0.1)
