"""Latency thresholds ([KIND_OR_QUEUE.]METRIC.STAT<DURATION) and a run's validity: parsed in
one line or refused in one line, judged on HDR histograms with figures worked by hand."""

from __future__ import annotations

import pytest

from rabbitscale.core import latency
from rabbitscale.core.errors import ConfigError
from rabbitscale.engine.stack import LatencyWatch, latency_scopes
from rabbitscale.judge import outcome, slo, validity
from rabbitscale.topology.profile_file import get_profile


def hist(*seconds: float):
    h = latency.new_histogram()
    for s in seconds:
        latency.record_s(h, s)
    return h


@pytest.mark.parametrize("text,scope,metric,stat,max_s", [
    ("e2e.p99<2s", None, "e2e", "p99", 2.0),
    ("video.queue_wait.p95<500ms", "video", "queue_wait", "p95", 0.5),
    ("spend-update-events.processing.max<=1m", "spend-update-events", "processing", "max", 60),
    ("orders.created.publish_delay.p999 < 20ms", "orders.created", "publish_delay", "p999",
     0.02),
])
def test_expressions_parse(text, scope, metric, stat, max_s):
    t = slo.parse_latency(text, "--threshold")
    assert (t.scope, t.metric, t.stat, t.max_s) == (scope, metric, stat, pytest.approx(max_s))


@pytest.mark.parametrize("text,says", [
    ("e2e.p98<2s", "STAT one of p50, p95, p99, p999, max"),
    ("latency.p99<2s", "METRIC one of e2e"),
    ("e2e.p99>2s", "not a latency threshold"),
    ("e2e.p99<soon", "not a duration"),
    ("e2e.p99<0s", "above zero"),
])
def test_bad_expressions_are_one_line(text, says):
    with pytest.raises(ConfigError, match=says) as err:
        slo.parse_latency(text, "--threshold")
    assert "\n" not in str(err.value) and "--threshold" in str(err.value)


def test_profile_latency_is_an_assumption_and_the_flag_replaces_it():
    realistic = get_profile("realistic")
    t = slo.load_thresholds(None, realistic, ["video.e2e.p99<10s", "e2e.p50<1s"])
    by = {(x.scope, x.metric, x.stat): x for x in t.latency}
    assert by[("video", "e2e", "p99")].max_s == 10 and \
        by[("video", "e2e", "p99")].source == "--threshold"
    assert "assumption" in by[("image", "e2e", "p99")].source
    assert (None, "e2e", "p50") in by
    with pytest.raises(ConfigError, match="no task kind or queue 'nosuch'"):
        slo.check_scopes(slo.load_thresholds(None, realistic, ["nosuch.e2e.p99<1s"]),
                         latency_scopes(realistic), "profile realistic")


def test_latency_checks_merge_the_scope_and_name_what_failed():
    t = slo.load_thresholds(None, None, ["video.e2e.p99<1s", "e2e.max<5s", "spend.e2e.p50<1s"])
    conduit = get_profile("conduit")
    histograms = {"video-generation-events": {"e2e": hist(*[0.5] * 98, 1.5, 1.5)},
                  "image-generation-events": {"e2e": hist(0.2, 6.0)}}
    checks = {c.name: c for c in slo.latency_checks(t, histograms, latency_scopes(conduit))}
    video = checks["latency video e2e p99"]
    assert video.verdict == slo.FAIL and video.measured == pytest.approx(1500, rel=0.01)
    assert "e2e p99 of video (video-generation-events)" in video.detail
    assert ">= 1,000 ms" in video.detail and video.target == "< 1s"
    assert checks["latency e2e max"].verdict == slo.FAIL  # the image queue's 6 s
    assert checks["latency spend e2e p50"].verdict == slo.SKIP  # no spend samples


def test_abort_waits_for_the_grace():
    t = slo.load_thresholds(None, None, ["e2e.p99<1s"])
    watch = LatencyWatch(t, {}, grace_s=3)
    slow = {"q": {"e2e": hist(2.0)}}
    assert watch.due(slow, 100.0) is None
    assert watch.due({"q": {"e2e": hist(0.1)}}, 101.0) is None  # recovered: the clock resets
    assert watch.due(slow, 102.0) is None and watch.due(slow, 104.0) is None
    assert watch.due(slow, 105.0).name == "latency e2e p99"


def test_a_generator_that_falls_behind_makes_the_run_invalid():
    on_time = {"tasks": hist(*[0.001] * 990, *[0.02] * 10)}  # 1% late by 20 ms
    ok = validity.checks(on_time, {"locust": 0.4}, {"worker 1": 0.002})
    assert [c.verdict for c in ok] == [slo.PASS] * 4
    late = {"tasks": hist(*[0.001] * 900, *[0.05] * 100)}  # 10% late
    checks = validity.checks(late, {"locust": 0.97}, {"worker 1": -0.2})
    verdicts = {c.name: c.verdict for c in checks}
    assert verdicts == {"generator_send_delay_p99_ms": slo.PASS,
                        "generator_late_sends": slo.INVALID, "generator_cpu": slo.INVALID,
                        "worker_clock_offset_ms": slo.INVALID}
    assert validity.late_share(late["tasks"], 0.010) == pytest.approx(0.1)
    base = outcome.Outcome({}, [slo.Check("lost", "<= 0", 3, slo.FAIL)], slo.FAIL, 1, 1, 1)
    assert outcome.extended(base, checks).verdict == slo.INVALID  # not a FAIL of the system


def test_senders_bound_reached_makes_the_run_invalid_and_says_how_far():
    """As k6 reports the iterations its bound dropped: a slot that found every sender busy
    left late, and the run says the system held that many at once."""
    on_time = {"tasks": hist(*[0.001] * 1000)}
    free = {"tasks": {"bound": 1024, "peak": 37, "waited": 0}}
    held = {"tasks": {"bound": 1024, "peak": 1024, "waited": 212}}
    assert {c.name: c.verdict for c in validity.checks(on_time, {}, {}, free)}[
        "generator_in_flight_waits"] == slo.PASS
    check = next(c for c in validity.checks(on_time, {}, {}, held)
                 if c.name == "generator_in_flight_waits")
    assert check.verdict == slo.INVALID and check.measured == 212
    assert "1,024 of 1,024" in check.detail
