"""Bad input to the CLI: one line on stderr, exit code 2, never a traceback."""

import argparse

import pytest

from rabbitscale.cli.main import main


@pytest.mark.parametrize("argv,env,needle", [
    (["stack", "--instances", "0"], {}, "--instances: must be between 1 and 1000"),
    (["stack", "--api-port", "70000"], {}, "--api-port: must be between 0 and 65535"),
    (["stack", "--sink-failure-ratio", "x"], {}, "expected a fraction"),
    (["stack", "--demo", "soon"], {}, "not a duration"),
    (["stack", "--profile", "nope"], {}, "invalid choice"),
    (["stack"], {"CONDUITLLM__RABBITMQ__PREFETCHCOUNT": "0"}, "PREFETCHCOUNT"),
    (["stack"], {"CONDUITLLM__RABBITMQ__MINCONNECTIONS": "9"}, "MINCONNECTIONS"),
    (["stack", "--profile-file", "/no/such.toml"], {}, "profile file not found"),
    (["launch"], {}, "unknown command 'launch'"),
    (["pln"], {}, "did you mean 'plan'?"),
    (["plan", "--inst", "3"], {}, "did you mean --instances?"),
    (["run", "sustained_tasks", "--queued", "5"], {}, "applies to `run backlog`"),
    (["run", "backlog", "--duration", "5s"], {}, "does not apply"),
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


def test_fault_names_come_from_the_catalogue_in_one_spelling():
    from rabbitscale.cli.commands.run import stack_parser
    from rabbitscale.faults.catalogue import FAULTS, SINGLE

    fault = next(a for a in stack_parser()._actions if a.dest == "fault")
    assert all(name in fault.help for name in SINGLE) and set(SINGLE) <= set(FAULTS)
    assert fault.type("kill_consumer") == fault.type("Kill-Consumer") == "kill-consumer"
    with pytest.raises(argparse.ArgumentTypeError, match="unknown fault 'nope'"):
        fault.type("nope")


def test_every_option_has_help_and_shows_its_default(capsys):
    """`--help` of every command (and of run's three modes) documents every option."""
    from rabbitscale.cli import main as cli
    from rabbitscale.cli.commands import run

    parsers = [run.stack_parser(), run.backlog_parser(), run.target_parser()]
    for name, command in cli.COMMANDS.items():
        if name != "run":
            module = __import__(f"rabbitscale.cli.commands.{command.module}",
                                fromlist=["parser"])
            parsers.append(module.parser([]))
    for parser in parsers:
        for action in parser._actions:
            if action.option_strings and action.help != "==SUPPRESS==":
                assert action.help, (parser.prog, action.option_strings)
        text = parser.format_help()
        assert "(default: None)" not in text, parser.prog


def test_version_and_top_level_help(capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["--version"])
    assert exit_.value.code == 0
    assert capsys.readouterr().out.startswith("rabbitscale ")
    with pytest.raises(SystemExit):
        main(["--help"])
    out = capsys.readouterr().out
    assert "argument parsing" not in out and "find-max" in out and "exit codes" in out


@pytest.mark.parametrize("args", [["nope"], ["sustained_tasks", "--duration", "1s"],
                                  ["sustained_tasks", "--task-rate", "fast"],
                                  ["sustained_tasks", "--payload-size", "huge"]])
def test_bad_run_flags_exit_2_before_anything_starts(args):
    from tests.support import one_line_error, rabbitscale

    done = rabbitscale("run", *args, timeout=60)
    assert done.returncode == 2, (args, done.stderr)
    one_line_error(done)
