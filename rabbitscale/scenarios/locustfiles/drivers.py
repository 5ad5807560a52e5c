"""The drivers a Locust user sends its tasks with (the interface: scenarios/drivers.py).

``HttpDriver`` calls the system's API; ``AmqpDriver`` publishes the MassTransit envelope
straight to the broker. Locust runs on gevent, where pika's BlockingConnection stalls;
``AmqpDriver`` instead runs our asyncio Publisher on one native thread and waits for each
confirm from a gevent thread pool, so greenlets never block.
"""

from __future__ import annotations

import asyncio
import os
import threading
import time
from collections.abc import Callable
from typing import Any

from rabbitscale.core.headers import X_INTENDED
from rabbitscale.scenarios import contract
from rabbitscale.scenarios.callback_urls import POLL_PREFIX, CallbackPlan
from rabbitscale.scenarios.drivers import Sent, Task, message_for
from rabbitscale.topology.tasks import TASK_PATHS


class HttpDriver:
    """Calls the system's API with a bearer key per task; Locust's FastHttpUser client fires
    the request events itself. A task that carries a callback URL asks the system to call it
    (``webhook_url``, or the webhook's ``url``); with ``poll_interval_s`` a video/image task is
    followed with ``GET /v1/tasks/{id}`` instead, and its end reported to the receiver."""

    request_type = "POST"
    PATHS = TASK_PATHS
    FINAL_STATES = {"completed", "failed", "cancelled", "timedout"}

    def __init__(self, client: Any, keyring: Callable[[int], str], *,
                 poll_interval_s: float = 0.0, callbacks: CallbackPlan | None = None) -> None:
        self.client = client
        self.keyring = keyring
        self.poll_interval_s = poll_interval_s
        self.callbacks = callbacks

    def body(self, task: Task) -> dict[str, Any]:
        if task.kind in ("video", "image"):
            body: dict[str, Any] = {"prompt": "p" + "x" * max(0, task.size_bytes - 1)}
            if task.webhook_url:
                body["webhook_url"] = task.webhook_url
            return body
        if task.kind == "spend":
            return {"amount": task.amount}
        return {"url": task.webhook_url, "event": "TaskCompleted", "task_id": task.task_id,
                "payload": {"data": "x" * max(0, task.size_bytes - 60)}}

    def send(self, task: Task) -> Sent:
        path = self.PATHS[task.kind]
        auth = {"Authorization": f"Bearer {self.keyring(task.key_id)}"}
        t0 = time.perf_counter()
        with self.client.post(path, json=self.body(task), name=path,
                              headers={**auth, X_INTENDED: f"{task.intended:.6f}"},
                              catch_response=True) as resp:
            ok = 200 <= resp.status_code < 300
            if not ok:
                resp.failure(f"HTTP {resp.status_code}: {resp.error or (resp.text or '')[:200]}")
            elapsed_ms = (time.perf_counter() - t0) * 1000
            if ok and self.poll_interval_s and task.kind in ("video", "image"):
                their_id = _task_id(resp)
                if their_id:
                    import gevent

                    gevent.spawn(self._poll, task, their_id, auth)
            return Sent(ok, "accepted" if ok else f"http_{resp.status_code}", elapsed_ms)

    def _poll(self, task: Task, their_id: str, auth: dict[str, str]) -> None:
        """GET the task until it is final, then tell the receiver when that was seen."""
        import gevent

        while True:
            gevent.sleep(self.poll_interval_s)
            with self.client.get(f"/v1/tasks/{their_id}", headers=auth, name="/v1/tasks/[id]",
                                 catch_response=True) as resp:
                status = ""
                if resp.status_code == 200:
                    try:
                        status = str((resp.json() or {}).get("status", "")).lower()
                    except ValueError:
                        status = ""
                resp.success()  # a poll is not an arrival; its errors are retried
            if status in self.FINAL_STATES:
                break
        if self.callbacks:
            url = self.callbacks.base_url.rstrip("/") + self.callbacks.path(
                task.kind, task.task_id, task.intended, prefix=POLL_PREFIX)
            with self.client.post(url, json={"status": status}, name="poll report",
                                  catch_response=True) as resp:
                resp.success()


def _task_id(resp: Any) -> str:
    try:
        doc = resp.json()
    except ValueError:
        return ""
    return str(doc.get("task_id") or doc.get("id") or "") if isinstance(doc, dict) else ""


class _AsyncioBridge:
    """One asyncio loop on a native thread holding a started Publisher (one per process)."""

    _instance: _AsyncioBridge | None = None
    _guard = threading.Lock()

    def __init__(self) -> None:
        import json

        from rabbitscale.broker.publisher import Publisher
        from rabbitscale.topology.overrides import PROFILE_ENV, profile_from_spec
        from rabbitscale.topology.profiles import get_profile
        from rabbitscale.topology.settings import load_settings

        try:  # under Locust, threading is monkey-patched: the loop needs a real thread
            from gevent import monkey
            real_thread = monkey.get_original("threading", "Thread")
            real_event = monkey.get_original("threading", "Event")
        except ImportError:  # pragma: no cover - Locust always brings gevent
            real_thread, real_event = threading.Thread, threading.Event
        settings = load_settings()
        spec = os.environ.get(PROFILE_ENV)
        profile = profile_from_spec(json.loads(spec)) if spec else get_profile("conduit")
        self.publisher = Publisher(settings, profile,
                                   run_id=os.environ.get(contract.RUN_NAME.env, ""))
        self.loop = asyncio.new_event_loop()
        self.error: BaseException | None = None
        ready = real_event()

        def run() -> None:
            asyncio.set_event_loop(self.loop)
            try:
                self.loop.run_until_complete(self.publisher.start())
            except BaseException as exc:  # reported to the first caller
                self.error = exc
                ready.set()
                return
            ready.set()
            self.loop.run_forever()

        real_thread(target=run, name="rabbitscale-amqp", daemon=True).start()
        ready.wait(30)
        if self.error is not None:
            raise RuntimeError(f"AMQP driver cannot connect: {self.error}")
        from gevent.threadpool import ThreadPool
        self.waiters = ThreadPool(int(os.environ.get("RABBITSCALE_AMQP_IN_FLIGHT", "256")))

    @classmethod
    def get(cls) -> _AsyncioBridge:
        with cls._guard:
            if cls._instance is None:
                cls._instance = cls()
            return cls._instance


class AmqpDriver:
    """Publishes straight to the broker (confirmed) and reports publish+confirm time."""

    request_type = "AMQP"

    def __init__(self) -> None:
        self.bridge = _AsyncioBridge.get()

    def send(self, task: Task) -> Sent:
        type_name, body, key = message_for(task)
        t0 = time.perf_counter()
        fut = asyncio.run_coroutine_threadsafe(
            self.bridge.publisher.publish(type_name, body, key=key, intended_time=task.intended),
            self.bridge.loop)
        result = self.bridge.waiters.spawn(fut.result).get()
        return Sent(result.ok, result.outcome.value, (time.perf_counter() - t0) * 1000,
                    task.size_bytes, result.error)
