import statistics

import pytest

from rabbitscale.core.errors import BadInput
from rabbitscale.scenarios.pacing import Pacer, Step, constant, stepped
from rabbitscale.scenarios.registry import SCENARIOS, STEPPABLE, TASKS, WEBHOOKS, get
from rabbitscale.scenarios.schedule import Rates, burst_windows, expected_arrivals


def _all(p: Pacer) -> list[float]:
    out = []
    while (slot := p.next_slot()) is not None:
        out.append(slot)
    return out


def test_even_pacing_is_one_every_60ms_at_1000_per_min():
    slots = _all(Pacer(constant(1000 / 60), 100.0, end_s=60))
    assert abs(len(slots) - 1000) <= 1
    gaps = [b - a for a, b in zip(slots, slots[1:], strict=False)]
    assert min(gaps) == pytest.approx(0.06, abs=1e-6) and max(gaps) == pytest.approx(0.06)
    assert slots[0] == 100.0


def test_workers_split_the_global_schedule_exactly():
    single = _all(Pacer(constant(100), 0, end_s=10))
    split = sorted(s for i in range(3)
                   for s in _all(Pacer(constant(100), 0, worker_index=i, worker_count=3,
                                       end_s=10)))
    assert split == pytest.approx(single)


def test_rate_changes_are_followed_exactly():
    rate = stepped([Step(0, 10), Step(5, 50), Step(8, 10), Step(12, 100), Step(15, 10)])
    slots = _all(Pacer(rate, 0, end_s=20))
    assert len(slots) == 5 * 10 + 3 * 50 + 4 * 10 + 3 * 100 + 5 * 10
    assert sum(1 for s in slots if 12 <= s < 15) == pytest.approx(300, abs=1)


def test_poisson_keeps_the_mean_rate():
    slots = _all(Pacer(constant(100), 0, poisson=True, seed=7, end_s=100))
    assert len(slots) == pytest.approx(10_000, rel=0.03)
    gaps = [b - a for a, b in zip(slots, slots[1:], strict=False)]
    assert statistics.stdev(gaps) == pytest.approx(0.01, rel=0.1)  # exponential: sd = mean


def test_bad_worker_position():
    with pytest.raises(ValueError):
        Pacer(constant(1), 0, worker_index=2, worker_count=2)


def test_scenario_schedules():
    rates = Rates(1000 / 60, 10, (50, 100))
    assert expected_arrivals(get("sustained_tasks").streams(rates, 60)[TASKS], 0, 60) == \
        pytest.approx(1000)
    webhooks = get("webhook_burst").streams(rates, 100)[WEBHOOKS]
    assert burst_windows(100, (50, 100)) == [(25, 40, 50), (60, 75, 100)]
    assert expected_arrivals(webhooks, 60, 75) == pytest.approx(1500)
    assert set(get("mixed_peak").streams(rates, 60)) == {TASKS, WEBHOOKS}
    scale = get("scale_out").streams(rates, 90)[TASKS]
    assert scale(0) * 2 == pytest.approx(scale(89))
    with pytest.raises(BadInput, match="unknown scenario 'nope'"):
        get("nope")


def test_the_registry_defines_each_scenario_once():
    """Each scenario's locustfile exists and names its own registry entry; the steppable ones
    have one task stream; a scenario that starts instances cannot be run black-box."""
    for name, s in SCENARIOS.items():
        assert s.locustfile.is_file(), name
        text = s.locustfile.read_text()
        assert name == "sustained_tasks" or f"registry.{name.upper()}" in text, name
    assert all(set(SCENARIOS[n].streams(Rates(1, 1, (1,)), 10)) == {TASKS} for n in STEPPABLE)
    # dispatching users per stream: the rate does not change them (sends are greenlets)
    assert SCENARIOS["mixed_peak"].users(Rates(10, 10, (50, 100))) == \
        2 * SCENARIOS["webhook_burst"].users(Rates(5000, 10, (50, 100)))
