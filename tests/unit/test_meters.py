"""MassTransit's meters read from an application's Prometheus text, and the black-box AMQP
ledger: pure functions, checked on figures worked by hand."""

from __future__ import annotations

import tomllib

import pytest

from rabbitscale.blackbox import meters as am
from rabbitscale.judge import outcome, slo
from rabbitscale.scenarios.schedule import Rates
from rabbitscale.topology import profile_file
from rabbitscale.topology.profiles import Profile

SERVICE = 'messaging_masstransit_service="Acme.Worker"'
SCOPE = 'otel_scope_name="MassTransit"'


def exposition(consumed: int, errors: int, le_counts: dict[str, int], *,
               consumer: str = "BookShipmentConsumer", mt: str = "ShipmentBooked") -> str:
    """MassTransit's meters as the OpenTelemetry Prometheus exporter writes them: dots to
    underscores, the unit appended (ea, milliseconds), _total on counters."""
    labels = (f'{SERVICE},messaging_masstransit_message_type="{mt}",'
              f'messaging_masstransit_consumer_type="{consumer}",{SCOPE}')
    lines = ["# TYPE messaging_masstransit_consume_ea_total counter",
             f"messaging_masstransit_consume_ea_total{{{labels}}} {consumed}",
             "# TYPE messaging_masstransit_consume_errors_ea_total counter",
             f'messaging_masstransit_consume_errors_ea_total{{{labels},'
             f'messaging_masstransit_exception_type="X"}} {errors}',
             "# TYPE messaging_masstransit_consume_duration_milliseconds histogram"]
    for le, n in le_counts.items():
        lines.append(f'messaging_masstransit_consume_duration_milliseconds_bucket{{{labels},'
                     f'le="{le}"}} {n}')
    total = le_counts["+Inf"]
    lines += [f"messaging_masstransit_consume_duration_milliseconds_count{{{labels}}} {total}",
              f"messaging_masstransit_consume_duration_milliseconds_sum{{{labels}}} "
              f"{total * 4.0}",
              "# TYPE messaging_masstransit_receive_ea_total counter",
              f'messaging_masstransit_receive_ea_total{{{SERVICE},'
              f'messaging_masstransit_destination="shipment_booking",{SCOPE}}} {consumed}',
              "# TYPE unrelated_total counter", "unrelated_total 7"]
    return "\n".join(lines) + "\n"


PROFILE = """
name = "acme"
namespace = "Acme"
[messages.ShipmentBooked]
[messages.CustomsDeclared]
[endpoints."shipment.booking"]
consumes = ["ShipmentBooked"]
consumer_types = ["BookShipmentConsumer"]
[endpoints.customs]
consumes = ["ShipmentBooked", "CustomsDeclared"]
"""


def _profile(text: str = PROFILE) -> Profile:
    return profile_file.build(tomllib.loads(text), "acme.toml")


def test_the_exporters_names_are_read_and_others_ignored():
    assert am.instrument("messaging_masstransit_consume_ea_total") == ("consume", "total")
    assert am.instrument("messaging_masstransit_consume_total") == ("consume", "total")
    assert am.instrument("messaging_masstransit_delivery_duration_milliseconds_bucket") == \
        ("delivery_duration", "bucket")
    assert am.instrument("messaging_masstransit_consume_duration_seconds_bucket") is None
    assert am.instrument("unrelated_total") is None


def test_quantiles_interpolate_within_the_bucket_like_prometheus():
    buckets = {1.0: 0.0, 5.0: 50.0, 10.0: 100.0, float("inf"): 100.0}
    assert am.quantile(buckets, 0.5) == pytest.approx((5.0, 1.0, 5.0))
    assert am.quantile(buckets, 0.25)[0] == pytest.approx(3.0)  # 1 + 4 x 25/50
    assert am.quantile(buckets, 0.99) == pytest.approx((9.9, 5.0, 10.0))
    assert am.quantile({1.0: 0.0, float("inf"): 0.0}, 0.5) is None
    assert am.quantile({1.0: 0.0, float("inf"): 10.0}, 0.5)[0] == 1.0  # beyond the last bound


def test_two_instances_differenced_and_attributed_per_endpoint():
    """Each instance's scrape summed; the run's share is after - before; a type two endpoints
    consume is told apart by the consumer type the profile declares."""
    b = {"1": 10, "5": 100, "10": 100, "+Inf": 100}
    a = {"1": 10, "5": 150, "10": 200, "+Inf": 200}
    before = am.parse(exposition(100, 3, b)).merged(am.parse(exposition(100, 3, b)))
    after = am.parse(exposition(200, 5, a)).merged(am.parse(exposition(200, 5, a)))
    per, notes = am.per_endpoint(after.minus(before), _profile())
    booking = per["shipment.booking"]  # its receive label is shipment_booking
    assert booking["consumed"] == 200 and booking["consume faults"] == 4
    assert booking["received"] == 200
    work = booking["work"]
    assert work["count"] == 200 and work["mean_ms"] == pytest.approx(4.0)
    assert work["p50_ms"] == pytest.approx(5.0) and work["bounds_ms"]["p50"] == [1.0, 5.0]
    assert work["p99_ms"] == pytest.approx(9.9) and work["bounds_ms"]["p99"] == [5.0, 10.0]
    assert booking["e2e"] is None  # not exposed: not measured, never 0
    assert "customs" not in per and not notes


def test_a_shared_type_without_consumer_types_is_named_not_guessed():
    undeclared = PROFILE.replace('consumer_types = ["BookShipmentConsumer"]\n', "")
    per, notes = am.per_endpoint(am.parse(exposition(10, 0, {"5": 10, "+Inf": 10})),
                                 _profile(undeclared))
    assert "work" not in per.get("shipment.booking", {}) or \
        per["shipment.booking"]["work"] is None
    assert notes and "consumed by" in notes[0] and "consumer_types" in notes[0]
    # what could not be attributed is not counted, never 0; what was received is
    booking = per.get("shipment.booking", {})
    assert booking.get("consumed") is None and booking.get("consume faults") is None


def test_amqp_ledger_balances_and_judges_loss_and_foreign_traffic():
    base = dict(scenario="sustained_tasks", duration_s=10.0, rates=Rates(10.0, 1.0, (1.0,)),
                published={"a": 50, "b": 50}, confirmed={"a": 50, "b": 50}, owed=150,
                consumed=150, arrived=150, faulted=3, skipped=0, still_queued=0)
    t = slo.Thresholds(error_rate_max=0.05)
    ok = outcome.judge_amqp(outcome.AmqpFacts(**base), t)
    assert ok.verdict == slo.PASS and ok.ledger["lost"] == 0
    assert ok.ledger["app_consumed"] == outcome.NOT_MEASURED
    lost = outcome.judge_amqp(outcome.AmqpFacts(**{**base, "consumed": 140,
                                                    "still_queued": 4}), t)
    assert lost.ledger["lost"] == 6 and lost.verdict == slo.FAIL
    foreign = outcome.judge_amqp(outcome.AmqpFacts(**{**base, "arrived": 170}), t)
    assert foreign.ledger["foreign_deliveries"] == 20
    assert [c.verdict for c in foreign.checks if c.name == "foreign_deliveries"] == [slo.WARN]
