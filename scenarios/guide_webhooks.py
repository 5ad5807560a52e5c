"""The scaling guide's load script as a Locust file: POST /v1/webhook at 1,000/min in total.

    rabbitscale stack --instances 3            # in one terminal; it prints the API key
    RABBITSCALE_API_KEY=... locust -f scenarios/guide_webhooks.py --config locust.conf --headless

Each user keeps one request per second (``constant_throughput(1)``), so ``users = 17`` in
locust.conf gives ~1,000/min, the guide's "sleep 0.06". This is paced per user, not an open
arrival model: when the API slows down a user falls behind instead of queueing requests.
"""

from __future__ import annotations

import os
import time
import uuid

from locust import constant_throughput, task
from locust.contrib.fasthttp import FastHttpUser

from harness.auth import VirtualKeys


def _api_key(user_number: int) -> str:
    if os.environ.get("RABBITSCALE_API_KEY"):
        return os.environ["RABBITSCALE_API_KEY"]
    secret = os.environ.get("RABBITSCALE_API_SECRET")
    if not secret:
        raise SystemExit("set RABBITSCALE_API_KEY (printed by `rabbitscale stack`) or "
                         "RABBITSCALE_API_SECRET")
    return VirtualKeys(secret).key_for(user_number)


class GuideWebhookUser(FastHttpUser):
    host = os.environ.get("RABBITSCALE_API_URL", "http://127.0.0.1:5000")
    wait_time = constant_throughput(1)
    _count = 0

    def on_start(self) -> None:
        GuideWebhookUser._count += 1
        self.key = _api_key(GuideWebhookUser._count)
        self.target = os.environ.get("RABBITSCALE_WEBHOOK_URL", "https://example.com/hook")

    @task
    def post_webhook(self) -> None:
        self.client.post(
            "/v1/webhook", name="/v1/webhook",
            headers={"Authorization": f"Bearer {self.key}",
                     "X-RS-Intended-Time": f"{time.time():.6f}"},
            json={"url": self.target, "event": "test", "task_id": str(uuid.uuid4())})
