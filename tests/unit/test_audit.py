from pathlib import Path

import pytest

from rabbitscale.cli.main import main
from rabbitscale.inspect.audit import ERROR, WARNING, audit, load_schema, rmq_bytes

ROOT = Path(__file__).resolve().parents[2]
GUIDE_CONF = ROOT / "tests" / "fixtures" / "conf" / "guide-rabbitmq.conf"


@pytest.fixture(scope="module", params=[True, False], ids=["installed", "snapshot"])
def schema(request):
    return load_schema(prefer_installed=request.param)


def _by_key(findings):
    return {f.key: f for f in findings}


def test_the_guides_file_would_not_boot(schema):
    findings = audit(GUIDE_CONF.read_text(), schema=schema, container_memory_bytes=4 * 2**30)
    by = _by_key(findings)
    assert by["channel_operation_timeout"].severity == ERROR
    assert "advanced.config" in by["channel_operation_timeout"].message
    assert by["vm_memory_high_watermark.absolute"].severity == WARNING
    assert "relative one wins" in by["vm_memory_high_watermark.absolute"].message
    assert "host's RAM" in by["vm_memory_high_watermark.relative"].message
    assert "queue_leader_locator" in by["queue_master_locator"].message


def test_our_corrected_file_has_no_errors(schema):
    findings = audit((ROOT / "deploy" / "rabbitmq.conf").read_text(), schema=schema,
                     container_memory_bytes=4 * 2**30, disk_bytes=50 * 10**9)
    assert not [f for f in findings if f.severity == ERROR]


@pytest.mark.parametrize("text,key,needle", [
    ("colour_of_the_bikeshed = blue\n", "colour_of_the_bikeshed", "unknown key"),
    ("mqtt.listeners.tcp.default = 1883\n", "mqtt.listeners.tcp.default",
     "plugin rabbitmq_mqtt"),
    ("this is not a setting\n", "this is not a setting", "not a 'key = value'"),
    ("channel_max = lots\n", "channel_max", "integer"),
    ("vm_memory_high_watermark.absolute = 3 apples\n", "vm_memory_high_watermark.absolute",
     "size"),
    ("vm_memory_high_watermark.absolute = 5GiB\n", "vm_memory_high_watermark",
     "OOM-killed"),
    ("total_memory_available_override_value = 4GiB\ndisk_free_limit.relative = 2.0\n",
     "disk_free_limit.relative", "disk alarm"),
])
def test_errors(schema, text, key, needle):
    findings = audit(text, schema=schema, container_memory_bytes=4 * 2**30,
                     disk_bytes=5 * 10**9)
    f = _by_key(findings)[key]
    assert f.severity == ERROR and needle in f.message


def test_pattern_keys_and_units(schema):
    assert schema.match("listeners.tcp.other") == "rabbit"  # listeners.tcp.$name
    assert schema.match("auth_backends.1") == "rabbit"
    assert rmq_bytes("3GB") == 3 * 10**9 and rmq_bytes("3GiB") == 3 * 2**30
    assert rmq_bytes("512M") == 512 * 2**20 and rmq_bytes("3 apples") is None


def test_audit_cli_exit_codes(capsys, tmp_path):
    assert main(["audit", str(GUIDE_CONF)]) == 1
    out = capsys.readouterr().out
    assert "channel_operation_timeout" in out and "1 error(s)" in out
    assert main(["audit", str(ROOT / "deploy" / "rabbitmq.conf"), "--json"]) == 0
    capsys.readouterr()
    assert main(["audit", str(tmp_path / "none.conf")]) == 2
    assert "no such file" in capsys.readouterr().err
    bad = tmp_path / "bin.conf"
    bad.write_bytes(b"\xff\xfe\x00garbage")
    assert main(["audit", str(bad)]) == 2


@pytest.mark.parametrize("snapshot", [True, False])
def test_enum_values_are_checked_against_the_schema(snapshot):
    schema = load_schema(prefer_installed=not snapshot)
    assert schema.enum("log.console.level") is not None
    bad = audit("log.console.level = loud\nlog.console.level = debug\n", schema=schema)
    errors = [f for f in bad if f.severity == ERROR]
    assert len(errors) == 1 and errors[0].line == 1 and "expects one of debug" in errors[0].message


def test_an_absolute_disk_limit_is_held_to_the_disk(schema):
    found = audit("disk_free_limit.absolute = 60GB\n", schema=schema, disk_bytes=5 * 10**9)
    assert [f.severity for f in found if f.key == "disk_free_limit.absolute"] == [ERROR]
    close = audit("disk_free_limit.absolute = 4.5GB\n", schema=schema, disk_bytes=5 * 10**9)
    assert [f.severity for f in close if f.key == "disk_free_limit.absolute"] == [WARNING]
    fine = audit("disk_free_limit.absolute = 2GB\n", schema=schema, disk_bytes=50 * 10**9)
    assert not [f for f in fine if f.key == "disk_free_limit.absolute"]


def test_the_target_version_must_be_a_version(capsys, tmp_path):
    conf = tmp_path / "r.conf"
    conf.write_text("log.console.level = info\n")
    assert main(["audit", str(conf), "--target-version", "banana"]) == 2
    assert "expected a RabbitMQ version" in capsys.readouterr().err
    assert main(["audit", str(conf), "--target-version", "4.0.5"]) == 0
