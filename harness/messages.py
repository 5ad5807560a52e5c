"""Message bodies of ConduitLLM.Core.Events, with a controllable size.

Sizes matter to the capacity model (prefetch x size x instances), so every builder takes a
``size_bytes`` target and pads a free-text field to reach it approximately.
"""

from __future__ import annotations

import json
import time
from typing import Any

WEBHOOK_EVENTS = ("TaskStarted", "TaskProgress", "TaskCompleted", "TaskFailed",
                  "TaskCancelled")


def _pad(size_bytes: int, base: dict[str, Any], field: str) -> dict[str, Any]:
    overhead = len(json.dumps(base))
    base[field] = base.get(field, "") + "x" * max(0, size_bytes - overhead)
    return base


def webhook_delivery(task_id: str, url: str, event_type: str = "TaskCompleted",
                     size_bytes: int = 1000, task_type: str = "video") -> dict[str, Any]:
    payload = {"task_id": task_id, "status": "completed", "data": ""}
    body = {
        "TaskId": task_id, "TaskType": task_type, "WebhookUrl": url, "EventType": event_type,
        "PayloadJson": "", "Headers": {}, "RetryCount": 0, "NextRetryAt": None,
    }
    body["PayloadJson"] = json.dumps(_pad(max(0, size_bytes - 200), payload, "data"))
    return body


def video_generation(request_id: str, virtual_key_id: str, prompt: str = "a cat",
                     size_bytes: int = 1000, webhook_url: str | None = None) -> dict[str, Any]:
    body = {
        "RequestId": request_id, "Model": "sim-video", "Prompt": prompt,
        "VirtualKeyId": str(virtual_key_id), "IsAsync": True,
        "RequestedAt": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "Parameters": {"Size": "1280x720", "Duration": 6, "Fps": 24, "Style": None,
                       "ResponseFormat": "url"},
        "WebhookUrl": webhook_url, "WebhookHeaders": None,
    }
    return _pad(size_bytes, body, "Prompt")


def image_generation(task_id: str, virtual_key_id: int, prompt: str = "a cat",
                     size_bytes: int = 1000, webhook_url: str | None = None) -> dict[str, Any]:
    body = {
        "TaskId": task_id, "VirtualKeyId": int(virtual_key_id),
        "VirtualKeyHash": f"vk_{virtual_key_id}",
        "Request": {"Prompt": prompt, "Model": "sim-image", "N": 1, "Size": "1024x1024",
                    "Quality": "standard", "Style": None, "ResponseFormat": "url"},
        "UserId": None, "Priority": 0, "WebhookUrl": webhook_url, "WebhookHeaders": None,
        "Padding": "",
    }
    return _pad(size_bytes, body, "Padding")


def spend_update(key_id: int, amount: float, request_id: str) -> dict[str, Any]:
    return {"KeyId": int(key_id), "Amount": float(amount), "RequestId": request_id}
