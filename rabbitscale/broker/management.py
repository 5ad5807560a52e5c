"""A small async client for the RabbitMQ management HTTP API (port 15672).

Used by the health check, the broker sampler, doctor, the test fixtures (one vhost per test)
and the fault injections. Failures are one-line errors: ``ManagementUnavailable`` (exit 3) when
the API cannot be reached or refuses the credentials, ``ManagementError`` for other answers.
A client made with ``read_only=True`` refuses anything but GET before it leaves the process:
black-box runs and doctor use one, so they cannot change a broker they only observe.
"""

from __future__ import annotations

import contextlib
from typing import Any
from urllib.parse import quote

import aiohttp

from rabbitscale.core.errors import BadInput, RunFailed, Unavailable
from rabbitscale.topology.settings import ENV_PREFIX, RabbitSettings


class ManagementError(RunFailed):
    """The management API answered with an error."""


class ManagementUnavailable(Unavailable, ManagementError):
    """The management API cannot be reached, timed out, or refuses the credentials."""


class ReadOnlyViolation(RuntimeError):
    """A read-only client was asked to change the broker: a bug, never a user error."""


class Management:
    def __init__(self, settings: RabbitSettings, timeout_s: float = 10.0, *,
                 read_only: bool = False) -> None:
        self.settings = settings
        self.read_only = read_only
        self.base = settings.management_base_url + "/api"
        self._headers = {"Authorization": aiohttp.encode_basic_auth(settings.username,
                                                                    settings.password)}
        self._timeout = aiohttp.ClientTimeout(total=timeout_s)
        self._session: aiohttp.ClientSession | None = None

    async def __aenter__(self) -> Management:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def close(self) -> None:
        if self._session:
            await self._session.close()
            self._session = None

    def _s(self) -> aiohttp.ClientSession:
        if self._session is None:
            self._session = aiohttp.ClientSession(headers=self._headers, timeout=self._timeout)
        return self._session

    async def request(self, method: str, path: str, json: Any = None,
                      ok: tuple[int, ...] = (200, 201, 204)) -> Any:
        if self.read_only and method != "GET":
            raise ReadOnlyViolation(f"read-only management client asked to {method} {path}")
        url = self.base + path
        try:
            async with self._s().request(method, url, json=json) as resp:
                if resp.status not in ok:
                    text = (await resp.text())[:200]
                    raise self._http_error(method, path, resp.status, text)
                if resp.status == 204 or resp.content_length == 0:
                    return None
                try:
                    return await resp.json(content_type=None)
                except ValueError:
                    raise self._not_management(f"{method} {path} answered with no JSON"
                                               ) from None
        except (aiohttp.ClientResponseError, aiohttp.ServerDisconnectedError) as exc:
            # e.g. the AMQP port (5672): "Bad status line ... AMQP"
            raise self._not_management(f"{type(exc).__name__}") from None
        except aiohttp.ClientError as exc:
            raise ManagementUnavailable(
                f"cannot reach the RabbitMQ management API at {self.base}: {exc}; check "
                f"{ENV_PREFIX}HOST and {ENV_PREFIX}MANAGEMENTPORT (or MANAGEMENTURL) and that "
                f"the rabbitmq_management plugin is enabled") from None
        except TimeoutError:
            raise ManagementUnavailable(
                f"the RabbitMQ management API at {self.base} did not answer {method} {path} "
                f"in time") from None

    def _not_management(self, why: str) -> ManagementUnavailable:
        return ManagementUnavailable(
            f"not a RabbitMQ management API at {self.settings.management_base_url} ({why}); "
            f"give the management port (15672), not AMQP's (5672) or rabbitmq_prometheus's "
            f"(15692)")

    def _http_error(self, method: str, path: str, status: int, text: str) -> ManagementError:
        if status == 401:
            return ManagementUnavailable(
                f"the RabbitMQ management API at {self.base} refused user "
                f"{self.settings.username!r} (HTTP 401 on {method} {path}): check "
                f"{ENV_PREFIX}USERNAME and {ENV_PREFIX}PASSWORD (or AMQP_URL), and that the "
                f"user has permissions on the vhost (a 'monitoring' user needs them too; "
                f"'^$' for configure, write and read, which allows nothing, is enough)")
        if status == 403:
            return ManagementUnavailable(
                f"the RabbitMQ management API refused {method} {path} for user "
                f"{self.settings.username!r} (HTTP 403): it needs the management tag (and "
                f"'administrator' to create vhosts) and permissions on the vhost")
        return ManagementError(f"management API {method} {path}: HTTP {status} {text}")

    @staticmethod
    def q(name: str) -> str:
        return quote(name, safe="")

    async def require_vhost(self, vhost: str, flag: str = "--vhost") -> None:
        """GET the vhost: a missing one is bad input naming ``flag``, not an HTTP error."""
        # the list, not GET /vhosts/NAME, which a 'monitoring' user may not read on 3.x
        try:
            listed = await self.request("GET", "/vhosts?columns=name")
        except ManagementError as exc:
            if "HTTP 404" in str(exc):  # not the management API's base: say so
                await self.require_management()
            raise
        if not isinstance(listed, list):
            raise self._not_management("GET /vhosts answered no list")
        if vhost not in {v.get("name") for v in listed if isinstance(v, dict)}:
            await self.require_management()
            raise BadInput(f"{flag}: the broker has no vhost {vhost!r}")

    async def require_management(self) -> None:
        """The URL is RabbitMQ's management API (its overview names a RabbitMQ version), or
        Unavailable saying so: a 404 from another server is not a missing vhost."""
        try:
            overview = await self.request("GET", "/overview")
        except ManagementError:
            overview = None
        if not isinstance(overview, dict) or "rabbitmq_version" not in overview:
            raise self._not_management("no RabbitMQ overview at /api/overview")

    async def overview(self) -> dict[str, Any]:
        return await self.request("GET", "/overview")

    async def nodes(self) -> list[dict[str, Any]]:
        return await self.request("GET", "/nodes")

    async def node_memory(self, node: str) -> dict[str, Any]:
        """The node's memory breakdown (``rss``, ``binary``, ``quorum_ets``, ...), computed
        when asked, unlike ``mem_used`` which the node refreshes every few seconds."""
        doc = await self.request("GET", f"/nodes/{self.q(node)}/memory")
        return dict(doc.get("memory") or {}) if isinstance(doc, dict) else {}

    async def queues(self, vhost: str | None = None) -> list[dict[str, Any]]:
        vh = self.settings.vhost if vhost is None else vhost
        return await self.request("GET", f"/queues/{self.q(vh)}")

    async def consumers(self, vhost: str | None = None) -> list[dict[str, Any]]:
        """The vhost's consumers, each with its queue, channel and prefetch."""
        return await self.request("GET", f"/consumers/{self.q(vhost or self.settings.vhost)}"
                                  ) or []

    async def queue(self, name: str, vhost: str | None = None) -> dict[str, Any]:
        vh = self.settings.vhost if vhost is None else vhost
        return await self.request("GET", f"/queues/{self.q(vh)}/{self.q(name)}")

    async def exchanges(self, vhost: str | None = None) -> list[dict[str, Any]]:
        vh = self.settings.vhost if vhost is None else vhost
        return await self.request("GET", f"/exchanges/{self.q(vh)}")

    async def bindings(self, vhost: str | None = None) -> list[dict[str, Any]]:
        vh = self.settings.vhost if vhost is None else vhost
        return await self.request("GET", f"/bindings/{self.q(vh)}")

    async def connections(self, vhost: str | None = None) -> list[dict[str, Any]]:
        vh = self.settings.vhost if vhost is None else vhost
        return await self.request("GET", f"/vhosts/{self.q(vh)}/connections")

    async def close_connection(self, name: str) -> None:
        await self.request("DELETE", f"/connections/{self.q(name)}", ok=(200, 204, 404))

    async def create_vhost(self, vhost: str) -> None:
        await self.request("PUT", f"/vhosts/{self.q(vhost)}", json={})
        await self.request("PUT", f"/permissions/{self.q(vhost)}/{self.q(self.settings.username)}",
                           json={"configure": ".*", "write": ".*", "read": ".*"})

    async def delete_vhost(self, vhost: str) -> None:
        await self.request("DELETE", f"/vhosts/{self.q(vhost)}", ok=(200, 204, 404))

    @classmethod
    async def for_run(cls, settings: RabbitSettings, cleanup: contextlib.AsyncExitStack, *,
                      own_vhost: bool, keep: bool = False) -> Management:
        """A run's client, closed with ``cleanup``; with ``own_vhost`` the settings' vhost is
        the run's own (created now, deleted at the close unless ``keep``)."""
        mgmt = cls(settings)
        cleanup.push_async_callback(mgmt.close)
        if own_vhost:
            await mgmt.own_vhost(settings.vhost, cleanup, keep=keep)
        return mgmt

    async def own_vhost(self, vhost: str, cleanup: contextlib.AsyncExitStack, *,
                        keep: bool = False) -> None:
        """A vhost of a run's own: created now and, unless ``keep``, deleted when ``cleanup``
        closes (best effort: a run's verdict does not depend on its deletion)."""
        await self.create_vhost(vhost)
        if not keep:
            async def delete() -> None:
                with contextlib.suppress(Exception):
                    await self.delete_vhost(vhost)

            cleanup.push_async_callback(delete)
