"""A local webhook target: receives deliveries, injects latency and failures, records arrivals.

Each arrival is recorded with the delivery's message id and intended send time (headers set
by the consumer), so a run can account for every webhook end to end: published -> arrived.
"""

from __future__ import annotations

import asyncio
import json
import random
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from aiohttp import web

from rabbitscale.core.events import EventHook, factory
from rabbitscale.core.headers import WEBHOOK_TYPE, X_INTENDED, X_MESSAGE_ID, X_RUN


@dataclass
class SinkOptions:
    latency_s: float = 0.0
    failure_ratio: float = 0.0
    seed: int | None = None
    record_path: Path | None = None


@dataclass
class Sink:
    opts: SinkOptions = field(default_factory=SinkOptions)
    arrived: EventHook = field(default_factory=factory("arrived"))
    received: int = 0
    failed: int = 0
    message_ids: set[str] = field(default_factory=set)
    duplicates: int = 0

    def __post_init__(self) -> None:
        self._rng = random.Random(self.opts.seed)
        self._file: IO[str] | None = None
        if self.opts.record_path:
            self._file = self.opts.record_path.open("a", encoding="utf-8")

    async def handle(self, request: web.Request) -> web.Response:
        body = await request.read()
        if self.opts.latency_s:
            await asyncio.sleep(self.opts.latency_s)
        if self._rng.random() < self.opts.failure_ratio:
            self.failed += 1
            return web.json_response({"error": "injected failure"}, status=500)
        now = time.time()
        mid = request.headers.get(X_MESSAGE_ID, "")
        if mid in self.message_ids:
            self.duplicates += 1
        self.message_ids.add(mid)
        self.received += 1
        arrival: dict[str, Any] = {
            "message_id": mid, "arrived": now, "path": request.path, "bytes": len(body),
            "intended": float(request.headers.get(X_INTENDED) or 0) or None,
            "run": request.headers.get(X_RUN, ""),
            "type": request.headers.get(WEBHOOK_TYPE, ""),
        }
        if self._file:
            self._file.write(json.dumps(arrival) + "\n")
        self.arrived.fire(arrival=arrival)
        return web.json_response({"ok": True})

    async def stats(self, request: web.Request) -> web.Response:
        return web.json_response({"received": self.received, "failed": self.failed,
                                  "unique": len(self.message_ids),
                                  "duplicates": self.duplicates})

    async def configure(self, request: web.Request) -> web.Response:
        """PUT /_sink/config {latency_s, failure_ratio}: change faults during a run."""
        try:
            body = json.loads(await request.read())
            latency = float(body.get("latency_s", self.opts.latency_s))
            ratio = float(body.get("failure_ratio", self.opts.failure_ratio))
        except (ValueError, TypeError, AttributeError, json.JSONDecodeError):
            return web.json_response({"error": "expected {latency_s, failure_ratio}"},
                                     status=400)
        if not (0 <= ratio <= 1 and 0 <= latency <= 600):
            return web.json_response({"error": "failure_ratio in [0,1], latency_s in [0,600]"},
                                     status=422)
        self.opts.latency_s, self.opts.failure_ratio = latency, ratio
        return web.json_response({"latency_s": latency, "failure_ratio": ratio})

    def close(self) -> None:
        if self._file:
            self._file.close()
            self._file = None

    def app(self) -> web.Application:
        app = web.Application(client_max_size=4 * 2**20)
        app.router.add_get("/_sink/stats", self.stats)
        app.router.add_put("/_sink/config", self.configure)
        app.router.add_route("POST", "/{tail:.*}", self.handle)
        return app
