"""Opening AMQP connections, in one place: the stack, the runs, the tests and the benchmarks
connect through ``connect()``, so a refused, unreachable or misconfigured broker always reads
the same way: one line naming the broker and the setting to check (``BrokerUnavailable``,
exit code 3), never an aiormq traceback.

Reconnection after a connection *was* established is aio-pika's robust connection's concern;
a first connection that fails is reported here, not retried.
"""

from __future__ import annotations

import logging
from typing import Any

from rabbitscale.core.errors import Unavailable
from rabbitscale.harness.config import ENV_PREFIX, RabbitSettings

# aiormq logs each failed transport at ERROR before raising; the caller reports it once.
logging.getLogger("aiormq.connection").setLevel(logging.CRITICAL)


class BrokerUnavailable(Unavailable):
    """The broker cannot be reached, refuses the credentials, or has no such vhost."""


def where(settings: RabbitSettings) -> str:
    return f"RabbitMQ at {settings.host}:{settings.port} (vhost {settings.vhost!r})"


def explain(settings: RabbitSettings, exc: BaseException) -> BrokerUnavailable:
    """The one-line error for a failed connection attempt."""
    from aiormq.exceptions import ProbableAuthenticationError, ProtocolSyntaxError

    args = [a for a in getattr(exc, "args", ()) if not isinstance(a, int)]  # drop errno
    text = str(args[-1] if args else exc) or type(exc).__name__
    if isinstance(exc, ProbableAuthenticationError) or "ACCESS_REFUSED" in text:
        return BrokerUnavailable(
            f"{where(settings)} refused user {settings.username!r}: check {ENV_PREFIX}USERNAME "
            f"and {ENV_PREFIX}PASSWORD (or AMQP_URL)")
    if isinstance(exc, ProtocolSyntaxError) or "NOT_ALLOWED" in text:
        return BrokerUnavailable(
            f"{where(settings)} did not open the vhost: it does not exist or user "
            f"{settings.username!r} has no permissions on it; check {ENV_PREFIX}VHOST")
    return BrokerUnavailable(
        f"cannot reach {where(settings)}: {text}; check {ENV_PREFIX}HOST and {ENV_PREFIX}PORT "
        f"(or AMQP_URL) and that the broker runs")


async def connect(settings: RabbitSettings, name: str, *, robust: bool = True,
                  reconnect_interval: float = 1.0) -> Any:
    """A (robust) aio-pika connection labelled ``name`` in the management UI."""
    import aio_pika

    try:
        if robust:
            return await aio_pika.connect_robust(
                settings.amqp_url, reconnect_interval=reconnect_interval,
                client_properties={"connection_name": name})
        return await aio_pika.connect(settings.amqp_url,
                                      client_properties={"connection_name": name})
    except (OSError, TimeoutError) as exc:  # aiormq's errors are ConnectionErrors
        raise explain(settings, exc) from None
    except Exception as exc:
        from aiormq.exceptions import AMQPError

        if isinstance(exc, AMQPError):
            raise explain(settings, exc) from None
        raise
