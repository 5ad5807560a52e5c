"""A minimal event hook, in the manner of ``locust.event.EventHook``.

The harness cannot import Locust (it monkey-patches the process for gevent), so it keeps this
small copy of the idea: producers fire, any number of listeners subscribe, nobody threads
callbacks through constructors.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

log = logging.getLogger(__name__)


class EventHook:
    def __init__(self) -> None:
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
                log.exception("event listener %r failed", handler)
