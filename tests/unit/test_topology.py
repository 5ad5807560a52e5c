import pytest

from rabbitscale.capacity.plan import profile_findings
from rabbitscale.core.errors import ConfigError
from rabbitscale.topology.policy import RetryPolicy, parse_breaker, parse_retry, parse_service_time
from rabbitscale.topology.profile_file import apply_overrides, get_profile
from rabbitscale.topology.settings import RabbitSettings

CONDUIT = get_profile("conduit")
GUIDE = get_profile("guide")


def test_conduit_profile_has_the_eight_endpoints():
    assert [ep.queue for ep in CONDUIT.endpoints] == [
        "webhook-delivery", "video-generation-events", "image-generation-events",
        "spend-update-events", "media-retention-checks", "media-cleanup-batches",
        "r2-batch-operations", "media-cleanup-schedule"]
    wh = CONDUIT.endpoint("webhook-delivery").resolved(RabbitSettings())
    assert (wh.prefetch, wh.concurrency) == (100, 75)
    assert wh.declared_arguments() == {"x-queue-type": "quorum", "x-delivery-limit": 10,
                                       "x-max-length": 50000, "x-overflow": "reject-publish"}
    video = CONDUIT.endpoint("video-generation-events").resolved(RabbitSettings())
    assert (video.prefetch, video.concurrency) == (25, 50)


def test_webhook_prefetch_env_applies_to_webhook_endpoint_only():
    s = RabbitSettings(webhook_prefetch_count=150)
    assert CONDUIT.endpoint("webhook-delivery").resolved(s).prefetch == 150
    assert CONDUIT.endpoint("spend-update-events").resolved(s).prefetch == 10


def test_retry_delays_follow_masstransit():
    assert RetryPolicy("immediate", 3).delays_s() == [0, 0, 0]
    assert RetryPolicy("incremental", 3, 2, 5).delays_s() == [2, 7, 12]
    assert RetryPolicy("exponential", 3, 1, 2, 30).delays_s() == [5, 9, 17]
    assert RetryPolicy("exponential", 10, 5, 2, 600).delays_s()[-1] == 600
    assert RetryPolicy().delays_s() == []


def test_findings_say_where_settings_do_not_hold():
    conduit = profile_findings(CONDUIT, RabbitSettings())
    assert any("PartitionCount=30 has no effect" in f for f in conduit)
    guide = profile_findings(GUIDE, RabbitSettings())
    assert not any("PartitionCount" in f and "no effect" in f for f in guide)
    assert any("30 partitions cap concurrency 50" in f for f in guide)
    assert any("only one instance consumes" in f for f in guide)


def test_overrides_and_their_errors():
    p = apply_overrides(CONDUIT, {"video-generation-events": {
        "concurrency": 4, "service_time": "lognormal:200ms:0.6", "failure_probability": 0.1,
        "retry": "none", "breaker": "none", "partitions": 8}})
    ep = p.endpoint("video-generation-events")
    assert ep.concurrency == 4 and ep.service_time.mean_s == pytest.approx(0.2)
    assert ep.breaker is None and ep.retry.kind == "none" and ep.partitioned
    for bad, match in [({"nope": {}}, "endpoints.nope.consumes: required"),
                       ({"nope": {"consumes": ["NoSuchType"]}}, "no message type 'NoSuchType'"),
                       ({"webhook-delivery": {"prefetch": 0}}, "prefetch"),
                       ({"webhook-delivery": {"colour": 1}}, "colour: not a key"),
                       ({"webhook-delivery": {"failure_probability": 2}}, "failure_prob")]:
        with pytest.raises(ConfigError, match=match):
            apply_overrides(CONDUIT, bad)


@pytest.mark.parametrize("bad", ["gauss:1s", "fixed", "lognormal:1s:-1", "fixed:1s:2"])
def test_bad_service_time(bad):
    with pytest.raises(ConfigError):
        parse_service_time(bad)


def test_parse_policies():
    assert parse_retry("exponential:3:1s:30s:2s") == RetryPolicy("exponential", 3, 1, 2, 30)
    assert parse_breaker("1m:15:10:5m").reset_s == 300
    with pytest.raises(ConfigError):
        parse_breaker("1m:150:10:5m")
    with pytest.raises(ConfigError):
        parse_retry("sometimes")


def test_profile_spec_round_trips():
    """A run directory records the profile it used as profile_spec; reading it back gives the
    same profile, resolved or not, built-in or changed by a profile file."""
    from rabbitscale.topology.profile_file import get_profile, profile_from_spec, profile_spec
    C = get_profile("conduit")

    changed = apply_overrides(C, {"spend-update-events": {
        "service_time": "lognormal:50ms:0.4", "failure_probability": 0.02,
        "retry": "exponential:4:1s:30s:2s", "breaker": "30s:25:3:1m", "rate_limit": "7/2s",
        "partitions": 4, "queue_arguments": {"x-single-active-consumer": True,
                                             "x-max-length": 99}}})
    for p in (C, GUIDE, changed):
        assert profile_from_spec(profile_spec(p)) == p
    settings = RabbitSettings(prefetch_count=7)
    resolved = changed.resolved(settings)
    assert profile_from_spec(profile_spec(resolved)).resolved(settings) == resolved


def test_queue_arguments_are_validated_with_their_key():
    for args, match in [({"x-max-length": "abc"}, "x-max-length: expected an integer"),
                        ({"x-max-length": -5}, "x-max-length: expected an integer"),
                        ({"x-single-active-consumer": "false"}, "unquoted"),
                        ({"x-overflow": "drop-tail"}, "x-overflow: expected one of"),
                        ({"x-max-lenght": 5}, "x-max-lenght: not a queue argument")]:
        with pytest.raises(ConfigError, match=match):
            apply_overrides(CONDUIT, {"spend-update-events": {"queue_arguments": args}})
