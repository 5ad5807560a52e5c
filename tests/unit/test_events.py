"""One events catalogue: every hook the package makes is listed in core/events.HOOKS, and every
listed hook is made somewhere (an entry nothing fires would document a lie)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from rabbitscale.core.events import HOOKS, hook

PACKAGE = Path(__file__).resolve().parents[2] / "rabbitscale"


def test_every_hook_is_catalogued_and_every_entry_is_made():
    made: set[str] = set()
    for path in PACKAGE.rglob("*.py"):
        text = path.read_text()
        if path.name != "events.py":
            assert "EventHook(" not in text, f"{path}: make hooks by name: hook(NAME)"
        made |= set(re.findall(r"(?:hook|factory)\(\"([a-z_]+)\"\)", text))
    assert made == set(HOOKS), (made ^ set(HOOKS))


def test_an_unlisted_hook_cannot_be_made():
    with pytest.raises(KeyError):
        hook("nonesuch")
    h = hook("published")
    seen = []
    h.add_listener(lambda **kw: seen.append(kw))
    h.add_listener(lambda **kw: 1 / 0)  # a broken listener does not break the producer
    h.fire(result="x")
    assert seen == [{"result": "x"}]
