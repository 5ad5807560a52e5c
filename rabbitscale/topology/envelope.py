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
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import orjson

from rabbitscale.core.errors import BadInput
from rabbitscale.core.headers import RS_INTENDED, RS_KEY, RS_RUN, RS_SENT, RS_SEQ
from rabbitscale.topology import naming

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
        self._folded: dict[str, str] | None = None  # built on the first miss only

    def _value(self, key: str) -> Any:
        raw = self._raw
        if key in raw:  # exact case: every camelCase writer, ours included
            return raw[key]
        if self._folded is None:
            self._folded = {k.lower(): k for k in raw}
        return raw[self._folded[key.lower()]]

    def __getitem__(self, key: str) -> Any:
        value = self._value(key)
        return CaseInsensitive(value) if isinstance(value, dict) else value

    def get(self, key: str, default: Any = None) -> Any:
        try:
            return self[key]
        except KeyError:
            return default

    def __iter__(self) -> Any:
        return iter(self._raw)

    def __len__(self) -> int:
        return len(self._raw)

    def __contains__(self, key: object) -> bool:
        if not isinstance(key, str):
            return False
        try:
            self._value(key)
        except KeyError:
            return False
        return True

    def text(self, key: str, default: str = "") -> str:
        """A field as text: None and missing give ``default``; numbers are formatted."""
        value = self.get(key)
        if value is None:
            return default
        return value if isinstance(value, str) else str(value)

    @property
    def raw(self) -> Mapping[str, Any]:
        return self._raw


_SECOND: list[Any] = [None, ""]  # the last whole second formatted: strftime once a second


def sent_time_text(epoch_s: float) -> str:
    """``sentTime`` as MassTransit writes it: UTC, 7 fractional digits, 'Z'."""
    seconds, ticks = divmod(round(epoch_s * 10**7), 10**7)
    if _SECOND[0] != seconds:
        _SECOND[:] = [seconds, dt.datetime.fromtimestamp(seconds, dt.UTC)
                      .strftime("%Y-%m-%dT%H:%M:%S.")]
    return f"{_SECOND[1]}{ticks:07d}Z"


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


def build_envelope(urns: Sequence[str], message: dict[str, Any], *, message_id: str,
                   sent_time: float, destination: str, headers: dict[str, Any],
                   correlation_id: str | None = None) -> bytes:
    """The camelCase envelope MassTransit 8 writes (conduit-topology.md, "MassTransit wire
    format"), encoded: ``urns`` are the message's type, then its bases and interfaces;
    ``destination`` the exchange or queue it is sent to."""
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
        "messageType": list(urns),
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
    sent_time_raw: Any  # parsed only when a message carries no measurement headers

    @property
    def sent_time(self) -> float | None:
        return parse_dotnet_time(self.sent_time_raw)

    @property
    def message_type(self) -> str:
        """TypeName of the first URN (the message's own type)."""
        return naming.urn_type_name(self.message_types[0])

    def is_a(self, urn: str) -> bool:
        """Does the message have this type, as itself, a base or an interface?"""
        return urn in self.message_types

    def measurement(self) -> tuple[float, float, str, int, str]:
        """(intended, sent, key, seq, run) from the measurement headers, read once; zeros and
        empty strings where a message carries none (a .NET publisher's)."""
        h = self.headers.raw
        if RS_INTENDED in h:  # ours, exact case: the hot path
            try:
                return (float(h[RS_INTENDED]), float(h.get(RS_SENT) or 0.0),
                        str(h.get(RS_KEY) or ""), int(h.get(RS_SEQ) or 0),
                        str(h.get(RS_RUN) or ""))
            except (TypeError, ValueError):
                pass
        return (self.header_float(RS_INTENDED) or 0.0, self.header_float(RS_SENT) or 0.0,
                self.header_text(RS_KEY), self.header_int(RS_SEQ), self.header_text(RS_RUN))

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
                    env.get("sentTime"))


def _id_prefix() -> str:
    """A UUID's first 80 bits, random per process (version 4 and variant bits set), from the
    OS: a program that seeds ``random`` the same in two processes must not share ids."""
    h = os.urandom(10).hex()
    return f"{h[:8]}-{h[8:12]}-4{h[13:16]}-{'89ab'[int(h[16], 16) & 3]}{h[17:20]}-"


class _Ids:
    prefix = _id_prefix()
    count = 0


def _new_id_prefix() -> None:
    _Ids.prefix, _Ids.count = _id_prefix(), 0


os.register_at_fork(after_in_child=_new_id_prefix)  # a forked worker must not repeat ids


def new_id() -> str:
    """A UUID as text: a random per-process prefix and a counter, as MassTransit's NewId is
    sequential rather than random; ids need to be unique, not secret (a random one costs
    ~2 us, a tenth of what the API adds per request)."""
    _Ids.count += 1
    if _Ids.count >= 1 << 48:
        _new_id_prefix()
        _Ids.count = 1
    return f"{_Ids.prefix}{_Ids.count:012x}"


def measurement_headers(intended: float, sent: float, key: str, seq: int,
                        run: str) -> dict[str, Any]:
    return {RS_INTENDED: f"{intended:.6f}", RS_SENT: f"{sent:.6f}", RS_KEY: key, RS_SEQ: seq,
            RS_RUN: run}
