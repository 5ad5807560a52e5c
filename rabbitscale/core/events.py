"""Event hooks, and the catalogue of every hook in the package, in the manner of Locust's
``event.py``: each hook listed once, with who fires it and what it passes.

The harness cannot import Locust (it monkey-patches the process for gevent), so this is a
small copy of the idea: producers fire, any number of listeners subscribe, nobody threads
callbacks through constructors. A hook is made by name (``hook("published")``), so a hook
that is not in the catalogue cannot exist (tests/unit/test_events.py holds both ways).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Hook:
    name: str
    producer: str
    arguments: str
    when: str


HOOKS: dict[str, Hook] = {h.name: h for h in (
    Hook("published", "broker.publisher.Publisher", "result=PublishResult",
         "each publish's outcome: confirmed, rejected, unroutable, timeout, blocked or failed"),
    Hook("blocked", "broker.publisher.Publisher", "blocked=bool",
         "the broker blocked (a memory or disk alarm) or unblocked the connection"),
    Hook("completed", "harness.consumer.Instance", "record=Completion",
         "a consumer instance finished a message (completed, faulted or skipped)"),
    Hook("recorded", "harness.stack.Stack", "record=Completion",
         "the stack's listener received a completion record"),
    Hook("arrived", "harness.webhook_sink.Sink", "arrival=dict",
         "a webhook reached the reference stack's sink"),
    Hook("callback", "blackbox.callbacks.CallbackLedger", "callback=Callback, at=float",
         "a final callback of a black-box run's task arrived, counted once"),
    Hook("counted", "engine.recorder.Recorder", "record=Completion",
         "a run counted a completion record, once per message"),
    Hook("sampled", "engine.sampler.Sampler",
         "vhost=str, queues=[QueueSample], nodes=[NodeSample], rss={name: bytes}",
         "the broker (and the run's processes) were sampled"),
)}


class EventHook:
    def __init__(self, name: str = "") -> None:
        self.name = name
        self._handlers: list[Callable[..., Any]] = []

    def add_listener(self, handler: Callable[..., Any]) -> Callable[..., Any]:
        self._handlers.append(handler)
        return handler

    def remove_listener(self, handler: Callable[..., Any]) -> None:
        self._handlers.remove(handler)

    def fire(self, **kwargs: Any) -> None:
        for handler in list(self._handlers):
            try:
                handler(**kwargs)
            except Exception:  # a broken listener must not break the producer
                log.exception("event %s: listener %r failed", self.name, handler)


def hook(name: str) -> EventHook:
    """The hook ``name`` of the catalogue (KeyError for one that is not listed)."""
    return EventHook(HOOKS[name].name)


def factory(name: str) -> Callable[[], EventHook]:
    """``field(default_factory=factory("arrived"))`` for a dataclass's hook."""
    return lambda: hook(name)
