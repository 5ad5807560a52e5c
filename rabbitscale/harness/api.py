"""The stack's HTTP API: a route per task kind of the profile, the task status, /health.

Every request is authenticated with a virtual key (401 otherwise), every body validated (400
for malformed JSON, 422 for a well-formed body with wrong fields), and every enqueue is a
confirmed publish whose outcome decides the status: 202 when the broker confirmed, 503 when
it rejected (queue full), was blocked by an alarm or did not confirm. Nothing is accepted that
was not confirmed.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import orjson
from aiohttp import web

from rabbitscale.broker.management import Management
from rabbitscale.broker.publisher import Outcome, Publisher
from rabbitscale.core.headers import X_INTENDED
from rabbitscale.harness.auth import VirtualKeys
from rabbitscale.harness.completions import Completion
from rabbitscale.harness.health import DepthThresholds, rabbitmq_comprehensive, report
from rabbitscale.topology import messages
from rabbitscale.topology.envelope import new_id
from rabbitscale.topology.profiles import MessageType, TaskKind

MAX_BODY = 2 * 2**20  # PayloadJson may be up to 1 MB


@dataclass
class ApiState:
    publisher: Publisher
    keys: VirtualKeys
    management: Management
    thresholds: DepthThresholds = DepthThresholds()
    tasks: dict[str, dict[str, Any]] = field(default_factory=dict)  # oldest first
    max_tasks: int = 200_000
    # A poller has this long to read a task's outcome; older entries go, so the stack's memory
    # levels off in a long run (a count bound alone grew ~650 B a task for hours: bench/soak.py).
    retention_s: float = 600.0

    def on_completion(self, record: Completion) -> None:
        task = self.tasks.get(record.task_id)
        if task is not None:
            task["status"] = "completed" if record.status == "completed" else "failed"
            task["completed_at"] = record.finished
            if record.reason:
                task["error"] = record.reason

    def new_task(self, task_id: str, status: str, kind: str) -> dict[str, Any]:
        now = time.time()
        while self.tasks:  # bounded in count and age: a long load run must not grow memory
            oldest = next(iter(self.tasks.values()))
            if len(self.tasks) < self.max_tasks and oldest["created_at"] > now - self.retention_s:
                break
            del self.tasks[oldest["task_id"]]
        task = {"task_id": task_id, "status": status, "type": kind, "created_at": now}
        self.tasks.pop(task_id, None)  # a reused id moves to the end: the order stays by age
        self.tasks[task_id] = task
        return task


STATE = web.AppKey("state", ApiState)
VIRTUAL_KEY_ID = web.RequestKey("virtual_key_id", int)


def _json(data: Any, status: int = 200) -> web.Response:
    # orjson's bytes as the body: json_response would decode them to text and encode again
    return web.Response(body=orjson.dumps(data), status=status, content_type="application/json")


def _error(status: int, message: str, kind: str) -> web.Response:
    return _json({"error": {"message": message, "type": kind}}, status=status)


class Invalid(Exception):
    """A field failed validation (422)."""


Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def authenticated(handler: Handler) -> Handler:
    """Bearer virtual-key auth (401) and the JSON error shape (400/413/422) around a /v1
    handler; a wrapper rather than an aiohttp middleware, which every request would pay for."""

    async def wrapped(request: web.Request) -> web.StreamResponse:
        auth = request.headers.get("Authorization", "")
        scheme, _, key = auth.partition(" ")
        key_id = request.app[STATE].keys.verify(key.strip()) \
            if scheme.lower() == "bearer" else None
        if key_id is None:
            return _error(401, "missing or invalid virtual key", "authentication_error")
        request[VIRTUAL_KEY_ID] = key_id
        try:
            return await handler(request)
        except web.HTTPException as exc:
            if exc.status == 413:
                return _error(413, f"body larger than {MAX_BODY} bytes", "invalid_request_error")
            if exc.status >= 400:
                return _error(exc.status, exc.reason, "invalid_request_error")
            raise
        except Invalid as exc:
            return _error(422, str(exc), "invalid_request_error")

    return wrapped


async def _json_body(request: web.Request) -> dict[str, Any]:
    raw = await request.read()
    try:
        body = orjson.loads(raw)  # strict JSON: NaN and Infinity are refused too
    except orjson.JSONDecodeError:
        raise web.HTTPBadRequest(reason="body is not valid JSON") from None
    if not isinstance(body, dict):
        raise web.HTTPBadRequest(reason="body must be a JSON object")
    return body


def _intended(request: web.Request) -> float | None:
    """The load generator's intended send time, so latency is coordinated-omission safe."""
    raw = request.headers.get(X_INTENDED)
    if raw is None:
        return None
    try:
        value = float(raw)
    except ValueError:
        raise Invalid(f"header {X_INTENDED} must be epoch seconds") from None
    if not 0 < value < 1e11:
        raise Invalid(f"header {X_INTENDED} must be epoch seconds")
    return value


async def _enqueue(request: web.Request, message_type: str, message: dict[str, Any]
                   ) -> web.Response | None:
    """Publish; None when confirmed, else the error response to return."""
    state = request.app[STATE]
    result = await state.publisher.publish(message_type, message,
                                           intended_time=_intended(request))
    if result.ok:
        return None
    status = {Outcome.REJECTED: "queue full (reject-publish)",
              Outcome.BLOCKED: "broker memory or disk alarm",
              Outcome.TIMEOUT: "broker did not confirm in time"}.get(result.outcome,
                                                                    result.error)
    resp = _error(503, f"not enqueued: {status}", "service_unavailable")
    resp.headers["Retry-After"] = "1"
    return resp


def task_handler(kind: TaskKind, mt: MessageType) -> Handler:
    """POST handler of a task kind's route: the body checked against the route's fields, the
    message rendered from its type's template, a confirmed publish, the task recorded."""
    route = kind.route
    assert route is not None
    needs = mt.body.roots if mt.body is not None else frozenset()

    async def handle(request: web.Request) -> web.Response:
        body = await _json_body(request)
        try:
            req = messages.validate_request(route, body)
        except messages.RequestInvalid as exc:
            raise Invalid(str(exc)) from None
        given = req.get(route.id_field) if route.id_field else None
        task_id = str(given) if given else new_id()
        msg = messages.message_body(mt, messages.variables(
            task_id=task_id, key_id=request[VIRTUAL_KEY_ID], request=req, needs=needs))
        if (err := await _enqueue(request, mt.name, msg)) is not None:
            return err
        request.app[STATE].new_task(task_id, route.status, kind.name)
        out: dict[str, Any] = {"task_id": task_id, "status": route.status,
                               "created_at": int(time.time())}
        if route.poll:
            out["check_status_url"] = route.poll.replace("{id}", task_id)
        return _json(out, status=202)

    return handle


async def get_task(request: web.Request) -> web.Response:
    task = request.app[STATE].tasks.get(request.match_info["task_id"])
    if task is None:
        return _error(404, "task not found", "not_found")
    return _json(task)


async def health(request: web.Request) -> web.Response:
    state = request.app[STATE]
    t0 = time.perf_counter()
    connected = bool(state.publisher.stats.connections) and not state.publisher.is_blocked
    check = await rabbitmq_comprehensive(
        state.management, [ep.queue for ep in state.publisher.profile.endpoints],
        bus_connected=connected, thresholds=state.thresholds)
    doc = report([check], time.perf_counter() - t0)
    return _json(doc, status=503 if doc["status"] == "Unhealthy" else 200)


def create_app(state: ApiState) -> web.Application:
    app = web.Application(client_max_size=MAX_BODY)
    app[STATE] = state
    profile = state.publisher.profile
    polls = set()
    for kind in profile.tasks.values():
        if kind.route is None:
            continue
        handler = task_handler(kind, profile.message(kind.message))
        if kind.route.auth == "bearer":
            handler = authenticated(handler)
        app.router.add_route(kind.route.method, kind.route.path, handler)
        if kind.route.poll:
            polls.add(kind.route.poll.replace("{id}", "{task_id}"))
    for path in sorted(polls):
        app.router.add_get(path, authenticated(get_task))
    app.router.add_get("/health", health)
    app.router.add_get("/openapi.json", openapi)
    app.router.add_route("*", "/{tail:.*}", unrouted)  # last: every answer stays JSON
    return app


async def unrouted(request: web.Request) -> web.Response:
    """404 for unknown paths, 405 for a known path with another method."""
    known = {r.resource.canonical for r in request.app.router.routes()
             if r.resource is not None and r.handler is not unrouted}
    if request.path in known:
        return _error(405, f"{request.method} is not allowed on {request.path}",
                      "invalid_request_error")
    return _error(404, "no such endpoint", "not_found")


async def openapi(request: web.Request) -> web.Response:
    from rabbitscale.harness.openapi import document

    return _json(document(request.app[STATE].publisher.profile))
