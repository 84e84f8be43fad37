"""The OPC UA driver against the simulated bioreactor over a real socket."""

from __future__ import annotations

import asyncio
import itertools
import time
from collections.abc import AsyncIterator
from datetime import datetime

import pytest
import pytest_asyncio

from drivers import (
    Device,
    DevicePool,
    Disconnected,
    DriverTimeout,
    ProfileError,
    ProtocolError,
    Quality,
    Reading,
    WriteRejected,
    load_profile,
)
from drivers.profile import PROFILE_DIR
from simulators.bioreactor.opcua_server import BioreactorServer

pytestmark = pytest.mark.asyncio(loop_scope="session")


@pytest_asyncio.fixture(loop_scope="session")
async def pool() -> AsyncIterator[DevicePool]:
    pool = DevicePool(timeout=2.0)
    yield pool
    await pool.close()


async def _device(pool: DevicePool, server: BioreactorServer, vessel: str) -> Device:
    device = pool.open(vessel, "rocking_bioreactor_opcua", server.endpoint, {"vessel": vessel})
    await device.connect()
    return device


async def test_batched_read_with_units_quality_and_time(
    pool: DevicePool, bioreactors: BioreactorServer
) -> None:
    device = await _device(pool, bioreactors, "SV-01")
    readings = await device.read(["temperature.pv", "ph.pv", "do.pv", "volume.pv"])
    assert [r.capability for r in readings] == ["temperature.pv", "ph.pv", "do.pv", "volume.pv"]
    assert [r.unit for r in readings] == ["degC", "pH", "%", "mL"]
    assert all(r.quality is Quality.GOOD for r in readings)
    assert all(isinstance(r.value, float) for r in readings)
    assert all(isinstance(r.source_time, datetime) for r in readings)


async def test_verified_setpoint_write(pool: DevicePool, bioreactors: BioreactorServer) -> None:
    device = await _device(pool, bioreactors, "SV-01")
    assert await device.tag("rocking.rate_sp").write(9.0) == pytest.approx(9.0)
    (reading,) = await device.read(["rocking.rate_sp"])
    assert reading.value == pytest.approx(9.0)


async def test_instrument_refuses_out_of_range(
    pool: DevicePool, bioreactors: BioreactorServer
) -> None:
    device = await _device(pool, bioreactors, "SV-01")
    with pytest.raises(WriteRejected, match="BadOutOfRange"):
        await device.write("temperature.sp", 95.0)
    (reading,) = await device.read(["temperature.sp"])
    assert reading.value != 95.0


async def test_read_only_and_unknown_capabilities(
    pool: DevicePool, bioreactors: BioreactorServer
) -> None:
    device = await _device(pool, bioreactors, "SV-01")
    with pytest.raises(WriteRejected, match="read-only"):
        await device.write("temperature.pv", 30.0)
    with pytest.raises(ProfileError, match=r"no capability 'pump\.rate'"):
        await device.read(["pump.rate"])


@pytest.mark.parametrize("capability", ["temperature.pv", "rocking.angle_pv"])
async def test_subscription_delivers_every_simulated_step(
    pool: DevicePool, bioreactors: BioreactorServer, capability: str
) -> None:
    """Noisy and steady values alike: one sample per instrument update, none missing."""
    device = await _device(pool, bioreactors, "SV-02")
    got: list[Reading] = []
    enough = asyncio.Event()

    def sink(reading: Reading) -> None:
        got.append(reading)
        if len(got) >= 60:
            enough.set()

    cancel = await device.subscribe([capability], sink)
    try:
        await asyncio.wait_for(enough.wait(), 10)
    finally:
        await cancel()
    times = [r.source_time for r in got[1:]]  # the first is the initial value
    assert all(t is not None for t in times)
    steps = {(b - a).total_seconds() for a, b in itertools.pairwise(times)}  # type: ignore[operator]
    assert steps == {60.0}, "one value per simulated minute, none missing"


async def test_method_call_once(pool: DevicePool, bioreactors: BioreactorServer) -> None:
    device = await _device(pool, bioreactors, "SV-03")
    await device.call("inoculate", {"volume": 50.0, "viable_cells": 1e8})
    with pytest.raises(WriteRejected):
        await device.call("inoculate", {"volume": 50.0, "viable_cells": 1e8})
    with pytest.raises(ProfileError, match="takes"):
        await device.call("inoculate", {"volume": 50.0})


async def test_nothing_listening_is_disconnected_quickly(pool: DevicePool) -> None:
    device = pool.open("X", "rocking_bioreactor_opcua", "opc.tcp://127.0.0.1:9/x", {"vessel": "X"})
    # A refused connection is a disconnect at once, never a wait for the driver's timeout.
    with pytest.raises(Disconnected):  # not DriverTimeout
        await device.connect()


async def test_silent_server_times_out() -> None:
    accepted: list[asyncio.StreamWriter] = []

    async def silent(_reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        accepted.append(writer)  # accept the TCP connection, never answer

    server = await asyncio.start_server(silent, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    pool = DevicePool(timeout=0.5)
    device = pool.open(
        "X", "rocking_bioreactor_opcua", f"opc.tcp://127.0.0.1:{port}", {"vessel": "X"}
    )
    started = time.monotonic()
    try:
        # The driver's own bound ended it (the pool's 0.5 s; its connect limit is 1.0 s).
        with pytest.raises(DriverTimeout, match=r"no answer within 1\.0 s"):
            await device.connect()
        assert time.monotonic() - started >= 0.5
    finally:
        await pool.close()
        for w in accepted:
            w.close()
        server.close()
        await server.wait_closed()


async def test_wrong_namespace_is_a_protocol_error(
    bioreactors: BioreactorServer, tmp_path: object
) -> None:
    from pathlib import Path

    src = load_profile("rocking_bioreactor_opcua")
    text = (PROFILE_DIR / "rocking_bioreactor_opcua.toml").read_text()
    path = Path(str(tmp_path)) / "other.toml"
    path.write_text(text.replace(str(src.options["namespace_uri"]), "urn:nobody:here"))
    pool = DevicePool(timeout=2.0)
    device = pool.open("SV-01", path, bioreactors.endpoint, {"vessel": "SV-01"})
    try:
        with pytest.raises(ProtocolError, match="urn:nobody:here"):
            await device.connect()
    finally:
        await pool.close()
