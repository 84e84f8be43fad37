"""Talking to a running `controller serve` over OPC UA (the `cellbatch batch` commands)."""

from __future__ import annotations

import contextlib
import json
from types import TracebackType
from typing import Any
from urllib.parse import urlsplit

from asyncua import Client, Node, ua

from controller.interface_security import Endpoint, InterfaceSecurityError
from controller.service import NAMESPACE
from controller.storage import storage_line
from drivers import DriverError
from ebr.people.users import alert_text

TIMEOUT_S = 10.0


def alert_line(alert: dict[str, Any]) -> str:
    """One line for an alert of the controller's `Alerts` method (R12)."""
    return f"{alert_text(alert)} (cellbatch users audit)"


def storage_banner(info: dict[str, Any]) -> str | None:
    """The storage line of the controller's `Info` answer while its store cannot commit."""
    problem = info.get("storage_problem")
    return storage_line(str(problem), info.get("storage_since")) if problem else None


class ServiceError(Exception):
    """No controller answered at the endpoint, or it answered something unreadable."""


def opc_url_problem(url: str) -> str | None:
    """Why `url` is not an ``opc.tcp://HOST:PORT[/path]`` endpoint (None when it is)."""
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        return f"{url!r} is not an OPC UA endpoint URL ({exc})"
    if parts.scheme != "opc.tcp" or not parts.hostname or port is None:
        return f"{url!r} is not an OPC UA endpoint URL: want opc.tcp://HOST:PORT"
    return None


class Connection:
    """One open session with a controller, for many calls (`batch watch`, the HMI):
    ``async with Connection(endpoint) as conn: await conn.call("List")``."""

    def __init__(self, endpoint: Endpoint | str) -> None:
        """Connect on `__aenter__` to `endpoint` (a URL or an `Endpoint` with PKI)."""
        self.endpoint = endpoint if isinstance(endpoint, Endpoint) else Endpoint(endpoint)
        self._client: Client | None = None
        self._node: Node | None = None
        self._idx = 0

    async def __aenter__(self) -> Connection:
        where = self.endpoint
        problem = opc_url_problem(where.url)
        if problem is not None:
            raise ServiceError(problem)
        client = Client(where.url, timeout=TIMEOUT_S)
        try:
            await where.secure(client)
            await client.connect()
        except InterfaceSecurityError as exc:
            raise ServiceError(str(exc)) from None
        except (OSError, TimeoutError, ua.UaError, DriverError) as exc:
            raise ServiceError(f"no controller at {where} ({exc or type(exc).__name__})") from None
        try:
            self._idx = await client.get_namespace_index(NAMESPACE)
            self._node = await client.nodes.objects.get_child([f"{self._idx}:Controller"])
        except (ValueError, ua.UaError) as exc:
            await client.disconnect()
            raise ServiceError(f"{where} is not a cellbatch controller ({exc})") from None
        self._client = client
        return self

    async def __aexit__(
        self,
        _type: type[BaseException] | None,
        _exc: BaseException | None,
        _tb: TracebackType | None,
    ) -> None:
        client, self._client = self._client, None
        if client is not None:
            # the controller may have gone away first: nothing to close then
            with contextlib.suppress(OSError, TimeoutError, ua.UaError, ConnectionError):
                await client.disconnect()

    async def call(self, method: str, *args: str) -> Any:
        """Call one `Controller` method; return its decoded JSON answer."""
        assert self._node is not None, "async with Connection(...) first"
        try:
            answer = await self._node.call_method(f"{self._idx}:{method}", *args)
        except (ValueError, ua.UaError) as exc:
            raise ServiceError(f"{self.endpoint} refused the call {method} ({exc})") from None
        except (OSError, TimeoutError, ConnectionError) as exc:
            raise ServiceError(f"lost the controller at {self.endpoint} ({exc})") from None
        try:
            return json.loads(answer)
        except (TypeError, ValueError):
            raise ServiceError(f"{self.endpoint}: unreadable answer {answer!r}") from None


async def call(endpoint: Endpoint | str, method: str, *args: str) -> Any:
    """Call one `Controller` method on a fresh connection; return its decoded JSON answer."""
    async with Connection(endpoint) as conn:
        return await conn.call(method, *args)
