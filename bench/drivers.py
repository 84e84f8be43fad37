"""Driver throughput vs raw asyncua, raw pymodbus and raw pyserial doing the same work.

The simulators (`simulators.launch.start_simulators`) run in a child process, so the
instruments never share the measured process's CPU time or event loop. OPC UA and
Modbus figures alternate the two sides call by call (READS or WRITES calls each), so
whatever else the machine does slows both alike; the serial port has one reader, so
its two sides run one after the other:

- OPC UA read: the Value (with status and timestamps) of 8 nodes per round trip;
  write: one Double setpoint, then read back and compared (the profile marks
  setpoints `verify`, so the driver does that); subscription: every sample of 8
  nodes (trigger StatusValueTimestamp, 50 ms publishing), both clients subscribed
  at once to the same server for the same seconds.
- Modbus TCP read: input registers 0–15 in one request, decoded (uint16, float32 low
  word first, uint32, scaled int16); write: a float32 holding register, read back.
- Serial read: the balance's MT-SICS `SI` weight, parsed; write: the pump's speed
  setpoint (`1SP…` → `OK`), then its status (`1RS`) read back and compared.
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
import re
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable
from typing import Any

import serial
from asyncua import Client, ua
from pymodbus.client import AsyncModbusTcpClient

from bench.results import Results
from drivers import DevicePool

READS = 1500
WRITES = 600
SERIAL_OPS = 100
SUBSCRIBE_S = 2.0
TIME_SCALE = 30000.0  # a 60 s model step every 2 ms: 4,000 samples/s of 8 nodes to notify
VESSEL = "BR-01"
SPECS = [
    {
        "name": "bioreactors",
        "kind": "opcua-bioreactor",
        "listen": "opc.tcp://127.0.0.1:0/cellbatch/bench",
        "vessels": [VESSEL],
    },
    {"name": "processor", "kind": "modbus-cell-processor", "listen": "modbus+tcp://127.0.0.1:0"},
    {"name": "pump", "kind": "serial-pump"},
    {"name": "balance", "kind": "serial-balance"},
]
OPCUA_PVS = [
    "temperature.pv",
    "ph.pv",
    "do.pv",
    "rocking.rate_pv",
    "volume.pv",
    "culture.viable_density",
    "culture.viability",
    "culture.glucose",
]
OPCUA_NODES = [
    "Temperature.PV",
    "pH.PV",
    "DO.PV",
    "Rocking.RatePV",
    "Volume.PV",
    "Culture.ViableDensity",
    "Culture.Viability",
    "Culture.Glucose",
]
MODBUS_INPUTS = [
    "state",
    "program.active",
    "alarm.code",
    "phase",
    "processed_volume.pv",
    "output_volume.pv",
    "cell_recovery.pv",
    "run.elapsed",
    "run.remaining",
    "rotor.speed",
    "chamber.temperature",
]
_WEIGHT = re.compile(rb"S ([SD]) +(-?\d+(?:\.\d+)?) g\r\n")
_PUMP_STATUS = re.compile(rb"\S+ (\d+(?:\.\d+)?) (CW|CCW) ([01]) !\r")

Timed = Callable[[], Awaitable[None]]


# -- the simulators, in a child process ---------------------------------------------


async def _serve() -> None:
    """Child process: start SPECS, print the endpoints as JSON, serve until stdin closes."""
    from simulators.launch import start_simulators

    # The instruments' own log lines (e.g. a session closing with a publish pending)
    # are not bench output.
    logging.getLogger("asyncua").setLevel(logging.CRITICAL)
    running = await start_simulators(SPECS, TIME_SCALE)
    try:
        print(json.dumps(running.endpoints), flush=True)
        await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)
    finally:
        await running.stop()


def _start_child() -> tuple[subprocess.Popen[str], dict[str, str]]:
    child = subprocess.Popen(
        [sys.executable, "-m", "bench.drivers", "serve"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert child.stdout is not None
    line = child.stdout.readline()
    if not line:
        child.kill()
        raise RuntimeError("the simulator process did not start")
    return child, json.loads(line)


# -- timing helpers -----------------------------------------------------------------


async def _rate(op: Timed, count: int) -> float:
    """Operations per second of `count` sequential calls of `op`."""
    await op()  # warm up (connections, caches)
    t0 = time.perf_counter()
    for _ in range(count):
        await op()
    return count / (time.perf_counter() - t0)


async def _side_by_side(ours: Timed, raw: Timed, count: int) -> tuple[float, float]:
    """Rates of both sides over `count` calls each, alternating call by call (which
    side goes first alternates too), so drift of a shared machine hits both alike."""
    await ours()  # warm up (connections, caches)
    await raw()
    spent = {ours: 0.0, raw: 0.0}
    for n in range(count):
        for op in (ours, raw) if n % 2 else (raw, ours):
            t0 = time.perf_counter()
            await op()
            spent[op] += time.perf_counter() - t0
    return count / spent[ours], count / spent[raw]


# -- OPC UA -------------------------------------------------------------------------


def _monitor_requests(nodes: list[Any]) -> list[ua.MonitoredItemCreateRequest]:
    """Monitored items reporting every sample (what the driver asks for)."""
    every_sample = ua.DataChangeFilter(Trigger=ua.DataChangeTrigger.StatusValueTimestamp)
    return [
        ua.MonitoredItemCreateRequest(
            ItemToMonitor=ua.ReadValueId(NodeId=node.nodeid, AttributeId=ua.AttributeIds.Value),
            MonitoringMode=ua.MonitoringMode.Reporting,
            RequestedParameters=ua.MonitoringParameters(
                ClientHandle=ua.UInt32(handle),
                SamplingInterval=ua.Double(0.0),
                Filter=every_sample,
                QueueSize=ua.UInt32(10_000),
                DiscardOldest=True,
            ),
        )
        for handle, node in enumerate(nodes, start=1)
    ]


class _Counter:
    """A raw asyncua subscription handler that counts notifications."""

    def __init__(self) -> None:
        self.count = 0

    def datachange_notification(self, node: Any, value: Any, data: Any) -> None:
        self.count += 1


async def _opcua(results: Results, url: str) -> None:
    pool = DevicePool()
    device = pool.open("BR", "rocking_bioreactor_opcua", url, {"vessel": VESSEL})
    await device.connect()
    client = Client(url, timeout=5)
    await client.connect()
    try:
        ns = await client.get_namespace_index("urn:cellbatch:simulators:bioreactor")
        nodes = [client.get_node(ua.NodeId(f"{VESSEL}.{n}", ns)) for n in OPCUA_NODES]
        setpoint = ua.NodeId(f"{VESSEL}.Temperature.SP", ns)
        sp_node = client.get_node(setpoint)

        async def driver_read() -> None:
            readings = await device.read(OPCUA_PVS)
            assert len(readings) == len(OPCUA_PVS)

        async def raw_read() -> None:
            values = await client.read_attributes(nodes)
            assert all(dv.StatusCode.is_good() for dv in values)

        ours, raw = await _side_by_side(driver_read, raw_read, READS)
        _add(results, "OPC UA read (8 nodes)", ours, raw, "asyncua read_attributes", "reads/s")

        values = iter(37.0 + (i % 10) / 10 for i in range(10**6))

        async def driver_write() -> None:
            await device.write("temperature.sp", next(values))

        async def raw_write() -> None:
            value = next(values)
            dv = ua.DataValue(ua.Variant(value, ua.VariantType.Double))
            (status,) = await client.uaclient.write_attributes(
                [setpoint], [dv], ua.AttributeIds.Value
            )
            assert status.is_good()
            (back,) = await client.read_attributes([sp_node])
            assert back.Value.Value == value

        ours, raw = await _side_by_side(driver_write, raw_write, WRITES)
        _add(results, "OPC UA verified write", ours, raw, "asyncua write + read back", "writes/s")

        got = [0]
        cancel = await device.subscribe(OPCUA_PVS, lambda *_: got.__setitem__(0, got[0] + 1))
        counter = _Counter()
        sub = await client.create_subscription(50, counter)
        await sub.create_monitored_items(_monitor_requests(nodes))
        await asyncio.sleep(0.5)  # both streams running
        ours0, raw0 = got[0], counter.count
        await asyncio.sleep(SUBSCRIBE_S)
        ours_n, raw_n = got[0] - ours0, counter.count - raw0
        await cancel()
        await sub.delete()
        _add(
            results,
            "OPC UA subscription (8 nodes, every sample)",
            ours_n / SUBSCRIBE_S,
            raw_n / SUBSCRIBE_S,
            "asyncua subscription, same time",
            "notifications/s",
        )
    finally:
        await client.disconnect()
        await pool.close()


# -- Modbus -------------------------------------------------------------------------


async def _modbus(results: Results, endpoint: str) -> None:
    pool = DevicePool()
    device = pool.open("CP", "cell_processor_modbus", endpoint, {})
    await device.connect()
    host, port = endpoint.removeprefix("modbus+tcp://").rsplit(":", 1)
    client = AsyncModbusTcpClient(host, port=int(port), timeout=5)
    await client.connect()
    dt = client.DATATYPE
    try:

        async def driver_read() -> None:
            readings = await device.read(MODBUS_INPUTS)
            assert len(readings) == len(MODBUS_INPUTS)

        async def raw_read() -> None:
            rr = await client.read_input_registers(0, count=16, device_id=1)
            assert not rr.isError()
            r = rr.registers
            words = "little"
            decoded = [
                r[0],
                r[1],
                r[2],
                r[3],
                *(
                    client.convert_from_registers(r[i : i + 2], dt.FLOAT32, word_order=words)
                    for i in (4, 6, 8)
                ),
                *(
                    client.convert_from_registers(r[i : i + 2], dt.UINT32, word_order=words)
                    for i in (10, 12)
                ),
                r[14],
                client.convert_from_registers([r[15]], dt.INT16) * 0.1,  # type: ignore[operator]
            ]
            assert len(decoded) == len(MODBUS_INPUTS)

        ours, raw = await _side_by_side(driver_read, raw_read, READS)
        _add(results, "Modbus TCP read (16 registers, 11 tags)", ours, raw, "pymodbus", "reads/s")

        values = iter(100.0 + i % 50 for i in range(10**6))

        async def driver_write() -> None:
            await device.write("input_volume.sp", next(values))

        async def raw_write() -> None:
            value = next(values)
            regs = client.convert_to_registers(value, dt.FLOAT32, word_order="little")
            wr = await client.write_registers(2, regs, device_id=1)
            assert not wr.isError()
            rr = await client.read_holding_registers(2, count=2, device_id=1)
            back = client.convert_from_registers(rr.registers, dt.FLOAT32, word_order="little")
            assert math.isclose(back, value)  # type: ignore[arg-type]

        ours, raw = await _side_by_side(driver_write, raw_write, WRITES)
        _add(
            results,
            "Modbus TCP verified write",
            ours,
            raw,
            "pymodbus write + read back",
            "writes/s",
        )
    finally:
        client.close()
        await pool.close()


# -- serial -------------------------------------------------------------------------


async def _serial(results: Results, pump_url: str, balance_url: str) -> None:
    pool = DevicePool()
    balance = pool.open("BAL", "balance_mtsics", balance_url, {})
    pump = pool.open("PUMP", "peristaltic_pump_serial", pump_url, {})
    await balance.connect()
    await pump.connect()
    # The driver's line keeps the port open; the raw side opens its own after the
    # driver's rounds (a pty has one reader), so the rounds cannot alternate here.
    try:

        async def driver_read() -> None:
            (reading,) = await balance.read(["balance.weight"])
            assert reading.value is not None

        values = iter(10.0 + i % 40 for i in range(10**6))

        async def driver_write() -> None:
            await pump.write("pump.rate_sp", next(values))

        ours_read = await _rate(driver_read, SERIAL_OPS)
        ours_write = await _rate(driver_write, SERIAL_OPS)
    finally:
        await pool.close()

    def raw_read(port: serial.Serial) -> None:
        port.write(b"SI\r\n")
        m = _WEIGHT.fullmatch(port.read_until(b"\r\n"))
        assert m is not None and float(m[2]) >= -1e9

    def raw_write(port: serial.Serial) -> None:
        value = next(values)
        port.write(f"1SP{value:.1f}\r".encode())
        assert port.read_until(b"\r") == b"OK\r"
        port.write(b"1RS\r")
        m = _PUMP_STATUS.fullmatch(port.read_until(b"\r"))
        assert m is not None and float(m[1]) == value

    def raw_rate(path: str, op: Callable[[serial.Serial], None], **settings: Any) -> float:
        with serial.Serial(path, 9600, timeout=5, **settings) as port:
            op(port)
            t0 = time.perf_counter()
            for _ in range(SERIAL_OPS):
                op(port)
            return SERIAL_OPS / (time.perf_counter() - t0)

    balance_path = balance_url.removeprefix("serial://")
    pump_path = pump_url.removeprefix("serial://")
    raw_r = await asyncio.to_thread(raw_rate, balance_path, raw_read)
    raw_w = await asyncio.to_thread(raw_rate, pump_path, raw_write, stopbits=2)
    _add(results, "serial read (balance SI)", ours_read, raw_r, "pyserial", "reads/s")
    _add(results, "serial verified write (pump SP)", ours_write, raw_w, "pyserial", "writes/s")


# -- entry points -------------------------------------------------------------------


def _add(results: Results, name: str, ours: float, raw: float, how: str, unit: str) -> None:
    results.add(f"driver {name}", ours, unit, baseline=f"raw {how}", baseline_value=raw)


async def _measure(results: Results, endpoints: dict[str, str]) -> None:
    await _opcua(results, endpoints["bioreactors"])
    await _modbus(results, endpoints["processor"])
    await _serial(results, endpoints["pump"], endpoints["balance"])


def run(results: Results) -> None:
    """Driver read, write and subscription throughput side by side with the raw libraries."""
    child, endpoints = _start_child()
    try:
        asyncio.run(_measure(results, endpoints))
    finally:
        assert child.stdin is not None
        child.stdin.close()
        try:
            child.wait(15)
        except subprocess.TimeoutExpired:
            child.kill()
            child.wait(5)


if __name__ == "__main__" and sys.argv[1:] == ["serve"]:
    asyncio.run(_serve())
