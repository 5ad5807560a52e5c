"""MassTransit 8.x JSON envelope, written as MassTransit writes it and read as it reads it.

MassTransit's System.Text.Json serializer writes every property of the envelope and of the
message in camelCase and reads them case-insensitively; ``messageType`` lists the message's
type, then its base types and interfaces. ``parse_envelope`` accepts what a .NET publisher
sends: any letter case, nulls, ``sentTime`` with 7 fractional digits and an offset, header
values of any JSON type, the ``host`` block.

The measurement headers (intended send time, actual send time, ordering key, per-key
sequence, run) travel in the envelope's JSON ``headers``, where a MassTransit consumer sees
them too; a message from another publisher simply has none of them.
"""

from __future__ import annotations

import datetime as dt
import os
import re
import socket
import sys
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import orjson

from rabbitscale.core.errors import BadInput
from rabbitscale.core.headers import RS_INTENDED, RS_KEY, RS_RUN, RS_SENT, RS_SEQ
from rabbitscale.harness import naming

CONTENT_TYPE = "application/vnd.masstransit+json"

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


class EnvelopeError(BadInput):
    """The body is not a MassTransit envelope; one line, no traceback."""


class CaseInsensitive(Mapping[str, Any]):
    """A JSON object read the way System.Text.Json reads it with
    PropertyNameCaseInsensitive: ``get("TaskId")`` finds ``taskId``. Nested objects are
    wrapped when they are read, so the cost is paid only for what a consumer touches."""

    __slots__ = ("_raw", "_folded")

    def __init__(self, raw: Mapping[str, Any]) -> None:
        self._raw = raw
        self._folded = {k.lower(): k for k in raw}

    def __getitem__(self, key: str) -> Any:
        value = self._raw[self._folded[key.lower()]]
        return CaseInsensitive(value) if isinstance(value, dict) else value

    def __iter__(self) -> Any:
        return iter(self._raw)

    def __len__(self) -> int:
        return len(self._raw)

    def __contains__(self, key: object) -> bool:
        return isinstance(key, str) and key.lower() in self._folded

    def text(self, key: str, default: str = "") -> str:
        """A field as text: None and missing give ``default``; numbers are formatted."""
        value = self.get(key)
        if value is None:
            return default
        return value if isinstance(value, str) else str(value)

    @property
    def raw(self) -> Mapping[str, Any]:
        return self._raw


def sent_time_text(epoch_s: float) -> str:
    """``sentTime`` as MassTransit writes it: UTC, 7 fractional digits, 'Z'."""
    seconds, ticks = divmod(round(epoch_s * 10**7), 10**7)
    t = dt.datetime.fromtimestamp(seconds, dt.UTC)
    return t.strftime("%Y-%m-%dT%H:%M:%S.") + f"{ticks:07d}Z"


_TIME = re.compile(r"(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(?:\.(\d{1,9}))?(Z|[+-]\d\d:?\d\d)?$")


def parse_dotnet_time(text: Any) -> float | None:
    """Epoch seconds of a .NET DateTime/DateTimeOffset text (any fraction, 'Z' or an offset,
    none = UTC), or None when it is not one; a bad timestamp never fails a message."""
    if not isinstance(text, str):
        return None
    m = _TIME.match(text.strip())
    if not m:
        return None
    base, frac, zone = m.groups()
    try:
        t = dt.datetime.fromisoformat(base).replace(tzinfo=dt.UTC)
    except ValueError:
        return None
    seconds = t.timestamp() + (int(frac) / 10 ** len(frac) if frac else 0.0)
    if zone and zone != "Z":
        sign = 1 if zone[0] == "+" else -1
        hours, minutes = int(zone[1:3]), int(zone[-2:])
        seconds -= sign * (hours * 3600 + minutes * 60)
    return seconds


def build_envelope(message_type: str, message: dict[str, Any], *, message_id: str,
                   sent_time: float, destination: str, headers: dict[str, Any],
                   correlation_id: str | None = None) -> bytes:
    """The camelCase envelope of conduit-topology.md ("MassTransit wire format"), encoded."""
    return orjson.dumps({
        "messageId": message_id,
        "requestId": None,
        "correlationId": correlation_id,
        "conversationId": message_id,
        "initiatorId": None,
        "sourceAddress": naming.input_address(f"{_HOST['machineName']}_rabbitscale"),
        "destinationAddress": naming.input_address(destination),
        "responseAddress": None,
        "faultAddress": None,
        "messageType": [naming.message_urn(message_type)],
        "message": message,
        "expirationTime": None,
        "sentTime": sent_time_text(sent_time),
        "headers": headers,
        "host": _HOST,
    })


@dataclass(frozen=True, slots=True)
class Envelope:
    message_id: str
    message_types: tuple[str, ...]  # URNs: the type, then its bases and interfaces
    message: CaseInsensitive
    headers: CaseInsensitive
    sent_time: float | None

    @property
    def message_type(self) -> str:
        """TypeName of the first URN (the message's own type)."""
        return naming.urn_type_name(self.message_types[0])

    def is_a(self, urn: str) -> bool:
        """Does the message have this type, as itself, a base or an interface?"""
        return urn in self.message_types

    def header_text(self, name: str) -> str:
        return self.headers.text(name)

    def header_float(self, name: str) -> float | None:
        value = self.headers.get(name)
        try:
            return None if value is None or isinstance(value, bool) else float(value)
        except (TypeError, ValueError):
            return None

    def header_int(self, name: str) -> int:
        value = self.header_float(name)
        return int(value) if value is not None else 0


_EMPTY = CaseInsensitive({})


def parse_envelope(body: bytes) -> Envelope:
    try:
        doc = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise EnvelopeError(f"body is not JSON: {exc}") from None
    if not isinstance(doc, dict):
        raise EnvelopeError("body is not a MassTransit envelope (not a JSON object)")
    env = CaseInsensitive(doc)
    message = env.get("message")
    if not isinstance(message, CaseInsensitive):
        raise EnvelopeError("body is not a MassTransit envelope (no 'message' object)")
    types = env.get("messageType")
    if isinstance(types, str):
        types = [types]
    if not isinstance(types, list) or not types or \
            not all(isinstance(t, str) and t for t in types):
        raise EnvelopeError("envelope has no messageType")
    headers = env.get("headers")
    return Envelope(env.text("messageId"), tuple(types), message,
                    headers if isinstance(headers, CaseInsensitive) else _EMPTY,
                    parse_dotnet_time(env.get("sentTime")))


def new_id() -> str:
    return str(uuid.uuid4())


def measurement_headers(intended: float, sent: float, key: str, seq: int,
                        run: str) -> dict[str, Any]:
    return {RS_INTENDED: f"{intended:.6f}", RS_SENT: f"{sent:.6f}", RS_KEY: key, RS_SEQ: seq,
            RS_RUN: run}
