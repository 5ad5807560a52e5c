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
from rabbitscale.scenarios.drivers import Sent, Task, message_for, request_for
from rabbitscale.topology.profiles import Profile


class HttpDriver:
    """Calls the system's API, each task on its kind's route, with a bearer key per task;
    Locust's FastHttpUser client fires the request events itself. A task that carries a
    callback URL asks the system to call it (the route's callback field); with
    ``poll_interval_s`` a task whose route can be polled is followed with GET instead, and its
    end reported to the receiver."""

    request_type = "POST"
    FINAL_STATES = {"completed", "failed", "cancelled", "timedout", "succeeded", "done"}

    def __init__(self, client: Any, profile: Profile, keyring: Callable[[int], str], *,
                 poll_interval_s: float = 0.0, callbacks: CallbackPlan | None = None) -> None:
        self.client = client
        self.profile = profile
        self.keyring = keyring
        self.poll_interval_s = poll_interval_s
        self.callbacks = callbacks

    def send(self, task: Task) -> Sent:
        route = self.profile.task(task.kind).route
        if route is None:
            raise RuntimeError(f"task kind {task.kind!r} has no route: it can only be "
                               f"published (--transport amqp)")
        headers = {X_INTENDED: f"{task.intended:.6f}"}
        if route.auth == "bearer":
            headers["Authorization"] = f"Bearer {self.keyring(task.key_id)}"
        t0 = time.perf_counter()
        with self.client.request(route.method, route.path, json=request_for(self.profile, task),
                                 name=route.path, headers=headers,
                                 catch_response=True) as resp:
            ok = 200 <= resp.status_code < 300
            if not ok:
                resp.failure(f"HTTP {resp.status_code}: {resp.error or (resp.text or '')[:200]}")
            elapsed_ms = (time.perf_counter() - t0) * 1000
            if ok and self.poll_interval_s and route.poll and route.callback:
                their_id = _task_id(resp, route.id)
                if their_id:
                    import gevent

                    gevent.spawn(self._poll, task, route.poll, their_id, headers)
            return Sent(ok, "accepted" if ok else f"http_{resp.status_code}", elapsed_ms)

    def _poll(self, task: Task, poll: str, their_id: str, headers: dict[str, str]) -> None:
        """GET the task until it is final, then tell the receiver when that was seen."""
        import gevent

        auth = {k: v for k, v in headers.items() if k == "Authorization"}
        while True:
            gevent.sleep(self.poll_interval_s)
            with self.client.get(poll.replace("{id}", their_id), headers=auth,
                                 name=poll.replace("{id}", "[id]"),
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


def _task_id(resp: Any, field: str) -> str:
    try:
        doc = resp.json()
    except ValueError:
        return ""
    return str(doc.get(field) or doc.get("id") or "") if isinstance(doc, dict) else ""


class _AsyncioBridge:
    """One asyncio loop on a native thread holding a started Publisher (one per process)."""

    _instance: _AsyncioBridge | None = None
    _guard = threading.Lock()

    def __init__(self, profile: Profile) -> None:
        from rabbitscale.broker.publisher import Publisher
        from rabbitscale.topology.settings import load_settings

        try:  # under Locust, threading is monkey-patched: the loop needs a real thread
            from gevent import monkey
            real_thread = monkey.get_original("threading", "Thread")
            real_event = monkey.get_original("threading", "Event")
        except ImportError:  # pragma: no cover - Locust always brings gevent
            real_thread, real_event = threading.Thread, threading.Event
        settings = load_settings()
        self.profile = profile
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
    def get(cls, profile: Profile) -> _AsyncioBridge:
        with cls._guard:
            if cls._instance is None:
                cls._instance = cls(profile)
            return cls._instance


class AmqpDriver:
    """Publishes straight to the broker (confirmed) and reports publish+confirm time."""

    request_type = "AMQP"

    def __init__(self, profile: Profile) -> None:
        self.bridge = _AsyncioBridge.get(profile)
        self.profile = profile

    def send(self, task: Task) -> Sent:
        type_name, body = message_for(self.profile, task)
        t0 = time.perf_counter()
        fut = asyncio.run_coroutine_threadsafe(
            self.bridge.publisher.publish(type_name, body, intended_time=task.intended),
            self.bridge.loop)
        result = self.bridge.waiters.spawn(fut.result).get()
        return Sent(result.ok, result.outcome.value, (time.perf_counter() - t0) * 1000,
                    task.size_bytes, result.error, via="AMQP")


class RoutedDriver:
    """The HTTP transport for a system some of whose task kinds have no route: those enter by
    being published (a payment gateway publishing to the broker), the rest on their routes."""

    request_type = "POST"

    def __init__(self, http: HttpDriver, profile: Profile) -> None:
        self.http = http
        self.profile = profile
        self._amqp: AmqpDriver | None = None

    def send(self, task: Task) -> Sent:
        if self.profile.task(task.kind).route is not None:
            return self.http.send(task)
        if self._amqp is None:
            self._amqp = AmqpDriver(self.profile)
        return self._amqp.send(task)
