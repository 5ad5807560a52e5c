"""Shared fixtures. Every broker test gets its own vhost, deleted afterwards, so tests,
benchmarks and a running stack never see each other's messages; a test that needs a deployed
system gets `running_stack`, the reference stack started as a separate process."""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import ExitStack, contextmanager

import pytest

from rabbitscale.broker.management import Management, ManagementError
from rabbitscale.topology.settings import RabbitSettings, load_settings
from tests.support import RunningStack, own_vhost, start_stack


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
            pytest.fail(f"RabbitMQ management API not reachable (run `make broker`): {exc}")
        try:
            yield settings.with_vhost(vhost)
        finally:
            await mgmt.delete_vhost(vhost)


@contextmanager
def _stacks() -> Iterator[Callable[..., RunningStack]]:
    started: list[RunningStack] = []
    with ExitStack() as cleanup:
        def start(*args: str, secret: str = "stack-secret", instances: int = 2
                  ) -> RunningStack:
            vhost = cleanup.enter_context(own_vhost("rs-stack"))
            stack = start_stack(vhost, *args, secret=secret, instances=instances)
            cleanup.callback(stack.stop)  # stopped before its vhost goes
            started.append(stack)
            return stack

        yield start


@pytest.fixture
def running_stack() -> Iterator[Callable[..., RunningStack]]:
    """Start `rabbitscale stack` in a vhost of its own, as a deployment runs it:
    ``running_stack(*args, secret=..., instances=2)``; every stack started is stopped (like
    Ctrl-C) and its vhost deleted at the end of the test."""
    with _stacks() as start:
        yield start


@pytest.fixture(scope="module")
def module_stack() -> Iterator[Callable[..., RunningStack]]:
    """``running_stack`` shared by the tests of a module."""
    with _stacks() as start:
        yield start
