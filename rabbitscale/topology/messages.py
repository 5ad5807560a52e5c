"""Message bodies of ConduitLLM.Core.Events as MassTransit 8 puts them on the wire: camelCase
property names (conduit-topology.md, "Messages"), with a controllable size.

Sizes matter to the capacity model (prefetch x size x instances), so every builder takes a
``size_bytes`` target and pads a free-text field of the real message (the prompt, the webhook
payload) to reach it approximately.
"""

from __future__ import annotations

import time
import uuid
from typing import Any

import orjson

# ConduitLLM's WebhookEventType enum, in order: MassTransit's serializer registers no string
# enum converter, so it goes on the wire as its number (TaskCompleted = 2)
WEBHOOK_EVENTS = ("TaskStarted", "TaskProgress", "TaskCompleted", "TaskFailed",
                  "TaskCancelled")
TERMINAL_EVENTS = ("TaskCompleted", "TaskFailed", "TaskCancelled")
# every ConduitLLM event is a record deriving from DomainEvent, which implements IDomainEvent:
# MassTransit lists the type, then these, in messageType
BASE_TYPES = ("DomainEvent", "IDomainEvent")


def event_name(value: object) -> str:
    """An EventType as sent: the enum's number (MassTransit) or its name (any case)."""
    if isinstance(value, int) and not isinstance(value, bool):
        return WEBHOOK_EVENTS[value] if 0 <= value < len(WEBHOOK_EVENTS) else str(value)
    text = str(value or "")
    for name in WEBHOOK_EVENTS:
        if name.lower() == text.lower():
            return name
    return text


def domain_event(body: dict[str, Any], partition_key: str) -> dict[str, Any]:
    """The properties every ConduitLLM event carries: its own, the computed PartitionKey,
    then DomainEvent's EventId, Timestamp and CorrelationId."""
    body["partitionKey"] = partition_key
    body["eventId"] = str(uuid.uuid4())
    body["timestamp"] = time.strftime("%Y-%m-%dT%H:%M:%S.0000000Z", time.gmtime())
    body["correlationId"] = ""
    return body


def _pad(size_bytes: int, body: dict[str, Any], field: str) -> dict[str, Any]:
    overhead = len(orjson.dumps(body))
    body[field] = body.get(field, "") + "x" * max(0, size_bytes - overhead)
    return body


def webhook_delivery(task_id: str, url: str, event_type: str = "TaskCompleted",
                     size_bytes: int = 1000, task_type: str = "video",
                     payload: Any = None, headers: dict[str, str] | None = None
                     ) -> dict[str, Any]:
    if payload is None:
        payload = _pad(max(0, size_bytes - 200),
                       {"task_id": task_id, "status": "completed", "data": ""}, "data")
    return domain_event({
        "taskId": task_id, "taskType": task_type, "webhookUrl": url,
        "eventType": WEBHOOK_EVENTS.index(event_type) if event_type in WEBHOOK_EVENTS
        else event_type, "payloadJson": orjson.dumps(payload).decode(),
        "headers": headers or {}, "retryCount": 0, "nextRetryAt": None}, task_id)


def video_generation(request_id: str, virtual_key_id: str, prompt: str = "a cat",
                     size_bytes: int = 1000, webhook_url: str | None = None,
                     webhook_headers: dict[str, str] | None = None) -> dict[str, Any]:
    body = {
        "requestId": request_id, "model": "sim-video", "prompt": prompt,
        "virtualKeyId": str(virtual_key_id), "isAsync": True,
        "requestedAt": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "parameters": {"size": "1280x720", "duration": 6, "fps": 24, "style": None,
                       "responseFormat": "url"},
        "webhookUrl": webhook_url, "webhookHeaders": webhook_headers,
    }
    return _pad(size_bytes, domain_event(body, str(virtual_key_id)), "prompt")


def image_generation(task_id: str, virtual_key_id: int, prompt: str = "a cat",
                     size_bytes: int = 1000, webhook_url: str | None = None,
                     webhook_headers: dict[str, str] | None = None) -> dict[str, Any]:
    request: dict[str, Any] = {"prompt": prompt, "model": "sim-image", "n": 1,
                               "size": "1024x1024", "quality": "standard", "style": None,
                               "responseFormat": "url"}
    body = {
        "taskId": task_id, "virtualKeyId": int(virtual_key_id),
        "virtualKeyHash": f"vk_{virtual_key_id}", "request": request,
        "userId": "", "priority": 0,
        "requestedAt": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "webhookUrl": webhook_url, "webhookHeaders": webhook_headers,
    }
    domain_event(body, str(virtual_key_id))
    request["prompt"] += "x" * max(0, size_bytes - len(orjson.dumps(body)))
    return body


def spend_update(key_id: int, amount: float, request_id: str) -> dict[str, Any]:
    return domain_event({"keyId": int(key_id), "amount": float(amount),
                         "requestId": request_id}, str(key_id))
