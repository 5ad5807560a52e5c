"""The open-model generator against a slow target: each slot's send leaves on time while the
system takes a second to answer (the senders in flight grow, as k6's arrival-rate executors
start more virtual users), and a bound that is too low is reached, counted and makes the
measurement INVALID instead of quietly sending late."""

from __future__ import annotations

import asyncio
import json
import os
from pathlib import Path

from aiohttp import web

from rabbitscale.core import rundir
from rabbitscale.engine.load import LoadSpec, drive
from rabbitscale.judge import validity
from rabbitscale.scenarios import contract, registry
from rabbitscale.scenarios.schedule import Rates
from rabbitscale.topology.profile_file import get_profile, profile_env

RATE, SECONDS, ANSWER_S = 40.0, 6.0, 1.0  # ~40 requests in flight at any time


async def _slow_target() -> tuple[web.AppRunner, str]:
    async def slow(request: web.Request) -> web.Response:
        await request.read()
        await asyncio.sleep(ANSWER_S)
        return web.json_response({"task_id": "t", "status": "queued"}, status=202)

    app = web.Application()
    app.router.add_route("POST", "/{tail:.*}", slow)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    return runner, f"http://127.0.0.1:{site._server.sockets[0].getsockname()[1]}"


async def _generate(out: Path, url: str, max_in_flight: int) -> dict:
    out.mkdir(parents=True)
    rates = Rates(RATE, 1.0, (1.0,))
    spec = LoadSpec(scenario=registry.SUSTAINED_TASKS, duration_s=SECONDS, rates=rates,
                    payload="1KB", transport="http", task_mix="video=1",
                    users=registry.SUSTAINED_TASKS.users(rates), max_in_flight=max_in_flight)
    error = await drive(spec, out, url, {
        **os.environ, contract.API_SECRET.env: "slow", **profile_env(get_profile("conduit"))})
    assert not error, error
    delays = validity.read_send_delays(out)
    return {"checks": {c.name: c for c in validity.checks(delays, {}, {},
                                                            validity.read_in_flight(out))},
            "sent": json.loads((out / rundir.LOCUST_HDR_DIR / "summary.json").read_text())}


async def test_sends_leave_on_time_while_the_target_is_slow_up_to_a_stated_bound(tmp_path):
    runner, url = await _slow_target()
    try:
        roomy = await _generate(tmp_path / "roomy", url, max_in_flight=1024)
        tight = await _generate(tmp_path / "tight", url, max_in_flight=10)
    finally:
        await runner.cleanup()
    checks = roomy["checks"]
    assert checks["generator_send_delay_p99_ms"].verdict == "PASS", checks
    assert checks["generator_in_flight_waits"].verdict == "PASS"
    assert abs(roomy["sent"]["tasks_send_delay"]["count"] - RATE * SECONDS) <= 1
    # each answer took a second: the senders in flight grew to about a second of arrivals
    assert "most sends in flight: 4" in checks["generator_in_flight_waits"].detail or \
        "most sends in flight: 3" in checks["generator_in_flight_waits"].detail, \
        checks["generator_in_flight_waits"].detail
    bound = tight["checks"]["generator_in_flight_waits"]
    assert bound.verdict == "INVALID" and bound.measured > 0, bound
    assert "of 10 " in bound.detail
    assert tight["checks"]["generator_send_delay_p99_ms"].measured > 500  # late, and said so
