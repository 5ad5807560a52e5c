"""Keep-up from the broker's counters: a backlog that grows through the load fails, named with
the rate the endpoint kept up with; one that holds passes; too few refreshes is not measured;
the derived queue wait never exceeds the window."""

from __future__ import annotations

import pytest

from rabbitscale.core.verdicts import FAIL, PASS, SKIP
from rabbitscale.judge.keep_up import CounterPoint, check, keep_up


def series(arrive: float, consume: float, seconds: int, every: int = 5, ready0: int = 0,
           held: int = 8) -> list[CounterPoint]:
    """The counters of a queue refreshed every ``every`` s: ``arrive``/s in, at most
    ``consume``/s out, the consumers holding ``held``."""
    out, published, acked = [], 0.0, 0.0
    for t in range(0, seconds + 1, every):
        backlog = max(0.0, published - acked - held)
        out.append(CounterPoint(1000.0 + t, int(published), int(acked),
                                int(published - acked), int(backlog)))
        published += arrive * every
        acked += min(consume * every, published - acked)
    return out


def test_an_endpoint_past_its_capacity_fails_and_names_its_rate():
    k = keep_up("orders", series(240, 150, 40), 1000, 1040, in_flight=100)
    assert k is not None and not k.kept_up
    c = check(k, "orders")
    assert c.verdict == FAIL and "kept up with 150.0/s of 240.0/s" in c.detail


def test_close_to_capacity_but_behind_fails_too():
    assert not keep_up("orders", series(200, 180, 40), 1000, 1040, in_flight=100).kept_up


@pytest.mark.parametrize("rate", [10, 40, 79])
def test_below_capacity_passes_the_prefetch_it_holds_allowed(rate):
    k = keep_up("orders", series(rate, 80, 30), 1000, 1030, in_flight=16)
    assert k.kept_up and check(k, "orders").verdict == PASS


def test_too_few_refreshes_are_not_measured():
    # one refresh inside the load: no interval to difference; two: one interval, measured
    assert keep_up("orders", series(10, 80, 5), 1001, 1006, in_flight=0) is None
    assert keep_up("orders", series(10, 80, 5), 1000, 1005, in_flight=0) is not None
    assert check(None, "orders").verdict == SKIP


def test_the_derived_wait_never_exceeds_the_window():
    stalled = [CounterPoint(1000.0 + t, 100 * t, 0, 100 * t, 100 * t) for t in range(0, 30, 5)]
    k = keep_up("orders", stalled, 1000, 1030, in_flight=0)
    assert k.queue_wait_derived_ms == pytest.approx(25_000)  # the window, not depth / 0
