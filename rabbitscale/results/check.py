"""One check of a run: a measured value against its target, and the verdict."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

Measured = float | int | str | None


@dataclass(frozen=True)
class Check:
    """``measured`` is a number in the check's unit, or a text ("not measured", "did not
    drain") where there is none; ``verdict`` is one of core/verdicts.py's words."""

    name: str
    target: str
    measured: Measured
    verdict: str
    detail: str = ""

    def as_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)
