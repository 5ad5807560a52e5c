"""Small synchronous helpers for tests that look at the broker from outside: the management API
over urllib, and a snapshot of a vhost's objects to prove a read-only command changed nothing."""

from __future__ import annotations

import json
import os
import urllib.error
import urllib.request
from base64 import b64encode
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any
from urllib.parse import quote

Call = Callable[[str, str, Any], Any]


@contextmanager
def management(base: str | None = None) -> Iterator[Call]:
    base = base or f"http://{os.environ.get('CONDUITLLM__RABBITMQ__HOST', '127.0.0.1')}:15672/api"
    auth = "Basic " + b64encode(b"guest:guest").decode()

    def call(method: str, path: str, body: Any = None) -> Any:
        parts = path.split("/")
        path = "/".join(quote(p, safe="") if i >= 2 else p for i, p in enumerate(parts))
        data = json.dumps(body).encode() if body is not None else None
        req = urllib.request.Request(base + path, data=data, method=method, headers={
            "Authorization": auth, "Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(req, timeout=10) as resp:
                text = resp.read()
        except urllib.error.HTTPError as exc:
            if method == "DELETE" and exc.code == 404:
                return None
            raise
        return json.loads(text) if text else None

    yield call


def broker_objects(vhost: str) -> dict[str, Any]:
    """Everything a command could change in a vhost but its message and consumer counts (both
    come from statistics that lag): queues with their type, arguments and policy, exchanges,
    bindings, policies."""
    with management() as mgmt:
        queues = {q["name"]: (q.get("type"), q.get("durable"), q.get("auto_delete"),
                              json.dumps(q.get("arguments", {}), sort_keys=True),
                              q.get("policy"))
                  for q in mgmt("GET", f"/queues/{vhost}", None)}
        exchanges = {e["name"]: (e["type"], e["durable"], e["auto_delete"],
                                 json.dumps(e.get("arguments", {}), sort_keys=True))
                     for e in mgmt("GET", f"/exchanges/{vhost}", None)}
        bindings = sorted((b["source"], b["destination"], b["destination_type"],
                           b["routing_key"]) for b in mgmt("GET", f"/bindings/{vhost}", None))
        policies = sorted(json.dumps(p, sort_keys=True)
                          for p in mgmt("GET", f"/policies/{vhost}", None))
    return {"queues": queues, "exchanges": exchanges, "bindings": bindings,
            "policies": policies}
