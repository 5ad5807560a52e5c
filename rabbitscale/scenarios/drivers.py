"""The driver interface and the registry of transports: how a load generator hands a task to
the system under test.

The load generator knows only ``TaskDriver`` (OpenMessaging Benchmark's driver/worker split):
``open()`` before the first slot, ``send(task) -> Sent`` per slot, ``close()`` at the end. The
implementations run inside Locust's gevent world, one module each under
scenarios/locustfiles/, and are imported only in Locust's processes (``make``); ``DRIVERS``
names them, and the CLI's ``--transport`` choices and the Locust option come from it. A new
transport is one module with a ``make(setup)`` and one line here. ``message_for`` is the
message a task becomes when it is published straight to the broker.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from rabbitscale.topology import messages
from rabbitscale.topology.profiles import Profile


@dataclass(frozen=True)
class Task:
    kind: str  # a task kind of the profile
    key_id: int  # ordering key (ConduitLLM: the virtual key)
    task_id: str
    size_bytes: int
    intended: float  # epoch seconds of its slot in the open-model schedule
    callback: str = ""  # the URL the system is asked to call back, if any


@dataclass
class Sent:
    ok: bool
    outcome: str
    response_time_ms: float
    length: int = 0
    error: str = ""
    via: str = "HTTP"  # HTTP (a route) or AMQP (published to the broker)
    extra: dict[str, Any] = field(default_factory=dict)


class TaskDriver(Protocol):
    request_type: str

    def open(self) -> None:
        """Connect (before the first slot: connecting is not part of a send)."""

    def send(self, task: Task) -> Sent:
        """One task: its outcome and how long the system took to take it."""

    def close(self) -> None:
        """Let go of connections; idempotent."""


@dataclass(frozen=True)
class DriverSetup:
    """What a driver is made with, inside a Locust user: the user's HTTP client, the profile,
    the bearer key of each virtual key (drivers with ``needs_keys``), the callback plan and
    the polling interval of a black-box HTTP run."""

    client: Any
    profile: Profile
    keyring: Callable[[int], str] | None = None
    callbacks: Any = None  # scenarios.callback_urls.CallbackPlan
    poll_interval_s: float = 0.0


@dataclass(frozen=True)
class Transport:
    """One registered transport: its driver module (``make(setup) -> TaskDriver``), what it
    does, whether it needs the system's API keys, and whether its sends are publishes the
    run must count itself (they reach the broker without the stack's publisher)."""

    name: str
    module: str
    summary: str
    needs_keys: bool = False
    publishes: bool = False

    def make(self, setup: DriverSetup) -> TaskDriver:
        import importlib

        driver: TaskDriver = importlib.import_module(self.module).make(setup)
        return driver


DRIVERS: dict[str, Transport] = {t.name: t for t in (
    Transport("http", "rabbitscale.scenarios.locustfiles.http_driver",
              "through the system's API: each task on its kind's route (kinds without a "
              "route are published)", needs_keys=True),
    Transport("amqp", "rabbitscale.scenarios.locustfiles.amqp_driver",
              "straight to the broker: the MassTransit envelope, persistent, confirmed",
              publishes=True),
)}
TRANSPORTS = tuple(DRIVERS)


def transport(name: str) -> Transport:
    try:
        return DRIVERS[name]
    except KeyError:
        from rabbitscale.core.errors import BadInput

        raise BadInput(f"unknown transport {name!r} (transports: {', '.join(DRIVERS)})") \
            from None


def task_variables(task: Task) -> dict[str, Any]:
    return messages.variables(task_id=task.task_id, key_id=task.key_id,
                              callback=task.callback or None)


def request_for(profile: Profile, task: Task) -> Any:
    """The HTTP body a task is sent with (its kind's route), at the task's size."""
    route = profile.task(task.kind).route
    if route is None:
        return {}
    return messages.request_body(route, task_variables(task), task.size_bytes)


def message_for(profile: Profile, task: Task) -> tuple[str, dict[str, Any]]:
    """(message type, body) of a task published straight to the broker: the message its
    kind's route would have led to (the request rendered, checked and completed with its
    fields' defaults, as the reference API does), else its message type's body."""
    kind = profile.task(task.kind)
    mt = profile.message(kind.message)
    context = task_variables(task)
    if kind.route is not None:
        request = messages.request_body(kind.route, context, task.size_bytes)
        context["request"] = messages.validate_request(kind.route, request)
        return mt.name, messages.message_body(mt, context)
    return mt.name, messages.message_body(mt, context, task.size_bytes)
