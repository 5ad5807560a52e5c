"""`rabbitscale doctor` on the real broker: deliberate deviations are reported with the right
verdicts, a vhost the reference stack declared comes out with no FAIL, and nothing changes on
the broker (objects, arguments, message counts)."""

from __future__ import annotations

from rabbitscale.inspect.doctor import effective_arguments


def test_effective_arguments_follow_rabbitmq():
    q = {"arguments": {"x-max-length": 100, "x-overflow": "reject-publish",
                       "x-dead-letter-exchange": "dlx", "x-delivery-limit": 5},
         "policy": "p", "effective_policy_definition": {
             "max-length": 500, "overflow": "drop-head", "dead-letter-exchange": "other",
             "delivery-limit": 2, "message-ttl": 60000}}
    effective, origin = effective_arguments(q)
    assert effective["x-max-length"] == 100 and "x-max-length" not in origin  # the lower
    assert effective["x-delivery-limit"] == 2 and origin["x-delivery-limit"] == "policy 'p'"
    assert effective["x-overflow"] == "drop-head"  # the policy wins for overflow
    assert effective["x-dead-letter-exchange"] == "dlx"  # the argument wins
    assert effective["x-message-ttl"] == 60000


def test_forecast_from_observed_growth():
    from rabbitscale.inspect.doctor import Snapshot, forecast, render
    from rabbitscale.topology.profile_file import get_profile

    conduit = get_profile("conduit")
    spend = {"name": "spend-update-events", "messages": 2200, "message_bytes": 2200 * 1000,
             "messages_details": {"rate": 10.0},
             "arguments": {"x-max-length": 10000, "x-queue-type": "quorum"}}
    video = {"name": "video-generation-events", "messages": 0, "messages_details": {"rate": 0}}
    node = {"name": "rabbit@a", "mem_used": 200 * 2**20, "mem_limit": 2 * 2**30,
            "disk_free": 20 * 10**9, "disk_free_limit": 10**9}
    snap = Snapshot("/", {}, [node], {"spend-update-events": spend,
                                      "video-generation-events": video}, {}, [], [], [])
    found = {(f.subject, f.check): f for f in forecast(snap, conduit)}
    q = found[("spend-update-events", "time to x-max-length")]
    assert q.observed == "13 min" and q.verdict == "FAIL"  # (10,000 - 2,200) / 10 = 780 s
    assert "+10 msg/s, reaches 10,000 in 13 min, then drop-head" in q.detail
    mem = found[("rabbit@a", "time to the memory alarm")]
    disk = found[("rabbit@a", "time to the disk alarm")]
    # 10 msg/s x (1 KB x 1.25 + 200 B) = 14.5 KB/s into 1.8 GiB: ~36 hours
    assert mem.verdict == "OK" and "adds 14.5KB/s" in mem.detail
    assert disk.verdict == "OK" and "reaches disk_free_limit" in disk.detail
    assert not forecast(Snapshot("/", {}, [node], {"video-generation-events": video}, {}, [],
                                 [], []), conduit)  # nothing growing: nothing to forecast
    text = render(list(found.values()), "/", "conduit")
    assert "time to x-max-length" in text and "…" not in text
