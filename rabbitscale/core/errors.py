"""One error hierarchy for every command; each error carries its exit code.

A CI job must tell a failed check from a broken setup, so the kind of failure decides the exit
status, and ``rabbitscale.cli.main`` is the one place that turns an error into that status:

    0  success                         (EXIT_OK)
    1  a check failed: an SLO, a plan figure, doctor, a regression   (EXIT_CHECK_FAILED)
    2  bad input: flags, config or profile files, run directories    (BadInput)
    3  a dependency is unreachable or refuses us: broker, management
       API, Prometheus, the target under test                        (Unavailable)
    4  the run itself failed: Locust crashed, a node did not boot     (RunFailed)
    5  the run is INVALID: the load generator did not hold its schedule, so the
       measurement says nothing of the system under test             (EXIT_INVALID)

``str(error)`` is one line saying what failed and what to check; nothing here prints.
"""

from __future__ import annotations

EXIT_OK = 0
EXIT_CHECK_FAILED = 1
EXIT_BAD_INPUT = 2
EXIT_UNAVAILABLE = 3
EXIT_RUN_FAILED = 4
EXIT_INVALID = 5  # a run whose own measurement cannot be trusted (judge/validity.py)
EXIT_INTERRUPTED = 130


class RabbitscaleError(Exception):
    """Base of every error meant for the user: one line, and an exit code."""

    exit_code = EXIT_RUN_FAILED

    def __init__(self, message: str) -> None:
        super().__init__(" ".join(str(message).split()))  # always one line


class BadInput(RabbitscaleError, ValueError):
    """A flag, file, setting or message is invalid: fix the input and run again."""

    exit_code = EXIT_BAD_INPUT


class ConfigError(BadInput):
    """A setting, profile or thresholds file is missing or invalid; one line naming the key."""


class Unavailable(RabbitscaleError, ConnectionError):
    """A dependency cannot be reached or does not authorise us."""

    exit_code = EXIT_UNAVAILABLE


class RunFailed(RabbitscaleError):
    """The tool could not complete the job (as opposed to the system under test failing)."""

    exit_code = EXIT_RUN_FAILED


class PortInUse(BadInput):
    """A port the user asked for is taken on this machine."""

    def __init__(self, what: str, host: str, port: int, flag: str = "",
                 hint: str = "another port (0 picks a free one)") -> None:
        advice = f"; choose {hint} with {flag}" if flag else ""
        super().__init__(f"{what}: port {port} on {host} is already in use{advice}")
