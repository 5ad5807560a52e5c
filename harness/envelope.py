"""MassTransit 8.x JSON envelope, plus the measurement headers every message carries.

The measurement headers (intended send time, actual send time, ordering key, per-key sequence,
run) travel inside the envelope's JSON ``headers``, where a MassTransit consumer would see them
too; the consumer parses the envelope anyway, so they cost no AMQP header table.
"""

from __future__ import annotations

import json
import os
import socket
import sys
import uuid
from dataclasses import dataclass
from typing import Any

from rabbitscale.core.errors import BadInput
from rabbitscale.harness.naming import message_urn

CONTENT_TYPE = "application/vnd.masstransit+json"

H_INTENDED = "RS-Intended-Time"
H_SENT = "RS-Sent-Time"
H_KEY = "RS-Key"
H_SEQ = "RS-Seq"
H_RUN = "RS-Run"


class EnvelopeError(BadInput):
    """The body is not a MassTransit envelope; one line, no traceback."""


_HOST = {
    "machineName": socket.gethostname(),
    "processName": "rabbitscale",
    "processId": os.getpid(),
    "assembly": "rabbitscale",
    "assemblyVersion": "0.1.0",
    "frameworkVersion": sys.version.split()[0],
    "massTransitVersion": "8.5.0",
    "operatingSystemVersion": sys.platform,
}


def build_envelope(message_type: str, message: dict[str, Any], *, message_id: str,
                   sent_time: str, destination: str, headers: dict[str, Any],
                   correlation_id: str | None = None) -> dict[str, Any]:
    """The camelCase envelope of conduit-topology.md ("MassTransit wire format")."""
    return {
        "messageId": message_id,
        "requestId": None,
        "correlationId": correlation_id,
        "conversationId": message_id,
        "initiatorId": None,
        "sourceAddress": f"rabbitmq://localhost/{_HOST['machineName']}_rabbitscale",
        "destinationAddress": f"rabbitmq://localhost/{destination}",
        "responseAddress": None,
        "faultAddress": None,
        "messageType": [message_urn(message_type)],
        "message": message,
        "expirationTime": None,
        "sentTime": sent_time,
        "headers": headers,
        "host": _HOST,
    }


@dataclass(frozen=True)
class Envelope:
    message_id: str
    message_type: str  # TypeName, without namespace
    message: dict[str, Any]
    headers: dict[str, Any]


def parse_envelope(body: bytes) -> Envelope:
    try:
        doc = json.loads(body)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise EnvelopeError(f"body is not JSON: {exc}") from None
    if not isinstance(doc, dict) or not isinstance(doc.get("message"), dict):
        raise EnvelopeError("body is not a MassTransit envelope (no 'message' object)")
    types = doc.get("messageType")
    if not isinstance(types, list) or not types or not isinstance(types[0], str):
        raise EnvelopeError("envelope has no messageType")
    type_name = types[0].rsplit(":", 1)[-1]
    raw = doc.get("headers")
    headers: dict[str, Any] = raw if isinstance(raw, dict) else {}
    return Envelope(str(doc.get("messageId") or ""), type_name, doc["message"], headers)


def new_id() -> str:
    return str(uuid.uuid4())
