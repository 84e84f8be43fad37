"""Instruments that restart, seen through the driver: a Modbus instrument power-cycled by
the ``restart`` fault or killed and started again as a process comes back on the same
port in its power-on state and the driver reconnects by itself. (The OPC UA server's
start time telling a restart: tests/controller/test_instrument_restart.py.)"""

from __future__ import annotations

import asyncio
import subprocess
import sys
import time
from collections.abc import Callable

import pytest

from drivers import Device, DevicePool, DriverError, Quality
from drivers.link import ConnectionStatus, LinkPolicy
from simulators.centrifuge.modbus_server import CellProcessorServer
from simulators.faults import FaultError
from tests.e2e.conftest import ROOT

POLICY = LinkPolicy(
    blip_s=0.2, fail_after_s=30.0, backoff_initial_s=0.05, backoff_max_s=0.2, attempt_timeout_s=1.0
)
LIMIT_S = 10.0  # bound on every wait


async def until(what: str, check: Callable[[], bool]) -> None:
    """Wait (bounded) until ``check()`` is true."""
    deadline = time.monotonic() + LIMIT_S
    while not check():
        assert time.monotonic() < deadline, f"not {what} within {LIMIT_S} s"
        await asyncio.sleep(0.02)


async def read_until_error(device: Device, cap: str = "state") -> None:
    """Poll the instrument (as the sampler does) until a read fails (bounded)."""
    deadline = time.monotonic() + LIMIT_S
    while True:
        try:
            await device.read([cap])
        except DriverError:
            return
        assert time.monotonic() < deadline, "the instrument never went away"
        await asyncio.sleep(0.02)


async def read_when_back(device: Device, caps: list[str]) -> list[object]:
    """The readings of ``caps`` once the instrument answers again (bounded)."""
    deadline = time.monotonic() + LIMIT_S
    while True:
        try:
            readings = await device.read(caps)
            if all(r.quality is Quality.GOOD for r in readings):
                return [r.value for r in readings]
        except DriverError:
            pass
        assert time.monotonic() < deadline, "the instrument did not come back"
        await asyncio.sleep(0.05)


async def test_modbus_restart_fault_comes_back_in_power_on_state() -> None:
    server = CellProcessorServer(time_scale=100.0)
    await server.start()
    pool = DevicePool(timeout=0.5, link=POLICY)
    try:
        endpoint = server.endpoint
        device = pool.open("CP", "cell_processor_modbus", endpoint, {})
        await device.connect()
        statuses: list[ConnectionStatus] = []
        device.watch_status(statuses.append)
        await device.write("input_volume.sp", 300.0)
        await device.write("final_volume.sp", 40.0)
        await device.call("start_program", {"program": 2})
        assert await read_when_back(device, ["state", "program.active"]) == ["running", 2]
        server.faults.inject("restart", downtime_s=0.5)
        await read_until_error(device)
        back = await read_when_back(
            device, ["input_volume.sp", "final_volume.sp", "program.selected", "state"]
        )
        assert back == [500.0, 50.0, 1, "idle"]  # defaults: the run and setpoints are lost
        await until("connected", lambda: device.connection_status is ConnectionStatus.CONNECTED)
        assert server.restarts == 1 and server.endpoint == endpoint
        assert not server.faults.faults  # the fault cleared itself
        assert ConnectionStatus.RECONNECTING in statuses  # the outage was longer than a blip
        await device.write("input_volume.sp", 300.0)  # and it obeys again
        assert device.instrument_started is None  # Modbus has no start time: read-back tells
    finally:
        await pool.close()
        await server.stop()


def test_restart_is_a_tcp_fault_only() -> None:
    rtu = CellProcessorServer(url="modbus+rtu://")
    with pytest.raises(FaultError, match="cannot show 'restart'"):
        rtu.faults.validate("restart", {})


def serve_processor(port: int) -> tuple[subprocess.Popen[str], str]:
    """A cell processor simulator in a process of its own; (process, endpoint)."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "simulators.centrifuge", "--port", str(port)],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    line = proc.stdout.readline().split()
    assert line[:1] == ["serving"], line
    return proc, line[1]


async def test_modbus_driver_reconnects_to_a_restarted_process() -> None:
    proc, endpoint = serve_processor(0)
    port = int(endpoint.rsplit(":", 1)[1])
    pool = DevicePool(timeout=0.5, link=POLICY)
    try:
        device = pool.open("CP", "cell_processor_modbus", endpoint, {})
        await device.connect()
        await device.write("input_volume.sp", 250.0)
        proc.kill()
        proc.wait(10)
        await read_until_error(device)
        await until("seen down", lambda: device.connection_status is not ConnectionStatus.CONNECTED)
        proc, again = serve_processor(port)
        assert again == endpoint
        assert await read_when_back(device, ["input_volume.sp", "state"]) == [500.0, "idle"]
        await until("connected", lambda: device.connection_status is ConnectionStatus.CONNECTED)
    finally:
        await pool.close()
        proc.kill()
        proc.wait(10)
