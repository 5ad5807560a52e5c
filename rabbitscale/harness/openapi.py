"""OpenAPI 3.0 document of the stack's API, served at GET /openapi.json.

Made from the same route fields the handlers enforce (the profile's task kinds), so fuzzers
and clients see the contract the API keeps.
"""

from __future__ import annotations

from typing import Any

from rabbitscale.core.headers import X_INTENDED
from rabbitscale.topology.profiles import Field, Profile

_ERROR = {"type": "object", "properties": {"error": {"type": "object", "properties": {
    "message": {"type": "string"}, "type": {"type": "string"}}}}}
_HEADERS = {"type": "object", "additionalProperties": {"type": "string"}}
_URL = {"type": "string", "format": "uri", "minLength": 8, "maxLength": 2048,
        "pattern": "^https?://"}


def _responses(ok: dict[str, Any]) -> dict[str, Any]:
    err = {"content": {"application/json": {"schema": _ERROR}}}
    return {"202": {"description": "accepted (publish confirmed by the broker)",
                    "content": {"application/json": {"schema": ok}}},
            "400": {"description": "body is not a JSON object", **err},
            "401": {"description": "missing or invalid virtual key", **err},
            "413": {"description": "body too large", **err},
            "422": {"description": "invalid field", **err},
            "503": {"description": "not enqueued (queue full, alarm, no confirm)", **err}}


def _post(summary: str, schema: dict[str, Any], ok: dict[str, Any]) -> dict[str, Any]:
    return {"post": {"summary": summary, "security": [{"virtualKey": []}],
                     "parameters": [{"name": X_INTENDED, "in": "header",
                                     "required": False, "schema": {"type": "number"},
                                     "description": "load generator's intended send time"}],
                     "requestBody": {"required": True, "content": {"application/json": {
                         "schema": schema}}},
                     "responses": _responses(ok)}}


_TASK = {"type": "object", "properties": {"task_id": {"type": "string"},
                                          "status": {"type": "string"},
                                          "check_status_url": {"type": "string"}}}
_FIELD_TYPES: dict[str, dict[str, Any]] = {
    "string": {"type": "string"}, "integer": {"type": "integer"},
    "number": {"type": "number"}, "boolean": {"type": "boolean"}, "url": _URL,
    "headers": _HEADERS, "object": {"type": "object"}, "any": {}}


def _field_schema(f: Field) -> dict[str, Any]:
    schema = dict(_FIELD_TYPES.get(f.type, {}))
    if f.min is not None:
        schema["minimum"] = f.min
    if f.max is not None:
        schema["maximum"] = f.max
    if f.min_length is not None:
        schema["minLength"] = f.min_length
    if f.max_length is not None:
        schema["maxLength"] = f.max_length
    return schema


def document(profile: Profile) -> dict[str, Any]:
    """The API of the reference stack running ``profile``: one route per task kind that has
    one, the status of a task, /health."""
    paths: dict[str, Any] = {}
    for kind in profile.tasks.values():
        route = kind.route
        if route is None:
            continue
        schema = {"type": "object", "properties": {f.name: _field_schema(f)
                                                   for f in route.fields}}
        required = [f.name for f in route.fields if f.required]
        if required:
            schema["required"] = required
        op = _post(f"Enqueue a {kind.message} ({kind.name})", schema, _TASK)
        paths.setdefault(route.path, {})[route.method.lower()] = op["post"]
    for poll in sorted({k.route.poll for k in profile.tasks.values()
                        if k.route is not None and k.route.poll}):
        paths[poll.replace("{id}", "{task_id}")] = {"get": {
            "summary": "Task status", "security": [{"virtualKey": []}],
            "parameters": [{"name": "task_id", "in": "path", "required": True,
                            "schema": {"type": "string"}}],
            "responses": {"200": {"description": "task", "content": {"application/json": {
                "schema": _TASK}}}, "401": {"description": "missing or invalid key"},
                "404": {"description": "unknown task"}}}}
    paths["/health"] = {"get": {"summary": "rabbitmq_comprehensive health check", "responses": {
        "200": {"description": "Healthy or Degraded"},
        "503": {"description": "Unhealthy"}}}}
    return {"openapi": "3.0.3",
            "info": {"title": f"rabbitscale reference stack: {profile.name}",
                     "version": "0.1.0"},
            "components": {"securitySchemes": {"virtualKey": {"type": "http",
                                                              "scheme": "bearer"}}},
            "paths": paths}
