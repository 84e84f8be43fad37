"""Shared fixtures: one simulated bioreactor server for the whole session.

asyncua takes ~1.5 s to start a server, so tests share one (session loop scope).
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from pathlib import Path

import pytest_asyncio

from simulators.bioreactor.opcua_server import BioreactorServer

ROOT = Path(__file__).resolve().parents[1]
#: 1 simulated minute = 30 ms of wall time.
TEST_TIME_SCALE = 2_000.0

logging.getLogger("asyncua").setLevel(logging.ERROR)


@pytest_asyncio.fixture(scope="session", loop_scope="session")
async def bioreactors() -> AsyncIterator[BioreactorServer]:
    """A real OPC UA server with vessels SV-01…SV-15 on a free port (each test module
    uses its own: a vessel takes one inoculation); SV-15 reports serial SN-0015."""
    server = BioreactorServer(
        [f"SV-{i:02d}" for i in range(1, 16)],
        url="opc.tcp://127.0.0.1:0/cellbatch/test",
        time_scale=TEST_TIME_SCALE,
        seed=3,
        serials={"SV-15": "SN-0015"},
    )
    await server.start()
    try:
        yield server
    finally:
        await server.stop()
