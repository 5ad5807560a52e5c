"""Verdict words, defined once. Runs and their checks say PASS/WARN/FAIL; the plan, audit
findings and doctor grade figures OK/WARN/FAIL (INFO for a figure that is only shown)."""

from __future__ import annotations

from collections.abc import Iterable

PASS, OK, WARN, FAIL, INFO = "PASS", "OK", "WARN", "FAIL", "INFO"
SKIP = "SKIP"  # a check this kind of run cannot make (black-box: no completion records)
INVALID = "INVALID"  # the run's own measurement cannot be trusted (the generator fell short)
_RANK = {INFO: 0, PASS: 0, OK: 0, SKIP: 0, WARN: 1, FAIL: 2, INVALID: 3}


def worst(verdicts: Iterable[str], best: str = OK) -> str:
    """The most severe verdict (``best`` when there is none)."""
    return max(verdicts, key=lambda v: _RANK.get(v, 0), default=best)
