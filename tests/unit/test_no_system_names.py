"""Outside the built-in profile files, the code names no system: no queue, message type,
exchange or route of the profiles rabbitscale ships (ConduitLLM's among them) appears in a
module, so every command works from a profile file alone."""

from __future__ import annotations

import re
from pathlib import Path

from rabbitscale.topology.profile_file import builtin_names, get_profile

PACKAGE = Path(__file__).resolve().parents[2] / "rabbitscale"


def system_names() -> set[str]:
    names: set[str] = set()
    for ref in builtin_names():
        p = get_profile(ref)
        names |= {ep.queue for ep in p.endpoints}
        for mt in p.messages.values():
            names |= {mt.name, mt.exchange, *mt.urns}
        names |= {k.route.path for k in p.tasks.values() if k.route is not None}
    return names


def test_the_shipped_profiles_have_names_to_look_for():
    names = system_names()
    assert len(names) > 20
    assert any(n.startswith("/") for n in names)  # routes


def test_no_module_names_a_queue_message_type_or_route_of_a_shipped_system():
    names = sorted(system_names(), key=len, reverse=True)
    pattern = re.compile("|".join(rf"(?<![\w./-]){re.escape(n)}(?![\w-])" for n in names))
    found = []
    for path in sorted(PACKAGE.rglob("*.py")):
        for i, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            m = pattern.search(line)
            if m:
                found.append(f"{path.relative_to(PACKAGE.parent)}:{i}: {m.group(0)}")
    assert not found, "\n".join(found)
