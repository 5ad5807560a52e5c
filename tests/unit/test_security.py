"""Credentials never reach logs, run directories or reports; bad config input of any shape
gives a one-line error, never a traceback."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from rabbitscale.core.errors import ConfigError
from rabbitscale.inspect.audit import AuditError, audit, load_schema
from rabbitscale.topology.profile_file import (
    apply_overrides,
    get_profile,
    load_system,
    profile_from_spec,
)
from rabbitscale.topology.settings import load_settings

CONDUIT = get_profile("conduit")

TEXT = st.text(max_size=300)


@settings(max_examples=200, deadline=None)
@given(TEXT)
def test_garbage_profile_files_are_one_line_errors(tmp_path_factory, text):
    f = tmp_path_factory.mktemp("p") / "p.toml"
    f.write_text(text)
    try:
        load_system(None, str(f), environ={})
    except ConfigError as exc:
        assert "\n" not in str(exc)


JSONISH = st.recursive(st.one_of(st.none(), st.booleans(), st.integers(-10, 10**6),
                                 st.text(max_size=12)),
                       lambda inner: st.one_of(st.lists(inner, max_size=3),
                                               st.dictionaries(st.text(max_size=8), inner,
                                                               max_size=3)), max_leaves=8)


@settings(max_examples=300, deadline=None)
@given(st.dictionaries(st.sampled_from(["extends", "name", "namespace", "publisher",
                                        "queue_type", "rabbitmq", "messages", "endpoints",
                                        "tasks", "thresholds", "x"]), JSONISH, max_size=5))
def test_garbage_profile_data_is_one_line_errors(data):
    """Any shape of data where a profile is expected: a Profile or one line, never a crash."""
    try:
        profile_from_spec(data, "p.toml")
    except ConfigError as exc:
        assert "\n" not in str(exc)


@settings(max_examples=300, deadline=None)
@given(JSONISH, st.text(max_size=30))
def test_garbage_message_templates_are_one_line_errors(body, text):
    spec = {"extends": "conduit", "messages": {"SpendUpdateRequested": {
        "body": {"a": body, "b": "${" + text + "}", "c": text}}}}
    try:
        profile_from_spec(spec, "p.toml")
    except ConfigError as exc:
        assert "\n" not in str(exc)


@settings(max_examples=200, deadline=None)
@given(st.dictionaries(st.sampled_from(["prefetch", "concurrency", "partitions", "retry",
                                        "breaker", "rate_limit", "service_time",
                                        "failure_probability", "queue_arguments", "x"]),
                       st.one_of(st.integers(-5, 70000), st.text(max_size=20), st.floats(),
                                 st.booleans(), st.none()), max_size=4))
def test_garbage_endpoint_settings_are_config_errors(table):
    try:
        apply_overrides(CONDUIT, {"spend-update-events": table})
    except ConfigError as exc:
        assert "\n" not in str(exc)


@settings(max_examples=200, deadline=None)
@given(st.dictionaries(st.sampled_from([
    "CONDUITLLM__RABBITMQ__PORT", "CONDUITLLM__RABBITMQ__PREFETCHCOUNT",
    "CONDUITLLM__RABBITMQ__MAXCONNECTIONS", "CONDUITLLM__RABBITMQ__MINCONNECTIONS",
    "CONDUITLLM__RABBITMQ__PUBLISHERCONFIRMATION", "CONDUITLLM__WEBHOOKPREFETCHCOUNT",
    "AMQP_URL"]), st.text(max_size=30), max_size=4))
def test_garbage_environment_is_config_errors(environ):
    try:
        load_settings(environ=environ)
    except ConfigError as exc:
        assert "\n" not in str(exc)


SCHEMA = load_schema()


@settings(max_examples=200, deadline=None)
@given(st.lists(st.one_of(TEXT, st.builds(lambda k, v: f"{k} = {v}", st.sampled_from(
    ["channel_max", "vm_memory_high_watermark.relative", "vm_memory_high_watermark.absolute",
     "disk_free_limit.relative", "total_memory_available_override_value", "heartbeat",
     "listeners.tcp.default", "x.y"]), TEXT)), max_size=8))
def test_garbage_rabbitmq_conf_never_crashes_the_audit(lines):
    try:
        findings = audit("\n".join(lines), schema=SCHEMA, container_memory_bytes=4 * 2**30,
                         disk_bytes=10**10)
    except AuditError:
        return
    assert all("\n" not in f.message for f in findings)
