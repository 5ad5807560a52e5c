"""Callback URLs: how a load generator asks a system under test to call back, and how the
receiver recognises one of its run's own.

Every task carries a callback URL of its own under rabbitscale's receiver,
``{base}/cb/{run}/{kind}/{task}/{intended_us}/{mac}``: the system under test calls it when the
task is done, as ConduitLLM calls a task's ``webhook_url``. The URL holds all the receiver needs
(which run, which task, when it was meant to be sent), and an HMAC so a stray request cannot
pass for one of ours, so no state is shared with the load generators (which may run on other
machines) and no header of ours is needed: another system calls back without them.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from dataclasses import dataclass, field

CALLBACK_PREFIX = "/cb"
POLL_PREFIX = "/poll"  # a poller saw the task finish (tasks without a callback URL)
_PATH = re.compile(r"^/(cb|poll)/([\w.-]{1,80})/([\w.-]{1,80})/([\w.-]{1,80})/"
                   r"(\d{1,20})/([0-9a-f]{16})/?$")


def new_secret() -> str:
    return secrets.token_hex(16)


@dataclass(frozen=True)
class CallbackPlan:
    base_url: str  # where the system under test can reach the receiver
    run: str
    secret: str = field(repr=False)

    def _mac(self, kind: str, task: str, intended_us: int) -> str:
        msg = f"{self.run}/{kind}/{task}/{intended_us}".encode()
        return hmac.new(self.secret.encode(), msg, hashlib.sha256).hexdigest()[:16]

    def path(self, kind: str, task: str, intended: float, prefix: str = CALLBACK_PREFIX) -> str:
        us = int(intended * 1e6)
        return f"{prefix}/{self.run}/{kind}/{task}/{us}/{self._mac(kind, task, us)}"

    def url_for(self, kind: str, task: str, intended: float) -> str:
        return self.base_url.rstrip("/") + self.path(kind, task, intended)


@dataclass(frozen=True)
class Callback:
    source: str  # "cb" | "poll"
    kind: str
    task: str
    intended: float


def parse_path(plan: CallbackPlan, path: str) -> Callback | None:
    """The task a callback path names, or None when it is not one of this run's."""
    m = _PATH.match(path)
    if not m:
        return None
    source, run, kind, task, us, mac = m.groups()
    if run != plan.run or not hmac.compare_digest(mac, plan._mac(kind, task, int(us))):
        return None
    return Callback(source, kind, task, int(us) / 1e6)
