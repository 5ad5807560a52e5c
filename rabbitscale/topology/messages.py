"""Message bodies and request bodies from a profile's templates, at the size a run asks for.

A message type's ``body`` (and a route's ``request``) is a template (topology/template.py);
``build`` renders it with a task's variables: its id, its ordering key, the request it came
with, a callback URL, the time. Where a template uses ``${pad}`` and a size is asked for, the
padding is filled so the encoded body reaches it (the capacity model's prefetch x size x
instances depends on sizes). Properties a message type sends as an enum's number are written
as that number. ``validate_request`` checks a request body against a route's fields, as the
reference API does.
"""

from __future__ import annotations

import random
import time
from collections.abc import Mapping
from typing import Any

import orjson

from rabbitscale.core.errors import BadInput
from rabbitscale.topology.envelope import new_id, sent_time_text
from rabbitscale.topology.profiles import Field, MessageType, Profile, Route
from rabbitscale.topology.template import Template, get_path, set_path


class RequestInvalid(BadInput):
    """A request body does not match its route's fields (the API answers 422)."""


def now_text(epoch_s: float | None = None) -> str:
    """A .NET DateTime as MassTransit writes one: UTC, 7 fractional digits, 'Z' (the
    envelope's formatter, which formats each second once)."""
    return sent_time_text(time.time() if epoch_s is None else epoch_s)


def variables(*, task_id: str | None = None, key_id: int = 1, request: Any = None,
              callback: str | None = None, amount: float | None = None,
              needs: frozenset[str] | set[str] | None = None, **extra: Any) -> dict[str, Any]:
    """The variables templates are rendered with (docs/profile-format.md, "Templates").
    ``needs``: the names the template uses (its roots); the generated ones it does not use
    (now, uuid, a random amount) are left out, which the API's hot path notices."""
    out = {"task_id": task_id or new_id(), "key_id": key_id, "key": str(key_id),
           "request": request if request is not None else {}, "callback": callback,
           "pad": "", **extra}
    if needs is None or "amount" in needs:
        out["amount"] = amount if amount is not None else round(random.uniform(0.001, 0.1), 6)
    if needs is None or "now" in needs:
        out["now"] = now_text()
    if needs is None or "uuid" in needs:
        out["uuid"] = new_id()
    return out


def render_sized(template: Template, context: dict[str, Any], size_bytes: int | None) -> Any:
    """Render; where the template pads (``${pad}``), fill the padding so the encoded result
    reaches ``size_bytes``."""
    context["pad"] = ""
    out = template.render(context)
    if size_bytes and "pad" in template.roots:
        missing = size_bytes - len(orjson.dumps(out))
        if missing > 0:
            context["pad"] = "x" * missing
            out = template.render(context)
    return out


def encode_enums(mt: MessageType, body: Any) -> Any:
    """Enum names written as their number, as MassTransit writes a .NET enum."""
    for prop, names in mt.enums.items():
        value = get_path(body, prop)
        if isinstance(value, str) and value in names:
            set_path(body, prop, names.index(value))
    return body


def enum_name(mt: MessageType | None, prop: str, value: Any) -> str:
    """An enum property as its name: the number as sent (MassTransit) or the name, any case."""
    names = mt.enums.get(prop, ()) if mt is not None else ()
    if isinstance(value, int) and not isinstance(value, bool):
        return names[value] if 0 <= value < len(names) else str(value)
    text = str(value or "")
    return next((n for n in names if n.lower() == text.lower()), text)


def message_body(mt: MessageType, context: dict[str, Any],
                 size_bytes: int | None = None) -> dict[str, Any]:
    if mt.body is None:
        return {}
    body = render_sized(mt.body, context, mt.size_bytes or size_bytes)
    return encode_enums(mt, body)


def build(profile: Profile, message_type: str, *, size_bytes: int | None = None,
          **values: Any) -> dict[str, Any]:
    """One message of ``message_type`` (see ``variables`` for ``values``)."""
    return message_body(profile.message(message_type), variables(**values), size_bytes)


def request_body(route: Route, context: dict[str, Any], size_bytes: int | None = None) -> Any:
    """The request a load generator sends on ``route``."""
    return render_sized(route.request, context, size_bytes) if route.request else {}


# --- a route's fields, as the reference API checks them -----------------------------------------

_TYPES: dict[str, tuple[type, ...]] = {
    "string": (str,), "integer": (int,), "number": (int, float), "boolean": (bool,),
    "url": (str,), "headers": (dict,), "object": (dict,)}
_NUMBERS = (int, float)


def _check(f: Field, value: Any) -> Any:
    kinds = _TYPES.get(f.type)
    if kinds is not None and (not isinstance(value, kinds) or
                              (isinstance(value, bool) and bool not in kinds)):
        raise RequestInvalid(f"'{f.name}' must be of type {f.type}")
    if f.type == "url" and (not value.startswith(("http://", "https://")) or
                            not 8 <= len(value) <= 2048):
        raise RequestInvalid(f"'{f.name}' must be an http(s) URL")
    if f.type == "headers" and not all(isinstance(k, str) and isinstance(v, str)
                                       for k, v in value.items()):
        raise RequestInvalid(f"'{f.name}' must map strings to strings")
    if isinstance(value, str):
        if f.min_length is not None and len(value.strip()) < f.min_length:
            raise RequestInvalid(f"'{f.name}' must not be empty" if f.min_length == 1 else
                                 f"'{f.name}' is shorter than {f.min_length} characters")
        if f.max_length is not None and len(value) > f.max_length:
            raise RequestInvalid(f"'{f.name}' is longer than {f.max_length} characters")
    if isinstance(value, _NUMBERS) and not isinstance(value, bool) and \
            ((f.min is not None and value < f.min) or (f.max is not None and value > f.max)):
        raise RequestInvalid(f"'{f.name}' must be between {f.min:g} and {f.max:g}"
                             if f.min is not None and f.max is not None else
                             f"'{f.name}' is out of range")
    return value


def validate_request(route: Route, body: Mapping[str, Any]) -> dict[str, Any]:
    """The request with each field checked and defaults filled; fields the route does not name
    pass through unchecked. ``RequestInvalid`` (one line) names the first field that fails."""
    out = dict(body)
    for f in route.fields:
        value = out.get(f.name)
        if value is None:
            if f.required:
                raise RequestInvalid(f"'{f.name}' is required")
            out[f.name] = f.default
            continue
        out[f.name] = _check(f, value)
    return out
