"""Every value a command reads is parsed once, with its range: over every option of every
command's parser, hypothesis draws values (numbers past any range, inf, nan, units, empty
text, other scripts' digits) and each either parses to a finite value or is refused with one
line (argparse's type error or BadInput, exit 2); nothing else is raised. And the reproductions
of the review, each exit 2 with one line before anything starts."""

from __future__ import annotations

import argparse
import importlib
import math

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from rabbitscale.cli.main import COMMANDS
from rabbitscale.core.errors import BadInput
from tests.support import one_line_error, rabbitscale

NASTY = st.one_of(
    st.sampled_from(["", " ", "inf", "-inf", "nan", "1e999", "1e999s", "-5", "0", "0s",
                     "1PiB", "1e999/s", "0bps", "NaNms", "²", "٣s", "9" * 5000, "1e-999s",
                     "=", "a=", "=1", ",", "10KB,", "http://u:p@h:1", "::", "☃"]),
    st.from_regex(r"-?[0-9]{1,30}(\.[0-9]{0,9})?(e[-+]?[0-9]{1,4})?(ms|s|m|h|KB|MiB|/s|/min|bps)?",
                  fullmatch=True),
    st.text(max_size=30))


def _typed_actions() -> list[tuple[str, str, argparse.Action]]:
    out = []
    for name, command in COMMANDS.items():
        module = importlib.import_module(f"rabbitscale.cli.commands.{command.module}")
        parsers = [module.parser([])]
        if name == "run":
            parsers += [module.stack_parser(), module.target_parser(), module.backlog_parser()]
        for parser in parsers:
            for action in parser._actions:  # noqa: SLF001 - argparse keeps its options here
                if action.type is not None and action.option_strings:
                    out.append((name, action.option_strings[-1], action))
    return out


ACTIONS = _typed_actions()


def _finite(value: object) -> bool:
    if isinstance(value, float):
        return math.isfinite(value)
    if isinstance(value, tuple | list):
        return all(_finite(v) for v in value)
    return True


@pytest.mark.parametrize("command,option,action", ACTIONS,
                         ids=[f"{c} {o}" for c, o, _ in ACTIONS])
@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(text=NASTY)
def test_every_option_parses_to_a_finite_value_or_is_one_line(command, option, action, text):
    try:
        value = action.type(text)  # type: ignore[misc]
    except (argparse.ArgumentTypeError, BadInput) as exc:
        assert "\n" not in str(exc) and str(exc)
        return
    assert _finite(value), (command, option, text, value)


@pytest.mark.parametrize("args,says", [
    (["run", "sustained_tasks", "--duration", "1e999s"], "finite"),
    (["run", "sustained_tasks", "--drain-timeout", "1e999s"], "finite"),
    (["find-max", "sustained_tasks", "--step-duration", "0s"], "at least 5s"),
    (["stack", "--sink-latency", "1e999s"], "finite"),
    (["stack", "--demo", "1e999s"], "finite"),
    (["worker", "--master", "127.0.0.1:5557", "--wait", "1e999s"], "finite"),
    (["worker", "--master", "http://x:5557"], "no scheme"),
    (["run", "sustained_tasks", "--sample-interval", "0s"], "at least 100ms"),
    (["run", "sustained_tasks", "--payload-size", "1PiB"], "128MiB"),
    (["run", "webhook_burst", "--burst-rates", ""], "one rate or more"),
    (["run", "sustained_tasks", "--vhost", ""], "must not be empty"),
    (["plan", "--link-speed", "0bps"], "above 0"),
    (["plan", "--service-time", "webhook-delivery=1e999s"], "finite"),
    (["run", "sustained_tasks", "--threshold", "e2e.p99<nan"], "not a duration"),
])
def test_the_reviews_bad_values_are_exit_2_and_one_line(args, says):
    done = rabbitscale(*args, timeout=60)
    assert done.returncode == 2, (args, done.stdout[-500:], done.stderr)
    assert says in one_line_error(done), done.stderr


@pytest.mark.parametrize("text,says", [
    ('profile = "conduit"\n[tasks.video]\nweight = inf\n', "finite"),
    ('profile = "conduit"\n[endpoints.webhook-delivery]\nfailure_probability = nan\n',
     "finite"),
    ('profile = "conduit"\n[endpoints.webhook-delivery]\nservice_time = "fixed:1e999s"\n',
     "service_time"),
    ('profile = "conduit"\n[thresholds]\nerror_rate_max = nan\n', "finite"),
    ('profile = "conduit"\n[thresholds]\nerror_rate_max = -5\n', "non-negative"),
    ('profile = "conduit"\n[thresholds]\nlatency = ["e2e.p99<banana"]\n', "not a duration"),
    ('profile = "conduit"\n[thresholds]\nnot_a_threshold = 3\n', "unknown threshold"),
    ("a = " + "[" * 5000 + "]" * 5000 + "\n", "nested too deeply"),
])
def test_bad_profile_values_are_refused_by_profile_check(tmp_path, text, says):
    path = tmp_path / "p.toml"
    path.write_text(text)
    done = rabbitscale("profile", "check", str(path))
    assert done.returncode == 2 and says in one_line_error(done), done.stdout + done.stderr
