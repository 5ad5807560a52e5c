"""OpenAPI 3.0 document of the stack's API, served at GET /openapi.json.

Kept beside the handlers' validation rules (harness/api.py) so fuzzers and clients see the
same contract the handlers enforce.
"""

from __future__ import annotations

from typing import Any

from rabbitscale.core.headers import X_INTENDED

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

DOCUMENT: dict[str, Any] = {
    "openapi": "3.0.3",
    "info": {"title": "rabbitscale reference stack", "version": "0.1.0"},
    "components": {"securitySchemes": {"virtualKey": {"type": "http", "scheme": "bearer"}}},
    "paths": {
        "/v1/videos/generations/async": _post("Enqueue a VideoGenerationRequested", {
            "type": "object", "required": ["prompt"], "properties": {
                "prompt": {"type": "string", "minLength": 1},
                "model": {"type": "string"},
                "duration": {"type": "integer", "minimum": 1, "maximum": 60},
                "size": {"type": "string"}, "webhook_url": _URL,
                "webhook_headers": _HEADERS}}, _TASK),
        "/v1/images/generations/async": _post("Enqueue an ImageGenerationRequested", {
            "type": "object", "required": ["prompt"], "properties": {
                "prompt": {"type": "string", "minLength": 1},
                "model": {"type": "string"},
                "n": {"type": "integer", "minimum": 1, "maximum": 10},
                "size": {"type": "string"}, "webhook_url": _URL,
                "webhook_headers": _HEADERS}}, _TASK),
        "/v1/webhook": _post("Enqueue a WebhookDeliveryRequested (the guide's load endpoint)", {
            "type": "object", "required": ["url"], "properties": {
                "url": _URL, "event": {"type": "string"}, "task_id": {"type": "string"},
                "payload": {}, "headers": _HEADERS}}, _TASK),
        "/v1/spend": _post("Enqueue a SpendUpdateRequested for the caller's virtual key", {
            "type": "object", "required": ["amount"], "properties": {
                "amount": {"type": "number", "exclusiveMinimum": -1e9,
                           "exclusiveMaximum": 1e9}}}, {"type": "object"}),
        "/v1/tasks/{task_id}": {"get": {
            "summary": "Task status", "security": [{"virtualKey": []}],
            "parameters": [{"name": "task_id", "in": "path", "required": True,
                            "schema": {"type": "string"}}],
            "responses": {"200": {"description": "task", "content": {"application/json": {
                "schema": _TASK}}}, "401": {"description": "missing or invalid key"},
                "404": {"description": "unknown task"}}}},
        "/health": {"get": {"summary": "rabbitmq_comprehensive health check", "responses": {
            "200": {"description": "Healthy or Degraded"},
            "503": {"description": "Unhealthy"}}}},
    },
}
