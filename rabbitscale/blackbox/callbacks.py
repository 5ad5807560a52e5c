"""The callback receiver: how a black-box run measures end-to-end latency without touching
consumers. Each task's callback URL (scenarios/callback_urls.py) names the run, the task and
when it was meant to be sent; latency = arrival - intended send time, both on rabbitscale's
clock.

A task may be called back more than once (ConduitLLM: TaskStarted, then TaskCompleted); a
callback is *final* unless it says it is progress (``X-Webhook-Type: progress``, or a status /
event field such as "started", "processing").
"""

from __future__ import annotations

import time
from collections import defaultdict
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import orjson

from rabbitscale.core import latency, targets
from rabbitscale.core.events import EventHook, factory
from rabbitscale.core.headers import WEBHOOK_TYPE
from rabbitscale.core.recent import RecentIds
from rabbitscale.scenarios.callback_urls import Callback, CallbackPlan, parse_path

PROGRESS_WORDS = {"taskstarted", "taskprogress", "started", "processing", "progress",
                  "pending", "queued", "running", "in_progress", "inprogress"}
STATUS_FIELDS = ("status", "event", "eventtype", "event_type", "type", "state")


def is_final(headers: Mapping[str, str], body: bytes) -> bool:
    """Does this callback report the end of its task (not start or progress)?"""
    kind = headers.get(WEBHOOK_TYPE)
    if kind:
        return kind.strip().lower() != "progress"
    try:
        doc = orjson.loads(body) if body else None
    except orjson.JSONDecodeError:
        return True
    if isinstance(doc, dict):
        for key, value in doc.items():
            if str(key).lower() in STATUS_FIELDS and isinstance(value, str) and \
                    value.strip().lower().replace(" ", "_") in PROGRESS_WORDS:
                return False
    return True


@dataclass
class CallbackLedger:
    """What came back, in constant memory: unique final callbacks per kind, duplicates,
    progress callbacks, requests that are not ours, latency histograms, per-second counts and
    the burst windows' deliveries within the max lag."""

    burst_max_lag_s: float = targets.BURST_MAX_LAG_S
    burst_kind: str | None = None  # the task kind the webhooks stream sends
    final: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    polled: int = 0
    duplicates: int = 0
    progress: int = 0
    unknown: int = 0
    e2e: dict[str, Any] = field(default_factory=dict)  # kind -> HDR histogram
    per_second: dict[tuple[int, str], int] = field(default_factory=lambda: defaultdict(int))
    arrived: EventHook = field(default_factory=factory("callback"))
    _windows: list[tuple[float, float]] = field(default_factory=list)
    _absorbed: list[int] = field(default_factory=list)
    _seen: RecentIds = field(default_factory=RecentIds)

    def track_windows(self, windows: list[tuple[float, float]]) -> None:
        self._windows = list(windows)
        self._absorbed = [0] * len(windows)

    @property
    def unique(self) -> int:
        return sum(self.final.values())

    def absorbed(self) -> list[int]:
        return list(self._absorbed)

    def on_callback(self, cb: Callback | None, final: bool, at: float | None = None) -> None:
        now = time.time() if at is None else at
        if cb is None:
            self.unknown += 1
            return
        if not final:
            self.progress += 1
            return
        if self._seen.seen(f"{cb.kind}/{cb.task}"):
            self.duplicates += 1
            return
        self.final[cb.kind] += 1
        self.polled += cb.source == "poll"
        lag = now - cb.intended
        h = self.e2e.get(cb.kind)
        if h is None:
            h = self.e2e[cb.kind] = latency.new_histogram()
        latency.record_s(h, lag)
        self.per_second[(int(now), cb.kind)] += 1
        if cb.kind == self.burst_kind and lag <= self.burst_max_lag_s:
            for i, (start, end) in enumerate(self._windows):
                if start <= cb.intended < end:
                    self._absorbed[i] += 1
        self.arrived.fire(callback=cb, at=now)

    def histograms(self) -> dict[str, dict[str, Any]]:
        return {f"callback-{kind}": {"e2e": h} for kind, h in self.e2e.items()}

    def throughput(self) -> dict[tuple[int, str], int]:
        return {(sec, f"callback-{kind}"): n for (sec, kind), n in self.per_second.items()}

    def e2e_p99_ms(self) -> float:
        return max((h.get_value_at_percentile(99) for h in self.e2e.values()), default=0) / 1000


class CallbackReceiver:
    """The HTTP server callbacks come to: every method on any path is answered 200 at once
    (a slow receiver would be measured as a slow system) and accounted in ``ledger``."""

    def __init__(self, plan: CallbackPlan, ledger: CallbackLedger) -> None:
        self.plan = plan
        self.ledger = ledger
        self._runner: Any = None

    async def handle(self, request: Any) -> Any:
        from aiohttp import web

        body = await request.read()
        self.ledger.on_callback(parse_path(self.plan, request.path),
                                is_final(request.headers, body))
        return web.Response(status=200, text="ok")

    async def start(self, host: str, port: int) -> int:
        """Listen; returns the port (0 picks a free one). A port in use is BadInput."""
        import errno

        from aiohttp import web

        from rabbitscale.core.errors import BadInput, PortInUse

        app = web.Application(client_max_size=4 * 2**20)
        app.router.add_route("*", "/{tail:.*}", self.handle)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, host, port)
        try:
            await site.start()
        except OSError as exc:
            await self.close()
            if exc.errno == errno.EADDRINUSE:
                raise PortInUse("callback receiver", host, port, "--callback-url") from None
            raise BadInput(f"callback receiver: cannot listen on {host}:{port}: "
                           f"{exc.strerror or exc}") from None
        return int(site._server.sockets[0].getsockname()[1])  # type: ignore[union-attr]

    async def close(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
