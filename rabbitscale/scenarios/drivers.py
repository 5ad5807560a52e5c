"""The driver interface: how a load generator hands a task to the system under test.

The load generator knows only ``TaskDriver.send(task) -> Sent`` (OpenMessaging Benchmark's
driver/worker split); the implementations, which run inside Locust's gevent world, live with
the locustfiles (scenarios/locustfiles/drivers.py). ``message_for`` is the message a task
becomes when it is published straight to the broker.
"""

from __future__ import annotations

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

    def send(self, task: Task) -> Sent: ...


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
