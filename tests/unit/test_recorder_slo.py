import pytest

from rabbitscale.core.errors import ConfigError
from rabbitscale.engine.recorder import Recorder
from rabbitscale.harness.completions import Completion
from rabbitscale.judge import slo


def _rec(mid: str, seq: int, key: str = "1", status: str = "completed", run: str = "r",
         t: float = 100.0) -> Completion:
    return Completion(mid, "SpendUpdateRequested", "spend-update-events", key, seq, run,
                      intended=t, sent=t + 0.01, started=t + 0.02, finished=t + 0.05,
                      status=status, attempts=1, redelivered=False, instance="c1")


def test_recorder_counts_duplicates_order_and_splits_latency():
    r = Recorder(run="r", ordered_queues=frozenset({"spend-update-events"}))
    for mid, seq in [("a", 1), ("b", 3), ("c", 2), ("b", 3)]:
        r.on_record(_rec(mid, seq))
    r.on_record(_rec("x", 1, run="other"))
    r.on_record(_rec("d", 4, status="faulted"))
    assert r.counts() == {"completed": 3, "faulted": 1, "skipped": 0, "duplicates": 1}
    assert r.order_violations == 1 and r.foreign == 1
    h = r.queues["spend-update-events"].histograms
    assert h["e2e"].get_total_count() == 3
    assert h["e2e"].get_max_value() == pytest.approx(50_000, rel=0.01)  # us
    assert h["queue_wait"].get_max_value() == pytest.approx(10_000, rel=0.01)
    assert h["publish_delay"].get_max_value() == pytest.approx(10_000, rel=0.01)


def test_webhook_absorption_and_lag():
    r = Recorder(run="r", burst_max_lag_s=5)
    r.track_windows([(10, 11), (11, 12)])
    for i in range(10):
        r.on_arrival({"message_id": f"m{i}", "arrived": 10 + i * 0.1 + (6 if i == 9 else 0.2),
                      "intended": 10 + i * 0.1, "run": "r"})
    r.on_arrival({"message_id": "m0", "arrived": 11, "intended": 10, "run": "r"})
    assert r.webhook_arrivals == 10 and r.webhook_duplicates == 1
    assert r.absorbed() == [9, 0]  # m9 arrived 6 s late
    assert r.oldest_age_s("spend-update-events", depth=0) == 0


def test_thresholds_file(tmp_path):
    f = tmp_path / "t.toml"
    f.write_text("depth_warning = 10\nmessage_age_max_s = 60\n")
    t = slo.load_thresholds(f)
    assert t.depth_warning == 10 and t.message_age_max_s == 60.0
    assert slo.depth_check("d", 11, t).verdict == slo.WARN
    assert slo.depth_check("d", 5001, t).verdict == slo.FAIL
    for text, match in [("colour = 1\n", "unknown threshold"), ("depth_warning = -1\n", "non-neg"),
                        ("depth_warning = [\n", "cannot read")]:
        f.write_text(text)
        with pytest.raises(ConfigError, match=match):
            slo.load_thresholds(f)
    assert slo.verdict([slo.at_least("a", 1, 1), slo.at_most("b", 2, 1)]) == slo.FAIL


def test_recent_ids_window_is_bounded_and_sees_duplicates():
    from rabbitscale.core.recent import RecentIds

    window = RecentIds(capacity=3)
    assert [window.seen(k) for k in ("a", "b", "a", "c", "d")] == [False, False, True, False,
                                                                   False]
    assert len(window) == 3  # a, b, c, d seen: "a" is the oldest and gone
    assert not window.seen("a") and window.seen("d")
