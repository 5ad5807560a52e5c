"""MassTransit's meters read from an application's Prometheus text, and the black-box AMQP
ledger: pure functions, checked on figures worked by hand."""

from __future__ import annotations

import pytest

from rabbitscale.blackbox import meters as am
from rabbitscale.judge import outcome, slo
from rabbitscale.scenarios.schedule import Rates


def exposition(consumed: int, errors: int, le_counts: dict[str, int]) -> str:
    lines = ["# TYPE messaging_masstransit_consume_total counter",
             f'messaging_masstransit_consume_total{{messaging_masstransit_destination="a"}} '
             f"{consumed}",
             "# TYPE messaging_masstransit_consume_errors_total counter",
             f'messaging_masstransit_consume_errors_total{{messaging_masstransit_destination="a"}}'
             f" {errors}",
             "# TYPE messaging_masstransit_consume_duration_milliseconds histogram"]
    for le, n in le_counts.items():
        lines.append(f'messaging_masstransit_consume_duration_milliseconds_bucket{{le="{le}"}} '
                     f"{n}")
    total = le_counts["+Inf"]
    lines += [f"messaging_masstransit_consume_duration_milliseconds_count {total}",
              f"messaging_masstransit_consume_duration_milliseconds_sum {total * 4.0}",
              "# TYPE unrelated_total counter", "unrelated_total 7"]
    return "\n".join(lines) + "\n"


def test_quantiles_interpolate_within_the_bucket_like_prometheus():
    buckets = {1.0: 0.0, 5.0: 50.0, 10.0: 100.0, float("inf"): 100.0}
    assert am.quantile(buckets, 0.5) == pytest.approx(5.0)
    assert am.quantile(buckets, 0.25) == pytest.approx(3.0)  # 1 + 4 x 25/50
    assert am.quantile(buckets, 0.99) == pytest.approx(9.9)
    assert am.quantile({1.0: 0.0, float("inf"): 0.0}, 0.5) is None
    assert am.quantile({1.0: 0.0, float("inf"): 10.0}, 0.5) == 1.0  # beyond the last bound


def test_the_difference_of_two_scrapes_is_what_the_run_caused():
    before = am.parse(exposition(100, 3, {"1": 10, "5": 100, "10": 100, "+Inf": 100}))
    after = am.parse(exposition(200, 5, {"1": 10, "5": 150, "10": 200, "+Inf": 200}))
    d = am.difference(before, after)
    assert d[am.CONSUME] == 100 and d[am.CONSUME_ERRORS] == 2
    h = d[am.CONSUME_DURATION]
    assert h["count"] == 100 and h["mean_ms"] == pytest.approx(4.0)
    assert h["p50_ms"] == pytest.approx(5.0)  # the run's 100: 50 in (1,5], 50 in (5,10]
    assert h["p99_ms"] == pytest.approx(9.9)
    assert am.DELIVERY_DURATION not in d  # not exposed: not measured, never 0


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
