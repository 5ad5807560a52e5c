"""Black-box runs and workers: bad input and unreachable peers are one line and their exit
code, without a broker; a read-only management client refuses writes before they leave."""

from __future__ import annotations

import pytest

from tests.support import one_line_error, rabbitscale


def test_bad_black_box_input(tmp_path):
    for args, env, code, needle in [
        (["run", "webhook_burst", "--target", "127.0.0.1:5000"],
         {"RABBITSCALE_TARGET_API_KEYS": "k"}, 2, "must be an http(s) URL"),
        (["run", "webhook_burst", "--target", "http://127.0.0.1:5000"], {}, 2, "no API key"),
        (["run", "webhook_burst", "--target", "http://127.0.0.1:1"],
         {"RABBITSCALE_TARGET_API_KEYS": "k"}, 3, "cannot reach the target"),
        (["run", "webhook_burst", "--target", "http://127.0.0.1:15672", "--fault", "poison"],
         {"RABBITSCALE_TARGET_API_KEYS": "k"}, 2, "acts on the reference stack"),
        (["run", "webhook_burst", "--api-key", "k"], {}, 2, "applies to black-box runs"),
        (["run", "webhook_burst", "--expect-workers-max-wait", "1m"], {}, 2,
         "applies to black-box runs"),
        (["run", "webhook_burst", "--target", "http://127.0.0.1:5000", "--expect-workers", "2",
          "--expect-workers-max-wait", "soon"], {"RABBITSCALE_TARGET_API_KEYS": "k"}, 2,
         "not a duration"),
        (["run", "webhook_burst", "--target", "amqp://127.0.0.1:5672",
          "--expect-workers-max-wait", "1m"], {}, 2, "does not apply to --target amqp"),
        (["worker", "--master", "nohost:notaport"], {}, 2, "expected HOST[:PORT]"),
        (["worker", "--master", "127.0.0.1:1", "--wait", "1s"], {}, 3,
         "cannot reach the Locust master"),
    ]:
        done = rabbitscale(*args, timeout=60, cwd=tmp_path, **env)
        err = one_line_error(done)
        assert done.returncode == code and needle in err, (args, done.returncode, err)


def test_read_only_management_refuses_writes():
    import asyncio

    from rabbitscale.broker.management import Management, ReadOnlyViolation
    from rabbitscale.topology.settings import RabbitSettings

    async def attempt() -> None:
        async with Management(RabbitSettings(), read_only=True) as mgmt:
            await mgmt.delete_vhost("anything")

    with pytest.raises(ReadOnlyViolation):
        asyncio.run(attempt())
