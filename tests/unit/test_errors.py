"""Every dependency failure ends in one line and its exit code (core/errors.py): a wrong
password, the broker down, the management API down and a port in use, for `run`, `stack` and
`find-max`, and a bad directory for `plan --calibrate`. Each command runs as a user runs it:
a process of its own, from another directory, its whole stderr inspected."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from rabbitscale.broker.management import ManagementError, ManagementUnavailable
from rabbitscale.core.errors import (
    EXIT_BAD_INPUT,
    EXIT_UNAVAILABLE,
    BadInput,
    ConfigError,
    RabbitscaleError,
    RunFailed,
    Unavailable,
)
from tests import support


def rabbitscale(args: list[str], tmp_path: Path, env: dict[str, str] | None = None,
                timeout: float = 90) -> subprocess.CompletedProcess[str]:
    return support.rabbitscale(*args, cwd=tmp_path, timeout=timeout, environ=env)


def assert_one_line(done: subprocess.CompletedProcess[str], code: int, needle: str) -> None:
    err = done.stderr.strip()
    assert done.returncode == code, (done.returncode, err, done.stdout[-1000:])
    assert err.startswith("error: ") and "\n" not in err, err
    assert needle in err, err
    assert "Traceback" not in done.stderr + done.stdout
    assert "Unclosed" not in done.stderr + done.stdout


def test_every_error_carries_its_exit_code():
    assert issubclass(ConfigError, BadInput) and ConfigError("x").exit_code == EXIT_BAD_INPUT
    assert ManagementUnavailable("x").exit_code == EXIT_UNAVAILABLE
    assert issubclass(ManagementUnavailable, ManagementError)
    assert ManagementError("x").exit_code == RunFailed.exit_code == 4
    assert Unavailable.exit_code == 3 and BadInput.exit_code == 2
    assert str(RabbitscaleError("two\nlines")) == "two lines"


def test_calibrate_bad_directories(tmp_path):
    assert_one_line(rabbitscale(["plan", "--calibrate", str(tmp_path / "nope")], tmp_path),
                    EXIT_BAD_INPUT, "no such directory")
    (tmp_path / "empty").mkdir()
    assert_one_line(rabbitscale(["plan", "--calibrate", str(tmp_path / "empty")], tmp_path),
                    EXIT_BAD_INPUT, "summary.json: not found")
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "summary.json").write_text("{not json")
    assert_one_line(rabbitscale(["plan", "--calibrate", str(broken)], tmp_path),
                    EXIT_BAD_INPUT, "unreadable")


def test_an_unexpected_error_is_one_line_too(monkeypatch, capsys):
    """A bug in a handler: one line naming it, exit 4 (RABBITSCALE_DEBUG=1 re-raises)."""
    from rabbitscale.cli import main as cli
    from rabbitscale.cli.commands import report

    monkeypatch.setattr(report, "run", lambda args: 1 / 0)
    assert cli.main(["report", "somewhere"]) == 4
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: unexpected ZeroDivisionError") and "\n" not in err
    monkeypatch.setenv("RABBITSCALE_DEBUG", "1")
    with pytest.raises(ZeroDivisionError):
        cli.main(["report", "somewhere"])
