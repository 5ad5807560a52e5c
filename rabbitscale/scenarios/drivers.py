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
from rabbitscale.topology.tasks import MESSAGE_TYPES


@dataclass(frozen=True)
class Task:
    kind: str  # video | image | spend | webhook
    key_id: int  # virtual key
    task_id: str
    size_bytes: int
    intended: float  # epoch seconds of its slot in the open-model schedule
    webhook_url: str = ""
    amount: float = 0.0


@dataclass
class Sent:
    ok: bool
    outcome: str
    response_time_ms: float
    length: int = 0
    error: str = ""
    extra: dict[str, Any] = field(default_factory=dict)


class TaskDriver(Protocol):
    request_type: str

    def send(self, task: Task) -> Sent: ...


def message_for(task: Task) -> tuple[str, dict[str, Any], str]:
    """(message type, body, ordering key) for a task published over AMQP."""
    if task.kind == "video":
        body = messages.video_generation(task.task_id, str(task.key_id),
                                         size_bytes=task.size_bytes)
    elif task.kind == "image":
        body = messages.image_generation(task.task_id, task.key_id, size_bytes=task.size_bytes)
    elif task.kind == "spend":
        body = messages.spend_update(task.key_id, task.amount, task.task_id)
    else:
        body = messages.webhook_delivery(task.task_id, task.webhook_url,
                                         size_bytes=task.size_bytes)
    key = task.task_id if task.kind == "webhook" else str(task.key_id)
    return MESSAGE_TYPES[task.kind], body, key
