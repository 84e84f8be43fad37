"""Talking to a running `controller serve` over OPC UA (the `cellbatch batch` commands)."""

from __future__ import annotations

import json
from typing import Any

from asyncua import Client, ua

from controller.interface_security import Endpoint, InterfaceSecurityError
from controller.service import NAMESPACE
from drivers import DriverError

TIMEOUT_S = 10.0


class ServiceError(Exception):
    """No controller answered at the endpoint, or it answered something unreadable."""


async def call(endpoint: Endpoint | str, method: str, *args: str) -> Any:
    """Call one `Controller` method; return its decoded JSON answer."""
    where = endpoint if isinstance(endpoint, Endpoint) else Endpoint(endpoint)
    client = Client(where.url, timeout=TIMEOUT_S)
    try:
        await where.secure(client)
        await client.connect()
    except InterfaceSecurityError as exc:
        raise ServiceError(str(exc)) from None
    except (OSError, TimeoutError, ua.UaError, DriverError) as exc:
        raise ServiceError(f"no controller at {endpoint} ({exc or type(exc).__name__})") from None
    try:
        idx = await client.get_namespace_index(NAMESPACE)
        node = await client.nodes.objects.get_child([f"{idx}:Controller"])
        answer = await node.call_method(f"{idx}:{method}", *args)
    except (ValueError, ua.UaError) as exc:
        raise ServiceError(f"{endpoint} is not a cellbatch controller ({exc})") from None
    finally:
        await client.disconnect()
    try:
        return json.loads(answer)
    except (TypeError, ValueError):
        raise ServiceError(f"{endpoint}: unreadable answer {answer!r}") from None
