"""Open-model pacing accuracy: target vs achieved arrival rate and the publish (send) delay
percentiles, at 1,000/min, 100/s and 10x each, measured in one run.

Greenlets take slots from a Pacer, sleep until each and "send" (a gevent.sleep(0) yield), the
way the users of scenarios/locustfiles/common.py do, so this measures the pacing machinery
itself under gevent on this machine. `python bench/pacing.py [--seconds 10]`
"""

from __future__ import annotations

from gevent import monkey

monkey.patch_all()  # before anything imports socket or threading

import argparse  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402

import gevent  # noqa: E402

from rabbitscale.core import latency  # noqa: E402
from rabbitscale.scenarios.pacing import Pacer, constant  # noqa: E402


def measure(rate_per_s: float, seconds: float, users: int) -> dict[str, float]:
    pacer = Pacer(constant(rate_per_s), time.time() + 0.2, end_s=seconds)
    delays = latency.new_histogram()
    sent: list[float] = []

    def user() -> None:
        while (slot := pacer.next_slot()) is not None:
            wait = slot - time.time()
            if wait > 0:
                gevent.sleep(wait)
            now = time.time()
            latency.record_s(delays, now - slot)
            sent.append(now)
            gevent.sleep(0)

    gevent.joinall([gevent.spawn(user) for _ in range(users)])
    span = (max(sent) - min(sent)) if len(sent) > 1 else seconds
    achieved = (len(sent) - 1) / span if span else 0.0
    return {"target": rate_per_s, "achieved": achieved, "sent": len(sent),
            **latency.summary_ms(delays)}


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--seconds", type=float, default=10.0)
    args = p.parse_args()
    cases = [("1,000/min", 1000 / 60), ("10,000/min", 10000 / 60), ("100/s", 100.0),
             ("1,000/s", 1000.0)]
    print(f"{'rate':>11} {'target/s':>9} {'achieved/s':>11} {'ratio':>7} "
          f"{'delay p50':>10} {'p99':>8} {'p99.9':>8} {'max':>8}  (ms)")
    for label, rate in cases:
        r = measure(rate, args.seconds, users=max(10, int(rate * 0.05)))
        print(f"{label:>11} {r['target']:9.2f} {r['achieved']:11.2f} "
              f"{r['achieved'] / r['target']:7.4f} {r['p50_ms']:10.3f} {r['p99_ms']:8.3f} "
              f"{r['p99_9_ms']:8.3f} {r['max_ms']:8.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
