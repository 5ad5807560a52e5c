"""Shared fixtures. Every broker test gets its own vhost, deleted afterwards, so tests,
benchmarks and a running stack never see each other's messages."""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator

import pytest

from rabbitscale.harness.config import RabbitSettings, load_settings
from rabbitscale.harness.management import Management, ManagementError


def base_settings() -> RabbitSettings:
    env = dict(os.environ)
    env.setdefault("CONDUITLLM__RABBITMQ__HOST", "127.0.0.1")
    return load_settings(environ=env)


@pytest.fixture
async def vhost_settings() -> AsyncIterator[RabbitSettings]:
    """Settings pointing at a fresh vhost on the real broker."""
    settings = base_settings()
    vhost = f"rs-test-{uuid.uuid4().hex[:10]}"
    async with Management(settings) as mgmt:
        try:
            await mgmt.create_vhost(vhost)
        except ManagementError as exc:
            pytest.fail(f"RabbitMQ management API not reachable (run .ci/run or start the "
                        f"broker): {exc}")
        try:
            yield settings.with_vhost(vhost)
        finally:
            await mgmt.delete_vhost(vhost)
