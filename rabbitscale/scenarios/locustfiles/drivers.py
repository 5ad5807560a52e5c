"""The drivers a Locust user sends its tasks with (the interface: scenarios/drivers.py).

``HttpDriver`` calls the system's API; ``AmqpDriver`` publishes the MassTransit envelope
straight to the broker with pika's blocking client, one connection per Locust user, which
gevent makes cooperative.
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Callable
from typing import Any

from rabbitscale.broker.amqp import node_order
from rabbitscale.broker.publisher import Outcome
from rabbitscale.core.headers import X_INTENDED
from rabbitscale.scenarios import contract
from rabbitscale.scenarios.callback_urls import POLL_PREFIX, CallbackPlan
from rabbitscale.scenarios.drivers import Sent, Task, message_for, request_for
from rabbitscale.topology.envelope import (
    CONTENT_TYPE,
    CaseInsensitive,
    build_envelope,
    measurement_headers,
    new_id,
)
from rabbitscale.topology.profiles import Profile

RETRY_WINDOW_S = 10.0  # a publish whose connection was lost is retried this long
BLOCKED_TIMEOUT_S = 60.0  # a memory/disk alarm outlasting this ends the publish as blocked


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


class AmqpDriver:
    """Publishes straight to the broker with pika's BlockingConnection, one per Locust user,
    as each Locust user holds its own client: under gevent its socket is cooperative, so a
    user blocks only itself while it waits for its confirm (bench/amqp_driver.py measured it
    at 3.9x the closed-loop rate of an aio-pika publisher on a native thread, and lower
    confirm latency). The same MassTransit envelope, persistent and mandatory, with the
    measurement headers; the outcome is one of broker.publisher.Outcome's. Messages of an
    ordered endpoint are published one at a time per key, in call order, across the
    process's users (a per-key lock held until the confirm), with their sequence numbers."""

    request_type = "AMQP"
    _seq: dict[str, int] = {}
    _key_locks: dict[str, Any] = {}

    def __init__(self, profile: Profile) -> None:
        from rabbitscale.topology.settings import load_settings

        self.profile = profile
        self.settings = load_settings()
        self.run_id = os.environ.get(contract.RUN_NAME.env, "")
        self._conn: Any = None
        self._ch: Any = None
        self._ordered: dict[str, bool] = {}

    def open(self) -> None:
        """Connect now (a user's on_start), not inside its first timed send."""
        self._channel()

    def _channel(self) -> Any:
        import pika

        if self._ch is not None and self._ch.is_open:
            return self._ch
        self.close()
        error: Exception | None = None
        name = f"rabbitscale-locust-{os.getpid()}-{id(self):x}"
        for node in node_order(self.settings, name):  # spread over a cluster; the first up
            params = pika.URLParameters(self.settings.amqp_url_for(node))
            params.blocked_connection_timeout = BLOCKED_TIMEOUT_S
            params.client_properties = {"connection_name": name}
            try:
                self._conn = pika.BlockingConnection(params)
                break
            except pika.exceptions.AMQPError as exc:
                error = exc
        else:
            raise ConnectionError(f"no broker node answered: {error}")
        self._ch = self._conn.channel()
        if self.settings.publisher_confirmation:
            self._ch.confirm_delivery()
        return self._ch

    def close(self) -> None:
        conn, self._conn, self._ch = self._conn, None, None
        if conn is not None and conn.is_open:
            with contextlib.suppress(Exception):  # closing a broken connection
                conn.close()

    def _is_ordered(self, type_name: str) -> bool:
        found = self._ordered.get(type_name)
        if found is None:
            found = self._ordered[type_name] = any(
                ep.ordered for ep in self.profile.consumers_of(type_name))
        return found

    def send(self, task: Task) -> Sent:
        import threading  # gevent-patched under Locust: a lock that yields

        type_name, body = message_for(self.profile, task)
        mt = self.profile.message(type_name)
        key = CaseInsensitive(body).text(mt.key) if mt.key else ""
        t0 = time.perf_counter()
        if not self._is_ordered(type_name):
            outcome, error = self._publish(mt, body, key, 0, task.intended)
        else:
            lock_key = f"{type_name}:{key}"
            lock = self._key_locks.setdefault(lock_key, threading.Lock())
            with lock:  # FIFO per key: a later publish never overtakes an earlier one
                seq = self._seq[lock_key] = self._seq.get(lock_key, 0) + 1
                outcome, error = self._publish(mt, body, key, seq, task.intended)
        ok = outcome in (Outcome.CONFIRMED, Outcome.SENT)
        return Sent(ok, outcome.value, (time.perf_counter() - t0) * 1000, task.size_bytes,
                    error, via="AMQP")

    def _publish(self, mt: Any, body: dict[str, Any], key: str, seq: int,
                 intended: float) -> tuple[Outcome, str]:
        """One publish and its confirm; a lost connection is reopened and the publish
        retried within RETRY_WINDOW_S."""
        import gevent
        import pika

        deadline = time.monotonic() + RETRY_WINDOW_S
        timeout_s = self.settings.publisher_confirmation_timeout_ms / 1000
        while True:
            mid = new_id()
            sent = time.time()
            envelope = build_envelope(
                mt.urns, body, message_id=mid, destination=mt.exchange, sent_time=sent,
                headers=measurement_headers(intended, sent, key, seq, self.run_id))
            props = pika.BasicProperties(content_type=CONTENT_TYPE, message_id=mid,
                                         correlation_id=mid, delivery_mode=2)
            try:
                with gevent.Timeout(timeout_s, TimeoutError):
                    self._channel().basic_publish(mt.exchange, "", envelope, props,
                                                  mandatory=True)
                return (Outcome.CONFIRMED if self.settings.publisher_confirmation
                        else Outcome.SENT), ""
            except pika.exceptions.UnroutableError:
                return Outcome.UNROUTABLE, "unroutable: no queue bound"
            except pika.exceptions.NackError:
                return Outcome.REJECTED, "nacked by broker"
            except TimeoutError:
                self.close()  # the confirm may still come: this channel is not reused
                return Outcome.TIMEOUT, "publisher confirm timed out"
            except pika.exceptions.ConnectionBlockedTimeout:
                self.close()
                return Outcome.BLOCKED, "connection blocked by a broker alarm"
            except (pika.exceptions.AMQPError, ConnectionError, OSError) as exc:
                self.close()
                if time.monotonic() >= deadline:
                    return Outcome.FAILED, f"{type(exc).__name__}: {exc}"
                gevent.sleep(0.2)


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
