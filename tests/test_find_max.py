"""Model against measurement on the real broker: for a stack with a configured service time,
the model's predicted maximum rate is within 15% of what find-max measures; calibration fits
the service time back from the measured runs."""

from __future__ import annotations

import asyncio
import json
import os
from pathlib import Path

import pytest

from rabbitscale.capacity.calibrate import calibrate
from rabbitscale.capacity.plan import predicted_max_per_s
from rabbitscale.cli import main
from rabbitscale.find_max import find_max
from rabbitscale.harness.config import load_settings
from rabbitscale.harness.overrides import apply_overrides
from rabbitscale.harness.profiles import CONDUIT
from rabbitscale.scenarios.run import RunOptions
from rabbitscale.scenarios.schedule import Rates

pytestmark = [pytest.mark.broker, pytest.mark.slow]


def test_predicted_max_rate_within_15_percent_of_find_max(tmp_path, capsys):
    env = dict(os.environ)
    env.setdefault("CONDUITLLM__RABBITMQ__HOST", "127.0.0.1")
    settings = load_settings(environ=env)
    # spend-update-events: single active consumer, concurrency 1, 50 ms of work per message
    conf = tmp_path / "svc.toml"
    conf.write_text('profile = "conduit"\n[endpoints.spend-update-events]\n'
                    'service_time = "fixed:50ms"\n')
    profile = apply_overrides(CONDUIT, {"spend-update-events": {"service_time": "fixed:50ms"}})
    predicted = predicted_max_per_s(settings, profile, 2, {"spend": 1.0})
    assert predicted == pytest.approx(20.0)
    base = RunOptions(scenario="sustained_tasks", duration_s=12, instances=2,
                      rates=Rates(1.0, 10.0, (50.0, 100.0)), task_mix="spend=1",
                      drain_timeout_s=15, profile_file=str(conf))
    found, steps = asyncio.run(find_max(settings, profile, base, start_per_s=15.0,
                                        factor=1.25, bisect_steps=1, out_dir=tmp_path / "fm",
                                        say=lambda *_: None))
    print("find-max steps:", [(round(s.rate_per_s, 2), s.held, s.keep_up_ratio)
                              for s in steps])
    assert found is not None and any(not s.held for s in steps)
    assert abs(predicted - found) / found <= 0.15, (predicted, found)

    (tmp_path / "fm" / "find_max.json").write_text(json.dumps({
        "predicted_max_per_s": predicted, "measured_max_per_s": found,
        "steps": [s.__dict__ for s in steps]}))
    fitted, rows = calibrate(tmp_path / "fm")
    assert fitted["service_time_s"]["spend-update-events"] == pytest.approx(0.05, rel=0.1)
    row = next(r for r in rows if r.quantity == "max sustainable task rate")
    assert abs(row.error_pct) <= 15
    assert main(["plan", "--calibrate", str(tmp_path / "fm")]) == 0
    assert "max sustainable task rate" in capsys.readouterr().out


def test_calibrate_bad_input(tmp_path, capsys):
    assert main(["plan", "--calibrate", str(tmp_path / "nope")]) == 2
    assert "no such directory" in capsys.readouterr().err
    Path(tmp_path / "empty").mkdir()
    assert main(["plan", "--calibrate", str(tmp_path / "empty")]) == 2
