"""The HTTP transport: each task on its kind's route of the system's API, with a bearer key
per task; kinds without a route enter by being published (the AMQP transport's driver)."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import orjson
from geventhttpclient.url import URL
from locust.exception import CatchResponseError

from rabbitscale.core.headers import X_INTENDED
from rabbitscale.scenarios.callback_urls import POLL_PREFIX, CallbackPlan
from rabbitscale.scenarios.drivers import DriverSetup, Sent, Task, request_for
from rabbitscale.scenarios.locustfiles.amqp_driver import AmqpPool
from rabbitscale.topology.profiles import Profile


def make(setup: DriverSetup) -> RoutedDriver:
    if setup.keyring is None:
        raise RuntimeError("the HTTP transport needs the system's API keys")
    return RoutedDriver(HttpDriver(setup.client, setup.profile, setup.keyring,
                                   poll_interval_s=setup.poll_interval_s,
                                   callbacks=setup.callbacks), setup.profile)


class HttpDriver:
    """Calls the system's API, each task on its kind's route, with a bearer key per task. The
    request goes straight to the user's connection pool (geventhttpclient, which Locust's
    FastHttpUser uses) and this driver fires Locust's request event itself, as the client
    would: the API needs no cookies, redirects or URL building per request, which were a
    third of a task's cost. A task that carries a callback URL asks the system to call it
    (the route's callback field); with ``poll_interval_s`` a task whose route can be polled is
    followed with GET instead (through the client), and its end reported to the receiver."""

    request_type = "POST"
    FINAL_STATES = {"completed", "failed", "cancelled", "timedout", "succeeded", "done"}

    def __init__(self, client: Any, profile: Profile, keyring: Callable[[int], str], *,
                 poll_interval_s: float = 0.0, callbacks: CallbackPlan | None = None) -> None:
        self.client = client
        self.profile = profile
        self.keyring = keyring
        self.poll_interval_s = poll_interval_s
        self.callbacks = callbacks
        base = URL(client.base_url)
        self._http = client.client.clientpool.get_client(base)
        self._prefix = base.path.rstrip("/")
        self._fire = client.request_event.fire

    def open(self) -> None:
        """Locust's client connects on the first request, per host."""

    def close(self) -> None:
        """Locust closes its client with the user."""

    def send(self, task: Task) -> Sent:
        route = self.profile.task(task.kind).route
        if route is None:
            raise RuntimeError(f"task kind {task.kind!r} has no route: it can only be "
                               f"published (--transport amqp)")
        headers = {X_INTENDED: f"{task.intended:.6f}", "Content-Type": "application/json"}
        if route.auth == "bearer":
            headers["Authorization"] = f"Bearer {self.keyring(task.key_id)}"
        body = orjson.dumps(request_for(self.profile, task))
        start, t0 = time.time(), time.perf_counter()
        status, content, error = 0, b"", None
        try:
            resp = self._http.request(route.method, self._prefix + route.path, body=body,
                                      headers=headers)
            status, content = resp.status_code, resp.read()
        except Exception as exc:  # noqa: BLE001 - any failure of the exchange is its outcome
            error = exc
        elapsed_ms = (time.perf_counter() - t0) * 1000
        ok = error is None and 200 <= status < 300
        if error is None and not ok:
            error = CatchResponseError(f"HTTP {status}: {content[:200].decode(errors='replace')}")
        self._fire(request_type=route.method, name=route.path, response_time=elapsed_ms,
                   response_length=len(content), response=None, context={}, exception=error,
                   start_time=start, url=route.path)
        if ok and self.poll_interval_s and route.poll and route.callback:
            their_id = _task_id(content, route.id)
            if their_id:
                import gevent

                gevent.spawn(self._poll, task, route.poll, their_id, headers)
        return Sent(ok, "accepted" if ok else f"http_{status}" if status else "error",
                    elapsed_ms)

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


def _task_id(content: bytes, field: str) -> str:
    try:
        doc = orjson.loads(content)
    except orjson.JSONDecodeError:
        return ""
    return str(doc.get(field) or doc.get("id") or "") if isinstance(doc, dict) else ""


class RoutedDriver:
    """The HTTP transport for a system some of whose task kinds have no route: those enter by
    being published (a payment gateway publishing to the broker), the rest on their routes."""

    request_type = "POST"

    def __init__(self, http: HttpDriver, profile: Profile) -> None:
        self.http = http
        self.profile = profile
        self._amqp: AmqpPool | None = None

    def open(self) -> None:
        self.http.open()

    def close(self) -> None:
        if self._amqp is not None:
            self._amqp.close()

    def send(self, task: Task) -> Sent:
        if self.profile.task(task.kind).route is not None:
            return self.http.send(task)
        if self._amqp is None:
            self._amqp = AmqpPool.shared(self.profile)
            self._amqp.open()
        return self._amqp.send(task)
