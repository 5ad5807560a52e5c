"""``doctor --json``: each finding on a live broker, and the verdict."""

from __future__ import annotations

from typing import Any

from pydantic import Field

from rabbitscale.results.summary import Model


class FindingResult(Model):
    """One check of the live vhost or node: observed against expected, with where the
    expectation comes from."""

    group: str
    subject: str = Field(description="a queue, exchange, node or 'broker'")
    check: str
    observed: Any
    expected: Any
    source: str
    verdict: str = Field(description="OK | INFO | WARN | FAIL")
    detail: str = ""
    version: str | None = Field(None, description="with --upgrade-to: the RabbitMQ version it "
                                                  "bites in")


class DoctorResult(Model):
    """doctor's findings, FAILs first."""

    vhost: str
    profile: str
    verdict: str
    counts: dict[str, int]
    upgrade_to: str | None = None
    findings: list[FindingResult]
