"""What a file, a broker or a message from elsewhere cannot make rabbitscale do: write outside a
run directory, send the user's credentials to a host of its choosing, show a password, or make
the reference stack post to a service that is not its sink."""

from __future__ import annotations

from pathlib import Path

import pytest

from rabbitscale.core import rundir
from rabbitscale.core.errors import BadInput, ConfigError
from rabbitscale.core.urls import check_url, scrub
from rabbitscale.harness.consumer import (
    ConsumerOptions,
    address,
    allowed_addresses,
    forbidden_header,
)
from rabbitscale.topology.profile_file import load_system
from tests.support import rabbitscale


def _profile(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "p.toml"
    path.write_text(text)
    return path


@pytest.mark.parametrize("name,says", [
    ("../../x", "is a path"),
    ("a/b", "is a path"),
    ("..", "is a path"),
    ("a\\\\b", "is a path"),
    ("q\\u0001", "control character"),
    ("q" * 256, "longer than AMQP's 255 bytes"),
])
def test_a_name_that_cannot_name_a_queue_or_a_file_is_refused(tmp_path, name, says):
    path = _profile(tmp_path, f'name = "x"\n[endpoints."{name}"]\n')
    with pytest.raises(ConfigError, match=says):
        load_system(None, str(path))


def test_names_with_dots_and_dashes_are_names(tmp_path):
    path = _profile(tmp_path, 'name = "x"\n[messages.Paid]\n[endpoints."orders.payment-v2"]\n'
                              'consumes = ["Paid"]\n')
    assert load_system(None, str(path))[1].endpoints[0].queue == "orders.payment-v2"


@pytest.mark.parametrize("key", ["ManagementUrl", "Host", "Port", "Username", "Password",
                                 "ManagementPort"])
def test_a_profile_file_cannot_choose_where_credentials_go(tmp_path, key):
    path = _profile(tmp_path, f'name = "x"\n[rabbitmq]\n{key} = "http://127.0.0.1:8999"\n')
    with pytest.raises(ConfigError, match="not a profile file's to choose"):
        load_system(None, str(path), environ={})


def test_a_profile_file_keeps_its_bus_settings_and_vhost(tmp_path):
    path = _profile(tmp_path, 'name = "x"\n[rabbitmq]\nVHost = "orders"\nPrefetchCount = 7\n')
    settings, _ = load_system(None, str(path), environ={})
    assert settings.vhost == "orders" and settings.prefetch_count == 7


def test_files_stay_inside_their_run_directory(tmp_path):
    assert rundir.inside(tmp_path, "q.e2e.hdr") == (tmp_path / "q.e2e.hdr").resolve()
    for escape in ("../x.hdr", "/etc/x", "a/../../x"):
        with pytest.raises(BadInput, match="outside"):
            rundir.inside(tmp_path, escape)


@pytest.mark.parametrize("text,shown", [
    ("expected amqp://..., got 'http://user:PASS@h/x'", "'http://user:***@h/x'"),
    ("amqp://u:p%40ss@host:5672/vh and http://a:b@c", "amqp://u:***@host:5672/vh"),
    ("no url here", "no url here"),
])
def test_no_password_survives_an_error_line(text, shown):
    assert shown in scrub(text) and "PASS" not in scrub(text) and "p%40ss" not in scrub(text)


def test_credentials_in_an_http_url_are_refused_masked():
    with pytest.raises(BadInput, match=r"u:\*\*\*@") as exc:
        check_url("http://u:secret@127.0.0.1:15672", "the management API", "--management")
    assert "secret" not in str(exc.value)
    with pytest.raises(BadInput) as exc:
        check_url("http://u:secret@host:99999", "x", "--x")
    assert "secret" not in str(exc.value)


def test_secrets_in_bad_flags_never_reach_stderr():
    for args, environ in ((["doctor"], {"AMQP_URL": "http://user:PASS1@h/x"}),
                          (["run", "sustained_tasks", "--target", "amqp://user:PASS1@/x",
                            "--duration", "5s"], {}),
                          (["discover", "--vhost", "x", "--management",
                            "http://u:PASS1@host:99999", "--out", "x.toml"], {})):
        done = rabbitscale(*args, **environ)
        assert done.returncode == 2, done.stderr
        assert "PASS1" not in done.stdout + done.stderr and "***" in done.stderr


def test_webhooks_go_to_the_sink_unless_allowed():
    opts = ConsumerOptions(webhook_redirect_url="http://127.0.0.1:5055/redirected",
                           webhook_allow=("127.0.0.1:7000",))
    allowed = allowed_addresses(opts)
    assert address("http://127.0.0.1:5055/hook") in allowed  # the sink
    assert address("http://127.0.0.1:7000/cb/1") in allowed  # a run's receiver
    for elsewhere in ("http://127.0.0.1:15672/api/definitions", "http://localhost:7000/",
                      "http://[::1]:7000/", "http://example.com/",
                      "file:///etc/passwd", "http://127.0.0.1:notaport/"):
        assert address(elsewhere) not in allowed, elsewhere


@pytest.mark.parametrize("name", ["Authorization", "cookie", "HOST", "Proxy-Authorization",
                                  "proxy-anything", "Transfer-Encoding", "X-Forwarded-For"])
def test_a_message_never_chooses_credentials_or_routing_headers(name):
    assert forbidden_header(name)
    assert not forbidden_header("X-Trace-Id")


def test_an_output_directory_is_new_or_empty_or_forced(tmp_path):
    from rabbitscale.core.outputs import new_dir

    run = tmp_path / "run"
    new_dir(run)
    (run / "summary.json").write_text("{}")
    (run / "junit.xml").write_text("<stale/>")
    (run / "notes.txt").write_text("mine")
    with pytest.raises(BadInput, match="not empty"):
        new_dir(run)
    new_dir(run, force=True)  # a run's files go, nothing else
    assert sorted(p.name for p in run.iterdir()) == ["notes.txt"]
    for bad, says in ((Path("/"), "root"), (run / "notes.txt", "not a directory"),
                      (Path("/proc/x"), "cannot create")):
        with pytest.raises(BadInput, match=says):
            new_dir(bad)


def test_no_command_writes_over_a_run_directorys_files(tmp_path):
    from rabbitscale.core.outputs import new_file

    (tmp_path / "summary.json").write_text("{}")
    for own in ("summary.json", "config.json", "ledger.json"):
        with pytest.raises(BadInput, match="a file of the run directory"):
            new_file(tmp_path / own, "--out")
    assert new_file(tmp_path / "report.html", "--out")  # the report's own page, rewritten
    assert new_file(tmp_path / "elsewhere" / "calibration.json", "--out")
    with pytest.raises(BadInput, match="is a directory"):
        new_file(tmp_path, "--out")
