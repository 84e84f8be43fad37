"""Modbus status words as the field has them: sparse named states, single bits, and
derived boolean capabilities — against the cell processor simulator on a real socket."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import pytest_asyncio

from drivers import DevicePool, Reading, WriteRejected
from simulators.centrifuge.modbus_server import CellProcessorServer

PROFILE = """
[profile]
name = "status_words"
equipment_class = "cell_processor"
protocol = "modbus"
word_order = "little"
poll_interval_s = 0.05

[tags]
"program.bit0" = { address = "hr:0", type = "uint16", bit = 0 }
"program.bit1" = { address = "hr:0", type = "uint16", bit = 1 }
"is_harvest"   = { from = "program", equals = "harvest" }
"run.idle"     = { from = "state", equals = "idle" }
"run.ended"    = { from = "state", in = ["complete", "alarm"] }
"raw_program"  = { address = "hr:0", type = "uint16", writable = true }

[tags.program]
address = "hr:0"
type = "uint16"
writable = true
verify = true
states = { 1 = "wash", 3 = "harvest" }

[tags.state]
address = "ir:0"
type = "uint16"
states = { 0 = "idle", 1 = "running", 2 = "complete", 9 = "alarm" }
"""


@pytest_asyncio.fixture
async def device(tmp_path: Path) -> AsyncIterator[object]:
    profile = tmp_path / "status_words.toml"
    profile.write_text(PROFILE, encoding="utf-8")
    async with CellProcessorServer(time_scale=100.0) as server:
        pool = DevicePool(timeout=1.0)
        dev = pool.open("CP", profile, server.endpoint, {})
        await dev.connect()
        try:
            yield dev
        finally:
            await pool.close()


@pytest.mark.asyncio(loop_scope="function")
async def test_states_bits_and_derived_capabilities(device: object) -> None:
    from drivers import Device

    assert isinstance(device, Device)
    assert await device.write("program", "harvest") == "harvest"  # name → code 3
    values = {
        r.capability: r.value
        for r in await device.read(
            [
                "program",
                "program.bit0",
                "program.bit1",
                "is_harvest",
                "raw_program",
                "state",
                "run.idle",
                "run.ended",
            ]
        )
    }
    assert values == {
        "program": "harvest",
        "program.bit0": True,
        "program.bit1": True,
        "is_harvest": True,
        "raw_program": 3,
        "state": "idle",
        "run.idle": True,
        "run.ended": False,
    }
    await device.write("raw_program", 2)  # a code the profile does not name
    program, bit0, bit1, harvest = await device.read(
        ["program", "program.bit0", "program.bit1", "is_harvest"]
    )
    assert (program.value, bit0.value, bit1.value, harvest.value) == (
        "unknown(2)",
        False,
        True,
        False,
    )
    with pytest.raises(WriteRejected, match="not one of"):
        await device.write("program", "concentrate")
    with pytest.raises(WriteRejected):
        await device.write("is_harvest", True)  # derived: read-only


@pytest.mark.asyncio(loop_scope="function")
async def test_a_derived_capability_is_notified_with_its_source(device: object) -> None:
    from drivers import Device

    assert isinstance(device, Device)
    got: list[Reading] = []
    cancel = await device.subscribe(["is_harvest"], got.append)
    try:
        await device.write("program", "wash")
        for _ in range(200):  # bounded: polled every 50 ms
            if any(r.value is False for r in got):
                break
            await asyncio.sleep(0.02)
        await device.write("program", "harvest")
        for _ in range(200):
            if got and got[-1].value is True:
                break
            await asyncio.sleep(0.02)
    finally:
        await cancel()
    assert {r.capability for r in got} == {"is_harvest"}, "the source itself is not delivered"
    assert [r.value for r in got][-1] is True and False in [r.value for r in got]
