"""The latency model without a broker: the simulation agrees with M/M/c where that is exact,
knows what pooling, prefetch, rate limits and retries do, and the sweep's knee, headroom and
tolerance say what their docstrings say."""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path

import pytest

from rabbitscale.capacity import queueing
from rabbitscale.capacity.queueing import EndpointLoad, closed_form, predict, simulate
from rabbitscale.core.errors import BadInput
from rabbitscale.experiments import sweep
from rabbitscale.topology.policy import ServiceTime

EXP80 = ServiceTime("exponential", 0.08)


def _pooled(rho: float, **kw) -> EndpointLoad:
    base = {"service": EXP80, "instances": 2, "slots": 2, "prefetch": 2,
            "arrivals": "poisson", **kw}
    load = EndpointLoad(arrival_per_s=0.0, **base)
    return load.at(rho * load.capacity_per_s)


@pytest.mark.parametrize("rho", [0.5, 0.7, 0.9])
def test_the_simulation_agrees_with_mmc_where_it_is_exact(rho):
    load = _pooled(rho)
    exact, sim = closed_form(load), simulate(load)
    for p in (95.0, 99.0):
        assert sim[p] == pytest.approx(exact[p], rel=0.12, abs=0.003), (p, sim, exact)
    assert predict(load)[1] == "M/M/c (exact)"


def test_a_wrong_model_mm1_per_instance_is_far_off_for_a_pooled_endpoint():
    load = _pooled(0.7)
    right = closed_form(load)[99.0]
    # M/M/1 per slot: each slot its own queue at a quarter of the arrivals
    mm1 = closed_form(EndpointLoad(load.arrival_per_s / 4, EXP80, arrivals="poisson"))[99.0]
    assert mm1 > right * 1.5


def test_prefetch_beyond_the_slots_queues_per_instance_and_waits_longer():
    pooled = _pooled(0.8)
    split = _pooled(0.8, prefetch=20)
    assert simulate(split)[99.0] > simulate(pooled)[99.0] * 1.2
    assert predict(split)[1] == "simulation"


def test_even_arrivals_and_fixed_work_never_wait_below_capacity():
    load = _pooled(0.8, service=ServiceTime("fixed", 0.08), arrivals="even")
    assert simulate(load)[99.0] == pytest.approx(0.0, abs=1e-9)


def test_a_rate_limit_caps_capacity_and_makes_waits():
    load = EndpointLoad(0.0, ServiceTime("fixed", 0.0), instances=1, slots=10, prefetch=10,
                        rate_limit=(10, 1.0), arrivals="poisson")
    assert load.capacity_per_s == 10
    assert simulate(load.at(9.0))[99.0] > 0.1  # a burst waits for the next window


def test_retries_hold_the_slot_and_raise_utilisation():
    plain = _pooled(0.6)
    retried = EndpointLoad(plain.arrival_per_s, EXP80, 2, 2, 2, failure_probability=0.3,
                           retry_delays_s=(0.0, 0.0), arrivals="poisson")
    assert retried.utilisation == pytest.approx(plain.utilisation * 1.39, rel=0.01)
    assert simulate(retried)[99.0] > simulate(plain)[99.0]


def test_overload_is_infinite_and_a_point_is_in_ms():
    assert math.isinf(predict(_pooled(1.2))[0][99.0])
    point = queueing.curve_point(_pooled(0.5))
    assert point["queue_wait_p99_ms"] > 0 and point["e2e_p99_ms"] > point["queue_wait_p99_ms"]


def test_knee_headroom_and_tolerance():
    pts = [{"rate_per_s": r, "utilisation": r / 50, "measured": {"queue_wait_p99_ms": w},
            "predicted": {}} for r, w in ((10, 1.0), (25, 40.0), (40, 120.0), (45, 400.0))]
    assert sweep.knee(pts, "measured", 0.08) == 25  # 120 ms >= the 80 ms slot time
    slo = sweep.parse_slo("queue_wait.p99<200ms")
    assert slo.max_ms == 200 and sweep.measured_headroom(pts, slo) == 40
    assert sweep.within(105.0, 100.0) and sweep.within(8.0, 1.0)  # 25%, or 10 ms
    assert not sweep.within(130.0, 100.0) and not sweep.within(None, 5.0)
    with pytest.raises(BadInput, match="queue_wait.p99<400ms"):
        sweep.parse_slo("latency<3")
    knee = sweep.predicted_knee(_pooled(0.0))
    assert knee is not None and 0.3 < knee / _pooled(0.0).capacity_per_s < 1


def test_a_replayed_delivery_delay_adds_where_nothing_queues_and_compounds_where_it_does():
    np = pytest.importorskip("numpy")
    load = _pooled(0.5, service=ServiceTime("fixed", 0.08))
    arrive = np.arange(200) * 0.1  # one message every 100 ms: never two in the 4 slots
    work = np.full(200, 0.08)
    assert queueing.replay(load, arrive, work)[99.0] == pytest.approx(0.0, abs=1e-9)
    delayed = queueing.replay(load, arrive, work, delay_s=np.full(200, 0.005))
    assert delayed[50.0] == pytest.approx(0.005) and delayed[99.0] == pytest.approx(0.005)
    # four at once into four slots: no wait; a fifth delayed onto the fourth's slot: it waits
    burst = np.array([0.0, 0.0, 0.0, 0.0, 0.079])
    late = queueing.replay(load, burst, np.full(5, 0.08), percentiles=(100.0,),
                           delay_s=np.array([0.0, 0.0, 0.0, 0.0, 0.0]))
    assert late[100.0] == pytest.approx(0.001)


def test_unqueued_delays_take_only_messages_that_found_credit_free():
    np = pytest.importorskip("numpy")
    load = _pooled(0.5, service=ServiceTime("fixed", 0.08))  # 2 x 2 slots, prefetch 2
    sent = np.array([0.0, 0.0, 0.0, 0.0, 0.01, 1.0])
    transit = np.array([0.001, 0.001, 0.001, 0.001, 0.071, 0.002])
    waited = np.array([0.002, 0.002, 0.002, 0.002, 0.073, 0.003])
    t = sweep.Trace(sent, np.full(6, 0.08), np.zeros(6), transit, waited, 0)
    # the fifth was sent with four in flight (credit 2 x 2): queued, so left out; credit
    # implies a slot here (prefetch <= slots), so the delay is up to the start
    assert sorted(sweep.unqueued_delays(load, t).round(3)) == [0.002] * 4 + [0.003]
    per_instance = dataclasses.replace(load, prefetch=10)
    assert max(sweep.unqueued_delays(per_instance, t)) == pytest.approx(0.071)  # transit only
    assert sweep.transit_jitter_ms(np.full(5, 0.01)) == 0.0  # too few to say


def test_each_message_holds_its_own_credit_after_the_work():
    np = pytest.importorskip("numpy")
    load = _pooled(0.5, service=ServiceTime("fixed", 0.08))  # 2 x 2 slots, prefetch 2
    burst = np.array([0.0, 0.0, 0.0, 0.0, 0.08])  # the fifth arrives as the four finish
    work = np.full(5, 0.08)
    # a constant hold as a scalar or as one per message: the same waits
    same = queueing.replay(load, burst, work, 0.002, percentiles=(100.0,))
    assert same == queueing.replay(load, burst, work, np.full(5, 0.002), percentiles=(100.0,))
    assert same[100.0] == pytest.approx(0.002)
    # one message whose ack came 30 ms late does not delay the fifth (three slots came back
    # at 2 ms), and four that all came late do: a median (2 ms) would hide both
    one_late = np.array([0.03, 0.002, 0.002, 0.002, 0.0])
    assert queueing.replay(load, burst, work, one_late, percentiles=(100.0,))[100.0] == \
        pytest.approx(0.002)
    all_late = np.array([0.03, 0.03, 0.03, 0.03, 0.0])
    assert queueing.replay(load, burst, work, all_late, percentiles=(100.0,))[100.0] == \
        pytest.approx(0.03)


def test_a_step_is_inconclusive_when_the_machine_froze_beyond_the_comparisons_slack():
    """Seen in CI: one 90 ms freeze under a 50 ms single-active consumer at utilisation 0.87
    (an ack held 90 ms, the next delivery 87 ms late) queued the messages behind it and made
    the step's p99 queue wait 82 ms against a model's 14 ms; a pooled step whose acks froze
    up to 32 ms kept its fixed-work slots in step for a second and measured 50 ms against 22,
    while the p99 jitter and holds stayed within half a slot. A calm step froze 23 ms."""
    from rabbitscale.results.summary import read as read_summary

    summary = read_summary(Path(__file__).parent.parent / "fixtures" / "run_burst"
                           / "summary.json")
    calm = {"transit_jitter_ms": 7.1, "hold_after_work_p99_ms": 17.3,
            "hold_after_work_max_ms": 22.6, "unqueued_delay_max_ms": 10.1}
    assert sweep.stalled(summary, calm, 100.0) == ""
    why = sweep.stalled(summary, {**calm, "transit_jitter_ms": 9.5,
                                  "hold_after_work_max_ms": 31.9}, 100.0)
    assert why == ("a freeze of 32 ms (an ack held or a delivery with credit free delayed) "
                   "against the comparison's 20 ms slack")
    assert sweep.stalled(summary, {**calm, "unqueued_delay_max_ms": 86.8}, 50.0)
