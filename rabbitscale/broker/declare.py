"""Declaring a profile on the broker with MassTransit's exchange topology.

message-type fanout exchange -> endpoint fanout exchange -> queue, for each message type an
endpoint consumes, plus ``<queue>_error`` and ``<queue>_skipped`` (exchange + queue), and the
completions exchange the stack reports finished work on. The ``Durable`` / ``AutoDelete``
settings apply to what is declared; a quorum queue can be neither non-durable nor auto-delete,
so that combination is refused up front, as the broker (and MassTransit) would refuse it.
"""

from __future__ import annotations

from typing import Any

from rabbitscale.core.errors import ConfigError
from rabbitscale.topology import naming
from rabbitscale.topology.profiles import QUORUM, Profile
from rabbitscale.topology.settings import ENV_PREFIX, RabbitSettings


def check_declarable(settings: RabbitSettings, profile: Profile) -> None:
    quorum = [ep.queue for ep in profile.endpoints if ep.queue_type == QUORUM]
    if quorum and (not settings.durable or settings.auto_delete):
        raise ConfigError(
            f"{ENV_PREFIX}DURABLE={str(settings.durable).lower()}, "
            f"{ENV_PREFIX}AUTODELETE={str(settings.auto_delete).lower()}: {quorum[0]} is a "
            f"{QUORUM} queue, which the broker only accepts durable and not auto-delete "
            f"(MassTransit fails the same way); set DURABLE=true and AUTODELETE=false")


async def declare(channel: Any, profile: Profile, settings: RabbitSettings) -> None:
    """Declare the profile idempotently. Re-declaring with other queue arguments fails with
    the broker's PRECONDITION_FAILED, raised as a one-line ConfigError."""
    import aio_pika
    from aiormq.exceptions import ChannelPreconditionFailed

    check_declarable(settings, profile)
    fanout = aio_pika.ExchangeType.FANOUT
    durable, auto_delete = settings.durable, settings.auto_delete

    async def exchange(name: str) -> Any:
        return await channel.declare_exchange(name, fanout, durable=durable,
                                              auto_delete=auto_delete)

    try:
        for ep in profile.endpoints:
            q = await channel.declare_queue(ep.queue, durable=durable, auto_delete=auto_delete,
                                            arguments=ep.declared_arguments())
            ex = await exchange(ep.queue)
            await q.bind(ex)
            for type_name in ep.consumes:
                await ex.bind(await exchange(profile.message(type_name).exchange))
            for side in (ep.error_queue, ep.skipped_queue):
                sq = await channel.declare_queue(side, durable=durable, auto_delete=auto_delete,
                                                 arguments=_side_arguments(ep.declared_arguments()))
                await sq.bind(await exchange(side))
        await channel.declare_exchange(naming.COMPLETIONS_EXCHANGE, fanout, durable=True)
    except ChannelPreconditionFailed as exc:
        raise ConfigError(f"broker refused the topology of profile {profile.name!r} "
                          f"(a queue exists with other arguments; delete it or use another "
                          f"vhost): {exc}") from None


def _side_arguments(endpoint_arguments: dict[str, Any]) -> dict[str, Any]:
    """``_error``/``_skipped`` queues: same queue type and replica count, no limits."""
    keep = ("x-queue-type", "x-quorum-initial-group-size")
    return {k: v for k, v in endpoint_arguments.items() if k in keep}
