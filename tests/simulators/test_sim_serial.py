"""Pump and balance simulators on real ptys, spoken to with plain pyserial."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
import pytest_asyncio
import serial

from simulators.clock import ScaledClock
from simulators.launch import start_simulators
from simulators.serial_instruments.balance import BalanceSimulator
from simulators.serial_instruments.bench import Bench
from simulators.serial_instruments.pump import PumpSimulator

SCALE = 60.0


@pytest_asyncio.fixture
async def bench_sims() -> AsyncIterator[tuple[PumpSimulator, BalanceSimulator]]:
    clock = ScaledClock(SCALE)
    bench = Bench()
    pump = PumpSimulator(bench, address=2, tubing_ml_per_rev=0.8)
    balance = BalanceSimulator(bench, capacity_g=20.0)
    await pump.start(clock)
    await balance.start(clock)
    yield pump, balance
    await pump.stop()
    await balance.stop()


def _talk(path: str, framing: str, terminator: bytes, requests: list[str]) -> list[bytes]:
    """A plain blocking pyserial client (run in a thread)."""
    stopbits = serial.STOPBITS_TWO if framing.endswith("2") else serial.STOPBITS_ONE
    with serial.Serial(path, 9600, bytesize=8, parity="N", stopbits=stopbits, timeout=2) as port:
        replies = []
        for request in requests:
            port.write(request.encode("ascii") + terminator)
            replies.append(port.read_until(terminator))
        return replies


async def test_pyserial_gets_a_stable_weight_for_s(
    bench_sims: tuple[PumpSimulator, BalanceSimulator],
) -> None:
    _, balance = bench_sims
    replies = await asyncio.to_thread(
        _talk, balance.path, "8N1", b"\r\n", ["S", "SI", "I4", "T", "Z", "XYZ"]
    )
    assert replies == [
        b"S S       0.00 g\r\n",
        b"S S       0.00 g\r\n",
        b'I4 A "B021002593"\r\n',
        b"T S       0.00 g\r\n",
        b"Z A\r\n",
        b"ES\r\n",
    ]


async def test_pump_commands_and_flow_onto_the_balance(
    bench_sims: tuple[PumpSimulator, BalanceSimulator],
) -> None:
    pump, balance = bench_sims
    replies = await asyncio.to_thread(
        _talk, pump.path, "8N2", b"\r", ["2SP75", "2GO", "2ZY", "2RS", "2RT", "2SP999", "2XX"]
    )
    assert replies == [b"OK\r", b"OK\r", b"1\r", b"520Du 75.0 CW 1 !\r", b"75.0\r", b"?\r", b"?\r"]
    assert pump.flow_ml_per_min == pytest.approx(60.0)  # 75 rpm × 0.8 mL/rev
    weigh = await asyncio.to_thread(_talk, balance.path, "8N1", b"\r\n", ["S", "SI"])
    assert weigh[0] == b"S I\r\n"  # no stable value while liquid flows
    assert weigh[1].startswith(b"S D ")
    await asyncio.sleep(0.5)  # 30 simulated s at 60 mL/min: 30 g > 20 g capacity
    assert await asyncio.to_thread(_talk, balance.path, "8N1", b"\r\n", ["SI"]) == [b"S +\r\n"]
    await asyncio.to_thread(_talk, pump.path, "8N2", b"\r", ["2ST"])


async def test_other_addresses_are_ignored_and_wrong_framing_garbles(
    bench_sims: tuple[PumpSimulator, BalanceSimulator],
) -> None:
    pump, _ = bench_sims

    def other_address() -> bytes:
        with serial.Serial(pump.path, 9600, stopbits=2, timeout=0.3) as port:
            port.write(b"5ZY\r")
            return port.read_until(b"\r")

    assert await asyncio.to_thread(other_address) == b""
    garbled = await asyncio.to_thread(_talk, pump.path, "8N1", b"\r", ["2ZY"])
    assert garbled[0] != b"0\r" and not garbled[0].isascii()


async def test_launch_serial_kinds_share_a_bench(tmp_path: object) -> None:
    link = f"{tmp_path}/pump-link"
    sims = await start_simulators(
        [
            {"name": "pump", "kind": "serial-pump", "listen": f"serial://{link}", "address": 3},
            {"name": "scale", "kind": "serial-balance", "capacity_g": 500},
            {"name": "cp", "kind": "modbus-cell-processor", "listen": "modbus+tcp://127.0.0.1:0"},
        ],
        time_scale=SCALE,
    )
    try:
        eps = sims.endpoints
        assert eps["pump"].startswith("serial:///dev/pts/")
        assert eps["scale"].startswith("serial:///dev/pts/")
        assert eps["cp"].startswith("modbus+tcp://127.0.0.1:") and not eps["cp"].endswith(":0")
        pump, scale = sims.servers["pump"], sims.servers["scale"]
        assert isinstance(pump, PumpSimulator) and isinstance(scale, BalanceSimulator)
        assert pump.bench is scale.bench
        assert await asyncio.to_thread(_talk, link, "8N2", b"\r", ["3ZY"]) == [b"0\r"]
    finally:
        await sims.stop()


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ({"kind": "serial-pump", "address": 17}, "address must be 1–16"),
        ({"kind": "serial-pump", "tubing_ml_per_rev": 0}, "must be positive"),
        ({"kind": "serial-balance", "listen": "tcp://x"}, "serial:///PATH"),
        ({"kind": "serial-balance", "baud": 9600}, "unknown keys 'baud'"),
        ({"kind": "modbus-cell-processor", "listen": "opc.tcp://h:1"}, "not a modbus"),
        ({"kind": "modbus-cell-processor"}, "missing key 'listen'"),
        ({"kind": "modbus-cell-processor", "listen": "modbus+rtu://host/x"}, "modbus\\+rtu://"),
    ],
)
async def test_invalid_specs(spec: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        await start_simulators([{"name": "x", **spec}], time_scale=1.0)
