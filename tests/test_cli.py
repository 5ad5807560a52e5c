"""Bad input to the CLI: one line on stderr, exit code 2, never a traceback."""

import pytest

from rabbitscale.cli import main


@pytest.mark.parametrize("argv,env,needle", [
    (["stack", "--instances", "0"], {}, "--instances: must be between 1 and 1000"),
    (["stack", "--api-port", "70000"], {}, "--api-port: must be between 0 and 65535"),
    (["stack", "--sink-failure-ratio", "x"], {}, "expected a number"),
    (["stack", "--demo", "soon"], {}, "not a duration"),
    (["stack", "--profile", "nope"], {}, "invalid choice"),
    (["stack"], {"CONDUITLLM__RABBITMQ__PREFETCHCOUNT": "0"}, "PREFETCHCOUNT"),
    (["stack"], {"CONDUITLLM__RABBITMQ__MINCONNECTIONS": "9"}, "MINCONNECTIONS"),
    (["stack", "--profile-file", "/no/such.toml"], {}, "profile file not found"),
    (["launch"], {}, "invalid choice"),
])
def test_bad_input_is_one_line_and_exit_2(monkeypatch, capsys, argv, env, needle):
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert needle in err and "\n" not in err and "Traceback" not in err


def test_unreachable_broker_is_exit_3(monkeypatch, capsys):
    monkeypatch.setenv("CONDUITLLM__RABBITMQ__HOST", "127.0.0.1")
    monkeypatch.setenv("CONDUITLLM__RABBITMQ__PORT", "1")
    assert main(["stack", "--api-port", "0", "--sink-port", "0"]) == 3
    assert "cannot reach" in capsys.readouterr().err


def test_fault_choices_match_the_fault_registry():
    from rabbitscale.cli import build_parser
    from rabbitscale.scenarios.faults import FAULTS

    run = build_parser()._subparsers._group_actions[0].choices["run"]
    fault = next(a for a in run._actions if a.dest == "fault")
    assert set(fault.choices) == set(FAULTS)
