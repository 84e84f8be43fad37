"""Serial drivers (pump, MT-SICS balance) against the simulators on real ptys."""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
import tty
from collections.abc import AsyncIterator
from pathlib import Path

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
)
from drivers.serial_line import SerialLine
from simulators.clock import ScaledClock
from simulators.launch import start_simulators
from simulators.serial_instruments.balance import BalanceSimulator
from simulators.serial_instruments.bench import Bench
from simulators.serial_instruments.pump import PumpSimulator

SCALE = 120.0  # 1 wall second = 2 simulated minutes
TUBING_ML_PER_REV = 0.8


class Bay:
    """A pump feeding a balance on one shared clock, and a pool with both devices."""

    def __init__(self, pump: PumpSimulator, balance: BalanceSimulator, pool: DevicePool) -> None:
        self.pump_sim, self.balance_sim, self.pool = pump, balance, pool
        self.pump: Device = pool.open("P-01", "peristaltic_pump_serial", pump.endpoint, {})
        self.balance: Device = pool.open("BAL-01", "balance_mtsics", balance.endpoint, {})


@pytest_asyncio.fixture
async def bay() -> AsyncIterator[Bay]:
    clock = ScaledClock(SCALE)
    bench = Bench()
    pump = PumpSimulator(bench, tubing_ml_per_rev=TUBING_ML_PER_REV)
    balance = BalanceSimulator(bench, capacity_g=1000.0)
    await pump.start(clock)
    await balance.start(clock)
    pool = DevicePool(timeout=0.5)
    b = Bay(pump, balance, pool)
    await b.pump.connect()
    await b.balance.connect()
    yield b
    await pool.close()
    await pump.stop()
    await balance.stop()


async def _weight(balance: Device) -> tuple[float, float]:
    """(net weight g, wall-clock s at the middle of the round trip) of one reading."""
    before = time.monotonic()
    reading, stable = await balance.read(["balance.weight", "balance.stable"])
    assert isinstance(reading.value, float) and isinstance(stable.value, bool)
    return reading.value, (before + time.monotonic()) / 2


async def test_pump_flow_raises_the_weight_at_the_expected_rate(bay: Bay) -> None:
    rpm = 50.0
    assert await bay.pump.write("pump.rate_sp", rpm) == rpm
    assert (await bay.pump.read(["pump.running"]))[0].value is False
    (start_weight, _) = await _weight(bay.balance)
    assert start_weight == 0.0
    await bay.pump.call("start", {})
    running = {
        r.capability: r.value for r in await bay.pump.read(["pump.running", "pump.speed_pv"])
    }
    assert running == {"pump.running": True, "pump.speed_pv": rpm}
    w0, t0 = await _weight(bay.balance)
    await asyncio.sleep(0.5)
    w1, t1 = await _weight(bay.balance)
    await bay.pump.call("stop", {})
    rate_g_per_min = (w1 - w0) / ((t1 - t0) * SCALE / 60.0)
    expected = rpm * TUBING_ML_PER_REV * 1.0  # mL/min × 1 g/mL
    assert rate_g_per_min == pytest.approx(expected, rel=0.08)
    (weight,) = await bay.balance.read(["balance.weight"])
    assert weight.quality is Quality.UNCERTAIN  # still settling
    await asyncio.sleep(0.05)  # > 2 simulated s
    reading, stable = await bay.balance.read(["balance.weight_stable", "balance.stable"])
    assert stable.value is True and reading.quality is Quality.GOOD
    assert reading.value == pytest.approx(w1, abs=expected)


async def test_tare_zero_and_serial_number(bay: Bay) -> None:
    bay.balance_sim.bench.add(123.45, bay.balance_sim.clock.elapsed())
    await asyncio.sleep(0.05)  # settle (2 simulated s)
    assert (await bay.balance.read(["balance.weight_stable"]))[0].value == 123.45
    assert await bay.balance.call("tare", {}) == 123.45
    assert (await bay.balance.read(["balance.weight"]))[0].value == 0.0
    await bay.balance.call("zero", {})
    (sn,) = await bay.balance.read(["balance.serial_number"])
    assert sn.value == "B021002593"
    bay.balance_sim.bench.add(5000.0, bay.balance_sim.clock.elapsed())  # overload
    (weight,) = await bay.balance.read(["balance.weight"])
    assert weight.value is None and weight.quality is Quality.BAD
    with pytest.raises(WriteRejected, match="tare refused"):
        await bay.balance.call("tare", {})  # pan still moving


async def test_refusals_and_profile_errors(bay: Bay) -> None:
    with pytest.raises(WriteRejected, match=r"refused 'SP999\.0'"):
        await bay.pump.write("pump.rate_sp", 999.0)
    with pytest.raises(WriteRejected, match="read-only"):
        await bay.pump.write("pump.running", True)
    with pytest.raises(ProfileError, match="no capability"):
        await bay.balance.read(["pump.running"])


async def test_subscription_polls(bay: Bay) -> None:
    got: list[Reading] = []
    enough = asyncio.Event()

    def sink(reading: Reading) -> None:
        got.append(reading)
        if len(got) >= 3:
            enough.set()

    backend = bay.balance.backend
    backend.poll_interval_s = 0.02  # type: ignore[attr-defined]
    cancel = await bay.balance.subscribe(["balance.weight"], sink)
    try:
        await asyncio.wait_for(enough.wait(), 2.0)
    finally:
        await cancel()
    assert all(r.capability == "balance.weight" and r.value == 0.0 for r in got)


@pytest.mark.parametrize(
    ("fault", "error", "message"),
    [
        ("garbage", ProtocolError, "garbage"),
        ("truncated", ProtocolError, "truncated"),
        ("silent", DriverTimeout, r"no answer in 0\.5 s"),  # the pool's own timeout
    ],
)
async def test_line_faults_are_typed_errors_and_the_line_recovers(
    bay: Bay, fault: str, error: type[Exception], message: str
) -> None:
    bay.balance_sim.fault = fault
    with pytest.raises(error, match=message):
        await bay.balance.read(["balance.weight"])
    bay.balance_sim.fault = None
    assert (await bay.balance.read(["balance.weight"]))[0].value == 0.0


async def test_wrong_pump_address_times_out(bay: Bay) -> None:
    other = bay.pool.open(
        "P-09", "peristaltic_pump_serial", bay.pump_sim.endpoint, {"pump_address": "9"}
    )
    with pytest.raises(DriverTimeout):
        await other.read(["pump.running"])


async def test_wrong_framing_gives_garbage(bay: Bay) -> None:
    line = SerialLine(bay.pump_sim.path, framing="8N1", terminator=b"\r", timeout=0.5)
    try:
        with pytest.raises(ProtocolError, match="garbage"):
            await line.request("1ZY")
    finally:
        await line.close()


async def test_missing_port_is_disconnected() -> None:
    pool = DevicePool(timeout=0.5)
    device = pool.open("X", "balance_mtsics", "serial:///dev/pts/no-such-port", {})
    try:
        with pytest.raises(Disconnected):
            await device.connect()
    finally:
        await pool.close()


async def test_garbage_from_a_raw_peer_is_a_protocol_error() -> None:
    """A hand-driven pty: a reply with an unexpected shape is a ProtocolError."""
    master, slave = os.openpty()
    tty.setraw(slave)
    pool = DevicePool(timeout=0.5)
    try:
        device = pool.open("X", "balance_mtsics", f"serial://{os.ttyname(slave)}", {})
        loop = asyncio.get_running_loop()
        os.set_blocking(master, False)

        def answer() -> None:
            with contextlib.suppress(BlockingIOError):
                os.read(master, 100)
                os.write(master, b"S S   12.x g\r\n")

        loop.add_reader(master, answer)
        with pytest.raises(ProtocolError, match="bad weight answer"):
            await device.read(["balance.weight"])
        loop.remove_reader(master)
    finally:
        await pool.close()
        os.close(master)
        os.close(slave)


async def test_plant_style_units_through_launch_and_symlinks(tmp_path: Path) -> None:
    """As a plant file wires them: launch kinds, fixed symlink endpoints, one clock."""
    pump_link, balance_link = tmp_path / "pump-1", tmp_path / "balance-1"
    sims = await start_simulators(
        [
            {"name": "pump-1", "kind": "serial-pump", "listen": f"serial://{pump_link}"},
            {"name": "balance-1", "kind": "serial-balance", "listen": f"serial://{balance_link}"},
        ],
        time_scale=SCALE,
    )
    pool = DevicePool(timeout=0.5)
    try:
        pump = pool.open("P-01", "peristaltic_pump_serial", f"serial://{pump_link}", {})
        balance = pool.open("BAL-01", "balance_mtsics", f"serial://{balance_link}", {})
        await pump.write("pump.rate_sp", 200.0)
        await pump.call("start", {})
        await asyncio.sleep(0.1)  # 12 simulated s at 100 mL/min ≈ 20 g
        (weight,) = await balance.read(["balance.weight"])
        assert isinstance(weight.value, float) and 10.0 < weight.value < 40.0
        await pump.call("stop", {})
    finally:
        await pool.close()
        await sims.stop()
    assert not pump_link.exists() and not balance_link.exists()
