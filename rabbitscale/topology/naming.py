"""MassTransit's names on the broker: message-type URNs, exchanges, and the side queues.

Every other module asks here, so a queue or exchange name is spelled in one place.
"""

from __future__ import annotations

import uuid

COMPLETIONS_EXCHANGE = "rabbitscale.completions"  # the stack's completion records
RECORDER_QUEUE = "rabbitscale.recorder"  # a run's durable queue on that exchange
RUN_VHOST_PREFIX = "rabbitscale-run-"  # a run's own vhost, deleted at its end
STACK_LISTENER_PREFIX = "rabbitscale.stack."  # a stack's own record queue (+ run id and pid)


AMQP_NAME_MAX_BYTES = 255  # AMQP 0-9-1's shortstr: queue and exchange names


def amqp_name_problem(name: str) -> str | None:
    """Why ``name`` cannot be a queue or exchange name, or None."""
    if len(name.encode()) > AMQP_NAME_MAX_BYTES:
        return f"longer than AMQP's {AMQP_NAME_MAX_BYTES} bytes"
    if any(ord(c) < 32 or ord(c) == 127 for c in name):
        return "has a control character"
    return None


def file_name_problem(name: str) -> str | None:
    """Why ``name`` (a queue or task kind that names a file of a run) cannot name a file."""
    if not name:
        return "is empty"
    if "/" in name or "\\" in name or name in (".", ".."):
        return "is a path (a name here names a file of the run: no / or \\, not . or ..)"
    return amqp_name_problem(name)


def run_vhost() -> str:
    """A fresh vhost for one run, so runs, tests and benchmarks never share messages."""
    return f"{RUN_VHOST_PREFIX}{uuid.uuid4().hex[:8]}"


def message_urn(type_name: str, namespace: str) -> str:
    """MassTransit message-type URN: urn:message:Namespace:TypeName (no namespace: the type's
    name alone, urn:message:TypeName)."""
    return f"urn:message:{namespace}:{type_name}" if namespace else f"urn:message:{type_name}"


def urn_type_name(urn: str) -> str:
    """TypeName of a URN (``urn:message:Ns:TypeName`` or ``...:Outer+Inner``)."""
    return urn.rsplit(":", 1)[-1]


def type_exchange(type_name: str, namespace: str) -> str:
    """MassTransit publish topology: one fanout exchange per message type, Namespace:TypeName."""
    return f"{namespace}:{type_name}" if namespace else type_name


def error_queue(queue: str) -> str:
    """Where MassTransit moves a message whose consumer faulted."""
    return f"{queue}_error"


def skipped_queue(queue: str) -> str:
    """Where MassTransit moves a message no consumer of the endpoint handles."""
    return f"{queue}_skipped"


def input_address(queue: str, host: str = "localhost") -> str:
    """MassTransit's endpoint address, as it appears in envelopes and fault headers."""
    return f"rabbitmq://{host}/{queue}"
