"""Opening AMQP connections, in one place: the stack, the runs, the tests and the benchmarks
connect through ``connect()``, so a refused, unreachable or misconfigured broker always reads
the same way: one line naming the broker and the setting to check (``BrokerUnavailable``,
exit code 3), never an aiormq traceback.

Reconnection after a connection *was* established is aio-pika's robust connection's concern;
a first connection that fails is reported here, not retried.
"""

from __future__ import annotations

import logging
import zlib
from typing import Any

from rabbitscale.core.errors import Unavailable
from rabbitscale.topology.settings import ENV_PREFIX, RabbitSettings

# aiormq logs each failed transport at ERROR before raising; the caller reports it once.
logging.getLogger("aiormq.connection").setLevel(logging.CRITICAL)
log = logging.getLogger("rabbitscale.amqp")


class BrokerUnavailable(Unavailable):
    """The broker cannot be reached, refuses the credentials, or has no such vhost."""


async def ready_count(channel: Any, queue: str) -> int:
    """A queue's ready messages now: a passive ``queue.declare``, sent every time. aio-pika's
    RobustChannel keeps each passively declared queue and hands the first answer back on every
    later passive declare of that name; ``robust=False`` keeps it out of that cache."""
    q = await channel.declare_queue(queue, passive=True, robust=False)
    return int(q.declaration_result.message_count or 0)


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


FAILOVER_AFTER_S = 1.5  # unreachable this long: try the next node
_WATCHERS: set[Any] = set()  # running failover tasks (the loop keeps only weak references)


def node_order(settings: RabbitSettings, name: str) -> list[str]:
    """The nodes to try for a connection, starting at one picked from its name, so that a
    process's connections spread over the cluster."""
    nodes = list(settings.nodes)
    start = zlib.crc32(name.encode()) % len(nodes)
    return nodes[start:] + nodes[:start]


async def connect(settings: RabbitSettings, name: str, *, robust: bool = True,
                  reconnect_interval: float = 1.0) -> Any:
    """A (robust) aio-pika connection labelled ``name`` in the management UI. With several
    nodes, the first that answers; a robust one then fails over to the next node when its
    own stays unreachable (aio-pika alone would retry the same node forever)."""
    import aio_pika

    error: BaseException | None = None
    order = node_order(settings, name)
    for node in order:
        url = settings.amqp_url_for(node)
        try:
            if robust:
                conn = await aio_pika.connect_robust(
                    url, reconnect_interval=reconnect_interval,
                    client_properties={"connection_name": name})
                if len(order) > 1:
                    _fail_over(conn, [settings.amqp_url_for(n) for n in order],
                               order.index(node), name)
                return conn
            return await aio_pika.connect(url, client_properties={"connection_name": name})
        except (OSError, TimeoutError) as exc:  # aiormq's errors are ConnectionErrors
            error = exc
        except Exception as exc:
            from aiormq.exceptions import AMQPError

            if not isinstance(exc, AMQPError):
                raise
            error = exc
    assert error is not None
    raise explain(settings, error) from None


def _fail_over(conn: Any, urls: list[str], current: int, name: str) -> None:
    """Move a robust connection to the next node while its own cannot be reached: aio-pika
    reads ``conn.url`` on every reconnect attempt."""
    import asyncio

    from yarl import URL

    async def watch() -> None:
        index, down_since = current, None
        loop = asyncio.get_running_loop()
        while not conn.close_called:  # close_callbacks would also fire on every loss
            await asyncio.sleep(0.5)
            if conn.connected.is_set():
                down_since = None
            elif down_since is None:
                down_since = loop.time()
            elif loop.time() - down_since >= FAILOVER_AFTER_S:
                index = (index + 1) % len(urls)
                conn.url = URL(urls[index])
                down_since = loop.time()
                log.warning("%s: its node cannot be reached, trying %s:%s", name,
                            conn.url.host, conn.url.port)

    _WATCHERS.add(task := asyncio.get_running_loop().create_task(watch()))
    task.add_done_callback(_WATCHERS.discard)
