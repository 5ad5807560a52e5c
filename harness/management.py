"""A small async client for the RabbitMQ management HTTP API (port 15672).

Used by the health check, the broker sampler, the test fixtures (one vhost per test) and the
fault injections. Errors are ``ManagementError`` with a one-line message.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

import aiohttp

from rabbitscale.harness.config import RabbitSettings


class ManagementError(RuntimeError):
    pass


class Management:
    def __init__(self, settings: RabbitSettings, timeout_s: float = 10.0) -> None:
        self.settings = settings
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
        url = self.base + path
        try:
            async with self._s().request(method, url, json=json) as resp:
                if resp.status not in ok:
                    text = (await resp.text())[:200].replace("\n", " ")
                    raise ManagementError(f"{method} {path}: HTTP {resp.status} {text}")
                if resp.status == 204 or resp.content_length == 0:
                    return None
                return await resp.json(content_type=None)
        except aiohttp.ClientError as exc:
            raise ManagementError(f"management API at {self.base} unreachable: {exc}") from None
        except TimeoutError:
            raise ManagementError(f"management API at {self.base} timed out") from None

    @staticmethod
    def q(name: str) -> str:
        return quote(name, safe="")

    async def overview(self) -> dict[str, Any]:
        return await self.request("GET", "/overview")

    async def nodes(self) -> list[dict[str, Any]]:
        return await self.request("GET", "/nodes")

    async def queues(self, vhost: str | None = None) -> list[dict[str, Any]]:
        vh = self.settings.vhost if vhost is None else vhost
        return await self.request("GET", f"/queues/{self.q(vh)}")

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
