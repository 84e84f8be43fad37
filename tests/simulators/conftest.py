"""Shared fixtures: one real bioreactor OPC UA server and one client per session."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest
import pytest_asyncio
from asyncua import Client, Node, ua

from simulators.bioreactor.address_space import NAMESPACE_URI
from simulators.bioreactor.opcua_server import BioreactorServer

SESSION_VESSELS = ["BR-01", "BR-02", "BR-03"]
SESSION_TIME_SCALE = 25_000.0  # one simulated minute = 2.4 ms of wall time
WAIT_S = 20.0  # bound of every wait on the server (a hang guard: generous for a busy machine)


@pytest_asyncio.fixture(scope="session", loop_scope="session")
async def bioreactor_server() -> AsyncIterator[BioreactorServer]:
    """A real server on an OS-chosen port, shared by the whole session."""
    server = BioreactorServer(SESSION_VESSELS, time_scale=SESSION_TIME_SCALE, seed=7)
    await server.start()
    yield server
    await server.stop()


@pytest_asyncio.fixture(scope="session", loop_scope="session")
async def opcua_client(bioreactor_server: BioreactorServer) -> AsyncIterator[Client]:
    """A plain asyncua client connected to :func:`bioreactor_server`."""
    client = Client(bioreactor_server.endpoint, timeout=WAIT_S)
    await client.connect()
    yield client
    await client.disconnect()


@pytest_asyncio.fixture(scope="session", loop_scope="session")
async def ns(opcua_client: Client) -> int:
    """Namespace index of the simulator's namespace URI."""
    return await opcua_client.get_namespace_index(NAMESPACE_URI)


@pytest.fixture(scope="session")
def tag(opcua_client: Client, ns: int) -> Callable[[str], Node]:
    """``tag("BR-01.Temperature.PV")`` → client node ``ns=<ns>;s=BR-01.Temperature.PV``."""

    def make(path: str) -> Node:
        return opcua_client.get_node(ua.NodeId(path, ns))

    return make


class _Until:
    """Handler that sets an event once a notification satisfies a predicate."""

    def __init__(self, predicate: Callable[[ua.DataValue], bool]) -> None:
        self.predicate = predicate
        self.event = asyncio.Event()
        self.match: ua.DataValue | None = None

    def datachange_notification(self, node: Node, val: Any, data: Any) -> None:
        dv = data.monitored_item.Value
        if not self.event.is_set() and self.predicate(dv):
            self.match = dv
            self.event.set()


@pytest.fixture(scope="session")
def until(
    opcua_client: Client,
) -> Callable[[Node, Callable[[ua.DataValue], bool]], Awaitable[ua.DataValue]]:
    """``await until(node, predicate)``: the first DataValue of ``node`` matching, ≤ 5 s."""

    async def wait(node: Node, predicate: Callable[[ua.DataValue], bool]) -> ua.DataValue:
        handler = _Until(predicate)
        sub = await opcua_client.create_subscription(20, handler)
        try:
            await sub.subscribe_data_change(node)
            await asyncio.wait_for(handler.event.wait(), WAIT_S)
        finally:
            await sub.delete()
        assert handler.match is not None
        return handler.match

    return wait
