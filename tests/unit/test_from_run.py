"""`plan --from-run` on a recorded black-box run of Acme Freight (tests/outsider/freight.py,
2 instances, shipment-booking 50 ms of work at concurrency 2): every input labelled with its
source; the consume meters first, MassTransit's receive.duration when they cannot be told
apart by endpoint, the profile's figure next, else the work is asked for; the model's capacity
follows the instances; `plan --calibrate` of such a run is refused, pointing at --from-run."""

from __future__ import annotations

import pytest

from rabbitscale.capacity import from_run
from rabbitscale.capacity.calibrate import CalibrationError, calibrate
from rabbitscale.results.summary import Summary, read
from rabbitscale.topology.profile_file import load_system
from tests.support import FIXTURES

RUN = FIXTURES / "run_freight_amqp"
WORK_MS = 50.0  # the outsider's fixed work on shipment-booking


@pytest.fixture(scope="module")
def recorded() -> tuple[Summary, object]:
    _, profile = load_system(None, str(RUN / "profile.toml"))
    return read(RUN / "summary.json"), profile


def _with_work(summary: Summary, queue: str, mean_ms: float) -> Summary:
    """The run as it reads when the consume meters name the endpoint's consumer."""
    eps = [e.model_copy(update={"meters": {**(e.meters or {}), "work": {
        "count": 400, "mean_ms": mean_ms}}}) if e.queue == queue else e
        for e in summary.endpoints or []]
    return summary.model_copy(update={"endpoints": eps})


def _booking(profile, summary: Summary, what: from_run.WhatIf = from_run.WhatIf()):
    return next(p for p in from_run.plan(profile, summary, "RUN", what)
                if p.queue == "shipment-booking")


def test_every_input_is_labelled_with_its_source(recorded):
    summary, profile = recorded
    inputs = _booking(profile, summary).inputs
    assert inputs["arrival_per_s"].label == from_run.MEASURED
    assert inputs["instances"].value == 2 and inputs["instances"].label == from_run.MEASURED
    assert inputs["prefetch"].value == 4 and inputs["prefetch"].label == from_run.MEASURED
    # no broker shows ConcurrentMessageLimit: discover's estimate, labelled so
    assert inputs["concurrency"].label == from_run.ESTIMATED


def test_the_receive_duration_stands_in_when_the_consume_meters_are_ambiguous(recorded):
    summary, profile = recorded
    work = _booking(profile, summary).inputs["work_s"]
    assert work.label == from_run.ESTIMATED and "receive.duration" in work.source
    assert work.value == pytest.approx(WORK_MS / 1000, rel=0.1)


def test_the_consume_duration_is_measured_work(recorded):
    summary, profile = recorded
    work = _booking(profile, _with_work(summary, "shipment-booking", 50.0)).inputs["work_s"]
    assert work.label == from_run.MEASURED and "consume.duration" in work.source
    assert work.value == pytest.approx(0.05)


def test_without_meters_the_work_is_asked_for(recorded):
    summary, profile = recorded
    bare = summary.model_copy(update={"endpoints": [
        e.model_copy(update={"meters": None}) for e in summary.endpoints or []]})
    p = _booking(profile, bare)
    assert p.inputs["work_s"].label == from_run.MISSING and p.holds is None
    assert "--app-metrics" in p.inputs["work_s"].source


def test_capacity_follows_the_instances_and_concurrency(recorded):
    summary, profile = recorded
    run = _with_work(summary, "shipment-booking", WORK_MS)
    at = {n: _booking(profile, run, from_run.WhatIf(
        endpoint_instances={"shipment-booking": n},
        concurrency={"shipment-booking": 2})).capacity_per_s for n in (2, 3)}
    assert at[2] == pytest.approx(80.0, rel=0.01)  # 2 instances x 2 slots / 50 ms
    assert at[3] == pytest.approx(1.5 * at[2])


def test_a_wrong_work_figure_misses_the_capacity(recorded):
    """The check above can fail: a model fed twice the work predicts half the capacity."""
    summary, profile = recorded
    run = _with_work(summary, "shipment-booking", 2 * WORK_MS)
    cap = _booking(profile, run, from_run.WhatIf(
        concurrency={"shipment-booking": 2})).capacity_per_s
    assert cap != pytest.approx(80.0, rel=0.15)


def test_calibrate_refuses_a_black_box_run_and_names_from_run():
    with pytest.raises(CalibrationError, match="--from-run"):
        calibrate(RUN)
