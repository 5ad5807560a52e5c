import pytest

from rabbitscale.topology.profile_file import load_system
from rabbitscale.topology.settings import (
    ConfigError,
    RabbitSettings,
    load_settings,
)


def test_defaults_match_conduit_topology():
    s = load_settings(environ={})
    assert (s.host, s.port, s.username, s.vhost) == ("localhost", 5672, "guest", "/")
    assert (s.prefetch_count, s.partition_count, s.concurrent_message_limit) == (25, 30, 50)
    assert (s.max_connections, s.min_connections, s.requested_heartbeat) == (5, 2, 30)
    assert s.publisher_confirmation is True and s.publisher_confirmation_timeout_ms == 5000
    assert (s.channel_max, s.frame_max) == (500, 131072)


def test_env_keys_are_case_insensitive():
    s = load_settings(environ={
        "conduitllm__rabbitmq__prefetchcount": "15",
        "CONDUITLLM__RABBITMQ__PartitionCount": "50",
        "CONDUITLLM__RABBITMQ__PUBLISHERCONFIRMATION": "False",
        "CONDUITLLM__WEBHOOKPREFETCHCOUNT": "150",
    })
    assert s.prefetch_count == 15 and s.partition_count == 50
    assert s.publisher_confirmation is False and s.webhook_prefetch_count == 150


@pytest.mark.parametrize("value", ["0", "65536", "abc", "", "2.5"])
def test_invalid_prefetch_names_the_key(value):
    with pytest.raises(ConfigError) as exc:
        load_settings(environ={"CONDUITLLM__RABBITMQ__PREFETCHCOUNT": value})
    msg = str(exc.value)
    assert "CONDUITLLM__RABBITMQ__PREFETCHCOUNT" in msg and "\n" not in msg


def test_min_connections_above_max_is_an_error():
    with pytest.raises(ConfigError, match="MINCONNECTIONS"):
        load_settings(environ={"CONDUITLLM__RABBITMQ__MINCONNECTIONS": "6"})


def test_bad_bool_names_the_key():
    with pytest.raises(ConfigError, match="PUBLISHERCONFIRMATION"):
        load_settings(environ={"CONDUITLLM__RABBITMQ__PUBLISHERCONFIRMATION": "maybe"})


def test_amqp_url_then_explicit_keys_win():
    s = load_settings(environ={"AMQP_URL": "amqp://u:p%40ss@h:5673/v%2F1",
                               "CONDUITLLM__RABBITMQ__HOST": "other"})
    assert (s.host, s.port, s.username, s.password, s.vhost) == ("other", 5673, "u", "p@ss",
                                                                 "v/1")
    assert "p%40ss" in s.amqp_url and "v%2F1" in s.amqp_url
    with pytest.raises(ConfigError, match="AMQP_URL"):
        load_settings(environ={"AMQP_URL": "http://x"})


def test_password_is_never_in_repr_or_masked_dict():
    s = RabbitSettings(password="s3cret")
    assert "s3cret" not in repr(s) and "s3cret" not in str(s.masked())


def test_profile_file_then_env(tmp_path):
    f = tmp_path / "p.toml"
    f.write_text('profile = "guide"\n[rabbitmq]\nPrefetchCount = 30\nMaxConnections = 8\n')
    s, profile = load_system(None, str(f), environ={"CONDUITLLM__RABBITMQ__MAXCONNECTIONS": "9"})
    assert s.prefetch_count == 30 and s.max_connections == 9 and profile.name == "guide"


@pytest.mark.parametrize("text,match", [
    ("[rabbitmq]\nPrefetchCount = 0\n", "PrefetchCount"),
    ("[rabbitmq]\nNoSuchKey = 1\n", "unknown setting"),
    ("[rabbitmq\n", "not valid TOML"),
    ("other = 1\n", "other: not a key of the profile format"),
    ('profile = "conduit"\n[endpoints.nosuch]\nprefetch = 5\n',
     "endpoints.nosuch.consumes: required"),
    ('profile = "conduit"\n[endpoints.webhook-delivery]\nprefetch = "lots"\n',
     "endpoints.webhook-delivery.prefetch: Input should be a valid integer"),
    ('profile = "nosuch"\n', "unknown profile 'nosuch'"),
])
def test_bad_profile_files(tmp_path, text, match):
    f = tmp_path / "p.toml"
    f.write_text(text)
    with pytest.raises(ConfigError, match=match) as exc:
        load_system(None, str(f), environ={})
    assert "\n" not in str(exc.value)


def test_missing_profile_file(tmp_path):
    with pytest.raises(ConfigError, match="not found"):
        load_system(None, str(tmp_path / "nope.toml"))
