"""The Modbus driver against the cell processor simulator over a real socket."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Sequence
from pathlib import Path
from urllib.parse import urlsplit

import pytest
import pytest_asyncio
from hypothesis import given
from hypothesis import strategies as st

from drivers import (
    DevicePool,
    Disconnected,
    DriverTimeout,
    ProfileError,
    ProtocolError,
    Quality,
    Reading,
    WriteRejected,
)
from drivers.modbus import ModbusConnection, Point, ReadRequest, decode, encode
from drivers.profile import PROFILE_DIR
from simulators.centrifuge.modbus_server import CellProcessorServer

SCALE = 6000.0
PROFILE = "cell_processor_modbus"


@pytest_asyncio.fixture
async def server() -> AsyncIterator[CellProcessorServer]:
    async with CellProcessorServer(time_scale=SCALE) as srv:
        yield srv


@pytest_asyncio.fixture
async def pool() -> AsyncIterator[DevicePool]:
    pool = DevicePool(timeout=1.0)
    yield pool
    await pool.close()


@pytest.mark.parametrize("data_type", ["int16", "uint16", "int32", "uint32", "float32"])
@pytest.mark.parametrize("byte_order", ["big", "little"])
@pytest.mark.parametrize("word_order", ["big", "little"])
def test_encode_decode_round_trip(data_type: str, byte_order: str, word_order: str) -> None:
    value = {"int16": -1234, "uint16": 54321, "int32": -123456789, "uint32": 3_000_000_000}.get(
        data_type, 1234.5
    )
    regs = encode(value, data_type, byte_order, word_order)  # type: ignore[arg-type]
    assert decode(regs, data_type, byte_order, word_order) == value  # type: ignore[arg-type]


@given(
    st.floats(width=32, allow_nan=False),
    st.sampled_from(["big", "little"]),
    st.sampled_from(["big", "little"]),
)
def test_float32_round_trips_in_every_order(value: float, byte_order: str, word_order: str) -> None:
    regs = encode(value, "float32", byte_order, word_order)  # type: ignore[arg-type]
    assert len(regs) == 2 and all(0 <= r <= 0xFFFF for r in regs)
    assert decode(regs, "float32", byte_order, word_order) == value  # type: ignore[arg-type]


def test_word_and_byte_order_layout() -> None:
    assert encode(0x11223344, "uint32", "big", "big") == [0x1122, 0x3344]
    assert encode(0x11223344, "uint32", "big", "little") == [0x3344, 0x1122]
    assert encode(0x11223344, "uint32", "little", "big") == [0x2211, 0x4433]
    with pytest.raises(WriteRejected):
        encode(70000, "uint16", "big", "big")
    with pytest.raises(ProfileError):
        Point.parse("xx:1", "uint16")
    with pytest.raises(ProfileError):
        Point.parse("co:1", "float32")


async def test_register_map_reads_typed_and_scaled(
    pool: DevicePool, server: CellProcessorServer
) -> None:
    device = pool.open("CP-01", PROFILE, server.endpoint, {})
    await device.connect()
    caps = ["state", "phase", "program.selected", "input_volume.sp", "final_volume.sp"]
    caps += ["chamber.temperature", "device.firmware", "run.running", "alarm.active"]
    values = {r.capability: r.value for r in await device.read(caps)}
    assert values == {
        "state": "idle",
        "phase": "none",
        "program.selected": 1,
        "input_volume.sp": 500.0,
        "final_volume.sp": 50.0,
        "chamber.temperature": pytest.approx(22.1),
        "device.firmware": pytest.approx(1.02),
        "run.running": False,
        "alarm.active": False,
    }


async def test_contiguous_registers_are_read_in_one_request(
    pool: DevicePool, server: CellProcessorServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    device = pool.open("CP-01", PROFILE, server.endpoint, {})
    await device.connect()
    calls: list[tuple[str, int, int]] = []
    original = ModbusConnection.send

    async def counting(self: ModbusConnection, request: ReadRequest) -> Sequence[int]:
        calls.append((request.table, request.address, request.count))
        return await original(self, request)

    monkeypatch.setattr(ModbusConnection, "send", counting)
    caps = ["state", "phase", "processed_volume.pv", "output_volume.pv", "cell_recovery.pv"]
    caps += ["run.elapsed", "run.remaining", "rotor.speed", "chamber.temperature"]
    await device.read([*caps, "run.running", "run.complete", "program.selected"])
    assert sorted(calls) == [("di", 0, 2), ("hr", 0, 1), ("ir", 0, 16)]


async def test_verified_setpoint_writes_and_refusals(
    pool: DevicePool, server: CellProcessorServer
) -> None:
    device = pool.open("CP-01", PROFILE, server.endpoint, {})
    await device.connect()
    assert await device.write("input_volume.sp", 250.0) == 250.0
    assert server.model.input_volume_sp == 250.0
    with pytest.raises(WriteRejected, match="exception 3"):
        await device.write("input_volume.sp", 5000.0)
    with pytest.raises(WriteRejected, match="exception 3"):
        await device.write("program.selected", 9)
    with pytest.raises(WriteRejected, match="read-only"):
        await device.write("state", "running")
    conn = device.backend.connection  # type: ignore[attr-defined]
    with pytest.raises(WriteRejected, match="exception 2"):
        await conn.write("hr", 100, [1], 1)  # model id: read-only register
    with pytest.raises(ProtocolError, match="exception 2"):
        await conn.read("hr", 50, 1, 1)  # unmapped register


async def test_program_runs_to_complete(pool: DevicePool, server: CellProcessorServer) -> None:
    device = pool.open("CP-01", PROFILE, server.endpoint, {})
    await device.connect()
    await device.write("final_volume.sp", 30.0)
    await device.call("start_program", {"program": 2})
    (state,) = await device.read(["state"])
    assert state.value == "running"
    with pytest.raises(WriteRejected, match="exception 3"):
        await device.call("start_program", {"program": 3})  # busy
    deadline = time.monotonic() + 5.0
    while (await device.read(["state"]))[0].value != "complete":
        assert time.monotonic() < deadline, "program did not complete"
        await asyncio.sleep(0.02)
    values = {
        r.capability: r.value
        for r in await device.read(["output_volume.pv", "cell_recovery.pv", "run.complete"])
    }
    assert values == {"output_volume.pv": 30.0, "cell_recovery.pv": 94.0, "run.complete": True}
    await device.call("reset", {})
    assert (await device.read(["state"]))[0].value == "idle"


async def test_alarm_code_and_subscription_by_polling(
    pool: DevicePool, server: CellProcessorServer
) -> None:
    device = pool.open("CP-01", PROFILE, server.endpoint, {})
    await device.connect()
    got: list[Reading] = []
    first = asyncio.Event()
    alarmed = asyncio.Event()

    def sink(reading: Reading) -> None:
        got.append(reading)
        first.set()
        if reading.value == 42:
            alarmed.set()

    device.backend.poll_interval_s = 0.05  # type: ignore[attr-defined]
    cancel = await device.subscribe(["alarm.code"], sink)
    try:
        await asyncio.wait_for(first.wait(), 30.0)  # the quiet value is seen before the alarm
        server.raise_alarm(42)
        await asyncio.wait_for(alarmed.wait(), 30.0)
    finally:
        await cancel()
    assert got[0].value == 0 and got[-1].value == 42
    assert all(r.quality is Quality.GOOD and r.source_time is not None for r in got)
    port = urlsplit(server.endpoint).port
    await server.stop()  # the instrument goes away: polls deliver BAD readings
    qualities: list[Quality] = []
    bad, good_again = asyncio.Event(), asyncio.Event()

    def watch(reading: Reading) -> None:
        qualities.append(reading.quality)
        if reading.quality is Quality.BAD:
            bad.set()
        elif bad.is_set():
            good_again.set()

    cancel = await device.subscribe(["state"], watch)
    try:
        await asyncio.wait_for(bad.wait(), 3.0)
        async with CellProcessorServer(url=f"modbus+tcp://127.0.0.1:{port}", time_scale=SCALE):
            await asyncio.wait_for(good_again.wait(), 3.0)  # reconnected by itself
    finally:
        await cancel()


async def test_nothing_listening_is_disconnected_quickly(pool: DevicePool) -> None:
    device = pool.open("X", PROFILE, "modbus+tcp://127.0.0.1:9", {})
    # A refused connection is a disconnect at once, never a wait for the driver's timeout.
    with pytest.raises(Disconnected):  # not DriverTimeout
        await device.connect()
    with pytest.raises(Disconnected):
        await device.read(["state"])


async def test_silent_peer_times_out() -> None:
    accepted: list[asyncio.StreamWriter] = []

    async def silent(_reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        accepted.append(writer)

    server = await asyncio.start_server(silent, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    pool = DevicePool(timeout=0.3)
    device = pool.open("X", PROFILE, f"modbus+tcp://127.0.0.1:{port}", {})
    try:
        await device.connect()
        started = time.monotonic()
        with pytest.raises(DriverTimeout, match=r"no answer in 0\.3 s"):
            await device.read(["state"])
        assert time.monotonic() - started >= 0.3  # waited its own timeout, no retries cut it
    finally:
        await pool.close()
        for w in accepted:
            w.close()
        server.close()
        await server.wait_closed()


async def test_bad_profiles_are_profile_errors(tmp_path: Path, pool: DevicePool) -> None:
    text = (PROFILE_DIR / f"{PROFILE}.toml").read_text()
    bad = tmp_path / "bad.toml"
    bad.write_text(text.replace('word_order = "little"', 'word_order = "middle"'))
    with pytest.raises(ProfileError, match="word_order"):
        pool.open("X", bad, "modbus+tcp://127.0.0.1:9", {})
    with pytest.raises(ProfileError, match="modbus"):
        pool.open("Y", PROFILE, "opc.tcp://127.0.0.1:9", {})


async def test_the_same_profile_over_modbus_rtu_on_a_pty(tmp_path: Path) -> None:
    link = tmp_path / "cp-rtu"
    async with CellProcessorServer(url=f"modbus+rtu://{link}", time_scale=SCALE) as rtu:
        assert rtu.endpoint.startswith("modbus+rtu:///dev/pts/")
        assert link.is_symlink()
        pool = DevicePool(timeout=1.0)
        try:
            device = pool.open("CP-RTU", PROFILE, f"modbus+rtu://{link}", {})
            await device.connect()
            assert await device.write("final_volume.sp", 20.0) == 20.0
            with pytest.raises(WriteRejected, match="exception 3"):
                await device.write("program.selected", 0)
            values = {r.capability: r.value for r in await device.read(["state", "run.running"])}
            assert values == {"state": "idle", "run.running": False}
        finally:
            await pool.close()
    assert not link.exists()
