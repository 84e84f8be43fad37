"""The generic Modbus driver with the freezer profile, against the freezer simulator."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import pytest_asyncio

from drivers import DevicePool, WriteRejected
from simulators.freezer.modbus_server import FreezerServer

SCALE = 20_000.0  # the 4.8-minute test program takes ~15 ms
PROFILE = "controlled_rate_freezer_modbus"


@pytest_asyncio.fixture
async def server() -> AsyncIterator[FreezerServer]:
    async with FreezerServer(time_scale=SCALE) as srv:
        yield srv


@pytest_asyncio.fixture
async def pool() -> AsyncIterator[DevicePool]:
    pool = DevicePool(timeout=1.0)
    yield pool
    await pool.close()


async def test_reads_at_rest_typed_with_units(pool: DevicePool, server: FreezerServer) -> None:
    device = pool.open("CRF-01", PROFILE, server.endpoint, {})
    await device.connect()
    caps = ["state", "program.selected", "segment", "alarm.code", "alarm.active"]
    caps += ["run.running", "run.complete", "run.remaining", "chamber_temperature.pv"]
    caps += ["sample_temperature.pv", "device.firmware", "ln2.supply_ok"]
    readings = {r.capability: r for r in await device.read(caps)}
    assert {c: r.value for c, r in readings.items()} == {
        "state": "idle",
        "program.selected": 1,
        "segment": 0,
        "alarm.code": 0,
        "alarm.active": False,
        "run.running": False,
        "run.complete": False,
        "run.remaining": 0,
        "chamber_temperature.pv": 4.0,
        "sample_temperature.pv": 4.0,
        "device.firmware": pytest.approx(1.0),
        "ln2.supply_ok": True,
    }
    assert readings["chamber_temperature.pv"].unit == "degC"
    assert readings["run.remaining"].unit == "s"


async def test_test_program_runs_to_complete(pool: DevicePool, server: FreezerServer) -> None:
    device = pool.open("CRF-01", PROFILE, server.endpoint, {"device_id": "1"})
    await device.connect()
    assert await device.write("program.selected", 2) == 2
    await device.call("start_program", {"program": 2})
    values = {r.capability: r.value for r in await device.read(["state", "segment"])}
    assert values["state"] in ("running", "complete")  # 4.8 simulated min ≈ 15 ms
    deadline = time.monotonic() + 5.0
    while (await device.read(["state"]))[0].value != "complete":
        assert time.monotonic() < deadline, "program did not complete"
        await asyncio.sleep(0.01)
    readings = {
        r.capability: r
        for r in await device.read(
            ["chamber_temperature.pv", "sample_temperature.pv", "run.complete", "run.remaining"]
        )
    }
    assert readings["run.complete"].value is True and readings["run.remaining"].value == 0
    chamber, sample = readings["chamber_temperature.pv"], readings["sample_temperature.pv"]
    assert chamber.unit == sample.unit == "degC"
    assert chamber.value == pytest.approx(-20.0, abs=1.0)
    assert isinstance(sample.value, float) and chamber.value < sample.value < 4.0
    await device.call("reset", {})
    assert (await device.read(["state"]))[0].value == "idle"


async def test_refusals_are_write_rejected(pool: DevicePool) -> None:
    # 55 simulated minutes of CAR-T program last ~5 s at 600×: no race with the checks.
    async with FreezerServer(time_scale=600.0) as server:
        device = pool.open("CRF-01", PROFILE, server.endpoint, {})
        await device.connect()
        with pytest.raises(WriteRejected, match="exception 3"):
            await device.write("program.selected", 9)  # no such program
        await device.call("start_program", {"program": 1})
        assert (await device.read(["state"]))[0].value == "running"
        with pytest.raises(WriteRejected, match="exception 3"):
            await device.call("start_program", {"program": 1})  # start while running
        with pytest.raises(WriteRejected, match="exception 3"):
            await device.write("program.selected", 2)  # select while running
        with pytest.raises(WriteRejected, match="read-only"):
            await device.write("chamber_temperature.pv", -50.0)  # read-only capability
        conn = device.backend.connection  # type: ignore[attr-defined]
        with pytest.raises(WriteRejected, match="exception 2"):
            await conn.write("hr", 100, [1], 1)  # model id: read-only register on the wire
        with pytest.raises(WriteRejected, match="exception 2"):
            await conn.write("hr", 2, [0], 1)  # unmapped holding register
        server.raise_alarm(5)  # published on the next 10 ms update
        deadline = time.monotonic() + 5.0
        while not (await device.read(["alarm.active"]))[0].value:
            assert time.monotonic() < deadline, "alarm not published"
            await asyncio.sleep(0.01)
        values = {r.capability: r.value for r in await device.read(["state", "alarm.code"])}
        assert values == {"state": "alarm", "alarm.code": 5}
        await device.call("reset", {})
        values = {r.capability: r.value for r in await device.read(["state", "alarm.active"])}
        assert values == {"state": "idle", "alarm.active": False}


async def test_the_same_profile_over_modbus_rtu_on_a_pty(tmp_path: Path) -> None:
    link = tmp_path / "crf-rtu"
    async with FreezerServer(url=f"modbus+rtu://{link}", time_scale=SCALE) as rtu:
        assert rtu.endpoint.startswith("modbus+rtu:///dev/pts/")
        pool = DevicePool(timeout=1.0)
        try:
            device = pool.open("CRF-RTU", PROFILE, f"modbus+rtu://{link}", {})
            await device.connect()
            assert await device.write("program.selected", 2) == 2
            values = {r.capability: r.value for r in await device.read(["state", "segment"])}
            assert values == {"state": "idle", "segment": 0}
        finally:
            await pool.close()
    assert not link.exists()


async def test_serial_number_from_the_plant_spec_read_as_a_modbus_string(
    pool: DevicePool,
) -> None:
    from simulators.launch import start_simulators

    sims = await start_simulators(
        [
            {"name": "f1", "kind": "modbus-freezer", "listen": "modbus+tcp://127.0.0.1:0",
             "serial": "CRF-2026-0042"},
            {"name": "f2", "kind": "modbus-freezer", "listen": "modbus+tcp://127.0.0.1:0"},
        ],
        SCALE,
    )  # fmt: skip
    try:
        found = []
        for name in ("f1", "f2"):
            device = pool.open(name, PROFILE, sims.endpoints[name], {})
            await device.connect()
            found += [r.value for r in await device.read(["device.serial", "device.firmware"])]
            with pytest.raises(WriteRejected, match="read-only"):
                await device.write("device.serial", "X")
        assert found == ["CRF-2026-0042", pytest.approx(1.0), "", pytest.approx(1.0)]
    finally:
        await sims.stop()
    with pytest.raises(ValueError, match="at most 16"):
        await start_simulators(
            [{"name": "f", "kind": "modbus-freezer", "listen": "modbus+tcp://127.0.0.1:0",
              "serial": "S" * 17}],
            SCALE,
        )  # fmt: skip
