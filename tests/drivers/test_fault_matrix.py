"""Fault matrix: every fault type × every protocol where it applies, over real sockets and ptys.

Each case connects a fresh device with small timeouts, checks normal service,
injects one fault on the simulator, checks the specified driver behaviour (typed
error, bad quality, connection status, values as the faulty sensor reports them)
within a bound, clears the fault and checks normal service comes back (GOOD
readings, status ``connected``) within a bound. The simulators are shared by the
module; every wait is bounded.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import pytest
import pytest_asyncio

from drivers import (
    Device,
    DevicePool,
    Disconnected,
    DriverError,
    DriverTimeout,
    ProtocolError,
    Quality,
    Reading,
    WriteRejected,
)
from drivers.link import ConnectionStatus, LinkPolicy
from simulators.bioreactor.opcua_server import BioreactorServer
from simulators.centrifuge.modbus_server import CellProcessorServer
from simulators.faults import FaultBoard
from simulators.serial_instruments.balance import BalanceSimulator
from simulators.serial_instruments.bench import Bench

TIMEOUT_S = 0.3
POLICY = LinkPolicy(
    blip_s=0.4, fail_after_s=0.8, backoff_initial_s=0.05, backoff_max_s=0.2, attempt_timeout_s=1.0
)
RECOVER_S = 5.0  # bound on getting normal service back after a fault clears
VESSEL = "FM-01"


@dataclass
class Sims:
    """The simulators of the module, by protocol."""

    opcua: BioreactorServer
    tcp: CellProcessorServer
    rtu: CellProcessorServer
    balance: BalanceSimulator

    def server(self, protocol: str) -> Any:
        return {"opcua": self.opcua, "tcp": self.tcp, "rtu": self.rtu, "serial": self.balance}[
            protocol
        ]


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def sims() -> AsyncIterator[Sims]:
    opcua = BioreactorServer([VESSEL], url="opc.tcp://127.0.0.1:0/faults", time_scale=2000.0)
    tcp = CellProcessorServer(time_scale=100.0)
    rtu = CellProcessorServer(url="modbus+rtu://", time_scale=100.0)
    balance = BalanceSimulator(Bench())
    started = []
    try:
        for server in (opcua, tcp, rtu, balance):
            await server.start()
            started.append(server)
        yield Sims(opcua, tcp, rtu, balance)
    finally:
        for server in reversed(started):
            await server.stop()


#: Protocol → (profile, address, a capability to read, a sensor capability, its fault target).
SETUP: dict[str, tuple[str, dict[str, str], str, str, str]] = {
    "opcua": (
        "rocking_bioreactor_opcua",
        {"vessel": VESSEL},
        "temperature.sp",
        "temperature.pv",
        f"{VESSEL}.Temperature.PV",
    ),
    "tcp": ("cell_processor_modbus", {}, "state", "chamber.temperature", "ir:15"),
    "rtu": ("cell_processor_modbus", {}, "state", "chamber.temperature", "ir:15"),
    "serial": ("balance_mtsics", {}, "balance.serial_number", "balance.weight", "weight"),
}


class Probe:
    """One device under test and the status changes it saw."""

    def __init__(self, sims: Sims, protocol: str) -> None:
        self.protocol = protocol
        self.board: FaultBoard = sims.server(protocol).faults
        profile, address, self.cap, self.sensor, self.target = SETUP[protocol]
        self.pool = DevicePool(timeout=TIMEOUT_S, link=POLICY)
        self.device: Device = self.pool.open(
            "DUT", profile, sims.server(protocol).endpoint, address
        )
        self.statuses: list[ConnectionStatus] = []
        self.device.watch_status(self.statuses.append)

    async def read(self, cap: str | None = None) -> Reading:
        (reading,) = await self.device.read([cap or self.cap])
        return reading

    async def sensor_value(self) -> float:
        reading = await self.read(self.sensor)
        assert reading.quality is not Quality.BAD
        assert isinstance(reading.value, float | int)
        return float(reading.value)

    async def until_status(self, wanted: ConnectionStatus, limit_s: float) -> None:
        deadline = time.monotonic() + limit_s
        while self.device.connection_status is not wanted:
            assert time.monotonic() < deadline, f"status stayed {self.device.connection_status}"
            await asyncio.sleep(0.02)

    async def recovered(self) -> None:
        """Normal service: a GOOD reading and status connected, within RECOVER_S."""
        deadline = time.monotonic() + RECOVER_S
        while True:
            try:
                reading = await self.read()
                if (
                    reading.quality is Quality.GOOD
                    and self.device.connection_status is ConnectionStatus.CONNECTED
                ):
                    return
            except DriverError:
                pass
            assert time.monotonic() < deadline, f"no normal service after {RECOVER_S} s"
            await asyncio.sleep(0.05)


async def expect_error(probe: Probe, errors: tuple[type[DriverError], ...]) -> None:
    """A call ends in one of ``errors``: typed, never a hang (the probe's pool timeout is
    short; pytest-timeout catches a hang) nor an untyped exception."""
    with pytest.raises(errors):
        await probe.read()


# -- the checks, one per fault kind -----------------------------------------------------


async def check_refuse(p: Probe) -> None:
    fault = p.board.inject("refuse")
    drop = p.board.inject("drop")  # and cut the open connection, so the driver must reconnect
    try:
        await expect_error(p, (Disconnected, DriverTimeout))
        await p.until_status(ConnectionStatus.FAILED, POLICY.fail_after_s + 1.0)
        await expect_error(p, (Disconnected,))  # refused at once while down
    finally:
        p.board.clear(drop)
        p.board.clear(fault)
    await p.recovered()


async def check_drop_blip(p: Probe) -> None:
    got: list[Reading] = []
    cancel = await p.device.subscribe([p.sensor], got.append)
    try:
        fault = p.board.inject("drop")
        await asyncio.sleep(0.05)
        p.board.clear(fault)
        await p.recovered()
        assert ConnectionStatus.RECONNECTING not in p.statuses, "a short blip flipped the status"
        # Subscriptions (OPC UA) or polls (others) deliver again after the reconnection.
        before = len(got)
        deadline = time.monotonic() + RECOVER_S
        while len(got) <= before or got[-1].quality is not Quality.GOOD:
            assert time.monotonic() < deadline, "no samples after reconnecting"
            await asyncio.sleep(0.05)
    finally:
        await cancel()


async def check_drop_long(p: Probe) -> None:
    tag: list[Reading] = []
    cancel = await p.device.subscribe(["connection.status"], tag.append)
    fault = p.board.inject("drop")
    try:
        await expect_error(p, (Disconnected, DriverTimeout))
        await p.until_status(ConnectionStatus.RECONNECTING, POLICY.blip_s + 1.0)
        await p.until_status(ConnectionStatus.FAILED, POLICY.fail_after_s + 1.0)
        assert p.device.backend.link.attempts >= 2  # kept trying, with backoff
    finally:
        p.board.clear(fault)
    await p.recovered()
    assert p.statuses[-3:] == [
        ConnectionStatus.RECONNECTING,
        ConnectionStatus.FAILED,
        ConnectionStatus.CONNECTED,
    ]
    await cancel()
    # The status tag: its value at once, then every change, always GOOD quality.
    assert [r.value for r in tag] == ["connected", "reconnecting", "failed", "connected"]
    assert {r.quality for r in tag} == {Quality.GOOD}
    status, value = await p.device.read(["connection.status", p.cap])
    assert (status.capability, status.value, value.quality) == (
        "connection.status",
        "connected",
        Quality.GOOD,
    )


async def check_silent(p: Probe) -> None:
    fault = p.board.inject("silent")
    try:
        await expect_error(p, (DriverTimeout, Disconnected))
        await p.until_status(ConnectionStatus.FAILED, POLICY.fail_after_s + 2.0)
    finally:
        p.board.clear(fault)
    await p.recovered()


async def check_slow(p: Probe) -> None:
    delay = TIMEOUT_S / 3
    fault = p.board.inject("slow", delay_s=delay)
    try:
        t0 = time.monotonic()
        reading = await p.read()
        assert time.monotonic() - t0 >= delay * 0.9
        assert reading.quality is Quality.GOOD
        assert p.device.connection_status is ConnectionStatus.CONNECTED
    finally:
        p.board.clear(fault)
    await p.recovered()


async def check_garbage(p: Probe) -> None:
    fault = p.board.inject("garbage")
    try:
        await expect_error(p, (ProtocolError, DriverTimeout, Disconnected))
    finally:
        p.board.clear(fault)
    await p.recovered()


async def check_truncated(p: Probe) -> None:
    fault = p.board.inject("truncated")
    try:
        await expect_error(p, (ProtocolError, DriverTimeout, Disconnected))
    finally:
        p.board.clear(fault)
    await p.recovered()


async def check_bad_crc(p: Probe) -> None:
    fault = p.board.inject("bad_crc")
    try:
        await expect_error(p, (DriverTimeout, ProtocolError))
    finally:
        p.board.clear(fault)
    await p.recovered()


async def check_exception(p: Probe) -> None:
    fault = p.board.inject("exception", code=4, on="read")
    try:
        with pytest.raises(ProtocolError, match="exception 4"):
            await p.read()
        assert p.device.connection_status is ConnectionStatus.CONNECTED  # it did answer
    finally:
        p.board.clear(fault)
    fault = p.board.inject("exception", code=3, on="write")
    try:
        with pytest.raises(WriteRejected, match="exception 3"):
            await p.device.write("input_volume.sp", 100.0)
    finally:
        p.board.clear(fault)
    await p.recovered()


async def check_bad_status(p: Probe) -> None:
    fault = p.board.inject("bad_status", target=p.target, status="BadSensorFailure")
    sp = p.board.inject("bad_status", target=f"{VESSEL}.Temperature.SP", status="BadNotWritable")
    try:
        deadline = time.monotonic() + 2.0
        while (await p.read(p.sensor)).quality is not Quality.BAD:
            assert time.monotonic() < deadline, "no Bad status within 2 s"
            await asyncio.sleep(0.02)
        with pytest.raises(WriteRejected, match="BadNotWritable"):
            await p.device.write("temperature.sp", 37.0)
    finally:
        p.board.clear(fault)
        p.board.clear(sp)
    deadline = time.monotonic() + 2.0
    while (await p.read(p.sensor)).quality is not Quality.GOOD:
        assert time.monotonic() < deadline, "Bad status stayed after clearing"
        await asyncio.sleep(0.02)
    await p.recovered()


async def _settle(p: Probe) -> None:
    """Wait for the faulty value to be published (OPC UA publishes once per model step)."""
    await asyncio.sleep(0.1 if p.protocol == "opcua" else 0.03)


async def check_spike(p: Probe) -> None:
    fault = p.board.inject("spike", target=p.target, value=999.0)
    try:
        await _settle(p)
        assert await p.sensor_value() == pytest.approx(999.0 * (0.1 if "ir:" in p.target else 1))
    finally:
        p.board.clear(fault)
    await _settle(p)
    assert await p.sensor_value() < 500.0
    await p.recovered()


async def check_drift(p: Probe) -> None:
    before = await p.sensor_value()
    fault = p.board.inject("drift", target=p.target, rate=200.0)
    try:
        await asyncio.sleep(0.3)
        drifted = await p.sensor_value()
        scale = 0.1 if "ir:" in p.target else 1.0
        assert drifted - before > 200.0 * 0.15 * scale
    finally:
        p.board.clear(fault)
    await _settle(p)
    assert abs(await p.sensor_value() - before) < 5.0
    await p.recovered()


async def check_noise_and_stuck(p: Probe) -> None:
    # The balance reads underload below -5 g: keep its noise small.
    sigma = 1.0 if p.protocol == "serial" else 100.0
    noise = p.board.inject("noise", target=p.target, sigma=sigma)
    try:
        seen = set()
        for _ in range(5):
            await _settle(p)
            seen.add(round(await p.sensor_value(), 3))
        assert len(seen) >= 3, f"no noise in {seen}"
        stuck = p.board.inject("stuck", target=p.target)
        await _settle(p)
        held = {round(await p.sensor_value(), 3) for _ in range(3)}
        assert len(held) == 1, f"a stuck sensor moved: {held}"
        p.board.clear(stuck)
    finally:
        p.board.clear(noise)
    await p.recovered()


async def check_alarm(p: Probe) -> None:
    fault = p.board.inject("alarm", code=7)
    try:
        if p.protocol == "serial":  # the balance reports overload: BAD quality
            reading = await p.read("balance.weight")
            assert reading.quality is Quality.BAD
        else:
            await _settle(p)
            active, code = await p.device.read(["alarm.active", "alarm.code"])
            assert (active.value, code.value) == (True, 7)
    finally:
        p.board.clear(fault)
    if p.protocol != "serial":  # an instrument alarm stays until the instrument is reset
        await p.device.call("reset", {})
        await _settle(p)
        (active,) = await p.device.read(["alarm.active"])
        assert active.value is False
    await p.recovered()


CHECKS: dict[str, Callable[[Probe], Awaitable[None]]] = {
    "refuse": check_refuse,
    "drop-blip": check_drop_blip,
    "drop-long": check_drop_long,
    "silent": check_silent,
    "slow": check_slow,
    "garbage": check_garbage,
    "truncated": check_truncated,
    "bad_crc": check_bad_crc,
    "exception": check_exception,
    "bad_status": check_bad_status,
    "spike": check_spike,
    "drift": check_drift,
    "noise+stuck": check_noise_and_stuck,
    "alarm": check_alarm,
}

#: Where each fault applies.
MATRIX: dict[str, tuple[str, ...]] = {
    "refuse": ("opcua", "tcp"),
    "drop-blip": ("opcua", "tcp"),
    "drop-long": ("opcua", "tcp"),
    "silent": ("opcua", "tcp", "rtu", "serial"),
    "slow": ("opcua", "tcp", "rtu", "serial"),
    "garbage": ("opcua", "tcp", "rtu", "serial"),
    "truncated": ("opcua", "tcp", "rtu", "serial"),
    "bad_crc": ("rtu",),
    "exception": ("tcp", "rtu"),
    "bad_status": ("opcua",),
    "spike": ("opcua", "tcp", "rtu", "serial"),
    "drift": ("opcua", "tcp", "rtu", "serial"),
    "noise+stuck": ("opcua", "tcp", "rtu", "serial"),
    "alarm": ("tcp", "rtu", "serial"),
}


@pytest.mark.asyncio(loop_scope="module")
@pytest.mark.parametrize(
    ("fault", "protocol"),
    [(fault, protocol) for fault, protocols in MATRIX.items() for protocol in protocols],
)
async def test_fault(sims: Sims, fault: str, protocol: str) -> None:
    probe = Probe(sims, protocol)
    try:
        await asyncio.wait_for(probe.device.connect(), 5.0)
        await probe.recovered()
        await asyncio.wait_for(CHECKS[fault](probe), 20.0)
    finally:
        probe.board.clear()
        await asyncio.wait_for(probe.pool.close(), 5.0)


def test_every_fault_kind_is_in_the_matrix() -> None:
    from simulators.faults import KINDS

    # restart (the instrument comes back with its defaults) is the engine's business:
    # tests/controller/test_instrument_restart.py
    covered = {k.split("-")[0] for k in MATRIX} | {"noise", "stuck", "restart"}
    assert set(KINDS) <= covered
