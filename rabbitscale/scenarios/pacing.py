"""Open-model pacing: tasks arrive on a schedule, not as fast as closed-loop users can go.

A ``Pacer`` hands out intended send times ("slots") for one process. With W Locust workers,
worker i takes slots i, i+W, i+2W, ... of the global schedule, so the union over all workers
is exactly the target rate. Users take the next free slot, sleep until it and send; latency
is measured from the slot (coordinated-omission safe) and ``actual - intended`` is the publish
delay, reported separately. When every user is busy, slots are late, not skipped: the delay
shows it.
"""

from __future__ import annotations

import math
import random
import threading
from collections.abc import Callable
from dataclasses import dataclass

RateFn = Callable[[float], float]  # seconds since start -> tasks per second (global)


@dataclass(frozen=True)
class Step:
    """From ``at_s`` on, the arrival rate is ``rate_per_s`` (until the next step)."""

    at_s: float
    rate_per_s: float


def stepped(steps: list[Step]) -> RateFn:
    ordered = sorted(steps, key=lambda s: s.at_s)

    def rate(t: float) -> float:
        current = 0.0
        for s in ordered:
            if t >= s.at_s:
                current = s.rate_per_s
        return current

    return rate


def constant(rate_per_s: float) -> RateFn:
    return lambda t: rate_per_s


class Pacer:
    """Thread- and greenlet-safe schedule of intended send times for one worker.

    ``poisson`` spaces arrivals exponentially (a Poisson process at the same mean rate);
    otherwise they are evenly spaced, one every 1/rate seconds.
    """

    def __init__(self, rate: RateFn, start: float, *, worker_index: int = 0,
                 worker_count: int = 1, poisson: bool = False, seed: int | None = None,
                 end_s: float = math.inf) -> None:
        if worker_count < 1 or not 0 <= worker_index < worker_count:
            raise ValueError("worker_index must be in [0, worker_count)")
        self.rate = rate
        self.start = start
        self.worker_index = worker_index
        self.worker_count = worker_count
        self.poisson = poisson
        self.end_s = end_s
        self._rng = random.Random(seed)
        self._lock = threading.Lock()
        self._global_t = 0.0  # offset (s) of the next global slot
        self._global_k = 0
        self.issued = 0

    def _advance(self) -> float:
        """Offset of the next global slot, then move past it.

        The gap to the following slot is where the integral of the rate reaches 1 (even
        spacing) or an Exp(1) draw (a Poisson process, time-varying allowed), so arrivals
        follow the rate exactly across rate changes.
        """
        slot = self._global_t
        target = self._rng.expovariate(1.0) if self.poisson else 1.0
        t, acc, chunk = slot, 0.0, 0.01
        while t < self.end_s:
            r = self.rate(t)
            if r > 0 and acc + r * chunk >= target:
                t += (target - acc) / r
                break
            acc += r * chunk
            t += chunk
        self._global_t = t
        self._global_k += 1
        return slot if self.rate(slot) > 0 or slot == 0.0 else self._advance()

    def next_slot(self) -> float | None:
        """Epoch seconds of this worker's next intended send, or None past ``end_s``."""
        with self._lock:
            while True:
                k = self._global_k
                t = self._advance()
                if t >= self.end_s:
                    return None
                if k % self.worker_count == self.worker_index:
                    self.issued += 1
                    return self.start + t
