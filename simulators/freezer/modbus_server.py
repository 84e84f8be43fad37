"""Modbus server publishing a simulated controlled-rate freezer.

Modbus TCP on a real socket (``modbus+tcp://HOST:PORT``) or Modbus RTU on a
pseudo-terminal (``modbus+rtu://``; clients open ``modbus+rtu:///dev/pts/N``).

Register map (device id 1, zero-based PDU addresses; mbpoll's reference = address + 1):
see ``simulators/README.md``. Conventions are the cell processor's: 32-bit values are
big-endian within each register and **low word first** (word order "little",
mbpoll's default for ``-t 3:float``); command register and run/reset coils
self-clear; the state codes are the same.

Client writes pass through :meth:`FreezerServer._action`, which refuses an unknown
program or command, or a command the machine cannot accept now, with exception 3;
pymodbus itself answers exception 2 for read-only or unmapped addresses.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
from pathlib import Path
from types import TracebackType
from typing import Final, cast
from urllib.parse import urlsplit

from pymodbus.constants import ExcCodes
from pymodbus.framer import FramerType
from pymodbus.server import ModbusSerialServer, ModbusTcpServer
from pymodbus.simulator import DataType, SimData, SimDevice

from simulators.centrifuge.modbus_server import float_regs, quiet_pymodbus_logging, uint32_regs
from simulators.clock import ScaledClock
from simulators.freezer.model import CommandRefused, FreezerModel, State
from simulators.serial_instruments.pty_port import PtyBridge, make_link, remove_link

__all__ = ["DEFAULT_URL", "DEVICE_ID", "FreezerServer"]

DEFAULT_URL: Final = "modbus+tcp://127.0.0.1:0"
DEVICE_ID: Final = 1
MODEL_ID: Final = 4100
FIRMWARE: Final = 100  # 1.00
_IDLE_S: Final = 0.01  # update period (wall clock)

# Function codes (block chosen by pymodbus from the code).
_FC_COIL, _FC_DI, _FC_HR, _FC_IR = 5, 2, 16, 4
_CLIENT_WRITES: Final = frozenset({5, 6, 15, 16, 22, 23})

# Holding registers
HR_PROGRAM, HR_COMMAND = 0, 1
HR_MODEL, HR_FIRMWARE = 100, 101
HR_COUNT: Final = 2
CMD_NONE, CMD_START, CMD_STOP, CMD_RESET = 0, 1, 2, 3
# Input registers
IR_STATE, IR_PROGRAM, IR_ALARM, IR_SEGMENT = 0, 1, 2, 3
IR_CHAMBER, IR_SAMPLE, IR_SETPOINT, IR_ELAPSED, IR_REMAINING = 4, 6, 8, 10, 12
IR_SEGMENTS = 14
IR_COUNT: Final = 15
# Coils and discrete inputs
CO_RUN, CO_RESET = 0, 1
DI_RUNNING, DI_COMPLETE, DI_ALARM, DI_LN2 = 0, 1, 2, 3

_log = logging.getLogger(__name__)


class FreezerServer:
    """A real Modbus TCP (or RTU) server around one :class:`FreezerModel`."""

    def __init__(self, *, url: str = DEFAULT_URL, time_scale: float = 1.0) -> None:
        parts = urlsplit(url)
        self._rtu = parts.scheme == "modbus+rtu"
        if self._rtu:
            if parts.netloc:
                raise ValueError(
                    f"a modbus+rtu URL is modbus+rtu:// or modbus+rtu:///PATH: {url!r}"
                )
        elif parts.scheme != "modbus+tcp" or not parts.hostname:
            raise ValueError(f"not a modbus+tcp or modbus+rtu URL: {url!r}")
        if not (math.isfinite(time_scale) and time_scale > 0.0):
            raise ValueError(f"time scale must be positive, got {time_scale!r}")
        self._host = parts.hostname or ""
        self._port = parts.port if parts.port is not None else 502
        self._link = parts.path if self._rtu and parts.path else None
        self._bridge: PtyBridge | None = None
        self._time_scale = time_scale
        self.model = FreezerModel()
        self._internal = False
        self._server: ModbusTcpServer | ModbusSerialServer | None = None
        self._clock: ScaledClock | None = None
        self._task: asyncio.Task[None] | None = None
        self._bound_port = 0

    # -- lifecycle -------------------------------------------------------------------

    @property
    def endpoint(self) -> str:
        """``modbus+tcp://HOST:PORT`` (real bound port) or ``modbus+rtu:///dev/pts/N``."""
        if self._rtu:
            return f"modbus+rtu://{self._bridge.client_path if self._bridge else ''}"
        return f"modbus+tcp://{self._host}:{self._bound_port or self._port}"

    @property
    def clock(self) -> ScaledClock:
        """The simulated clock (set by :meth:`start`)."""
        if self._clock is None:
            raise RuntimeError("server not started")
        return self._clock

    async def prepare(self) -> None:
        """Nothing to build ahead of the clock (the register blocks are built in start)."""

    async def start(self, clock: ScaledClock | None = None) -> None:
        """Bind the socket and start the update loop on ``clock`` (or a new one)."""
        quiet_pymodbus_logging()
        self._clock = clock or ScaledClock(self._time_scale)
        self.model.switch_on(self._clock.elapsed())
        if self._rtu:
            await self._start_rtu()
        else:
            await self._start_tcp()
        await self._publish()
        self._task = asyncio.create_task(self._run(), name="freezer")

    async def _start_tcp(self) -> None:
        server = ModbusTcpServer(self._device(), address=(self._host, self._port))
        try:
            await server.serve_forever(background=True)
        except RuntimeError as exc:  # pymodbus reports a failed bind this way
            raise OSError(98, f"cannot listen on {self._host}:{self._port} ({exc})") from None
        self._server = server
        transport = server.transport
        sockets = getattr(transport, "sockets", None) or ()
        self._bound_port = sockets[0].getsockname()[1] if sockets else self._port

    async def _start_rtu(self) -> None:
        bridge = self._bridge = PtyBridge()
        bridge.open()
        server = ModbusSerialServer(
            self._device(), port=bridge.server_path, framer=FramerType.RTU, baudrate=9600
        )
        try:
            await server.serve_forever(background=True)
        except RuntimeError as exc:
            bridge.close()
            raise OSError(5, f"cannot open {bridge.server_path} ({exc})") from None
        self._server = server
        if self._link:
            make_link(Path(self._link), bridge.client_path)

    async def stop(self) -> None:
        """Stop the update loop and close the socket or pty (idempotent)."""
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        server, self._server = self._server, None
        if server is not None:
            await server.shutdown()
        if self._bridge is not None:
            self._bridge.close()
            if self._link:
                remove_link(Path(self._link))

    async def __aenter__(self) -> FreezerServer:
        await self.start()
        return self

    async def __aexit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.stop()

    def raise_alarm(self, code: int) -> None:
        """Fault injection: put the machine into alarm with ``code``."""
        self.model.advance(self.clock.elapsed())
        self.model.raise_alarm(code)

    # -- register blocks -----------------------------------------------------------

    def _device(self) -> SimDevice:
        m = self.model
        bits = DataType.BITS
        regs = DataType.REGISTERS
        holding = [
            SimData(HR_PROGRAM, values=[m.program, CMD_NONE], datatype=regs),
            SimData(HR_MODEL, values=[MODEL_ID, FIRMWARE], datatype=regs, readonly=True),
        ]
        return SimDevice(
            id=DEVICE_ID,
            simdata=(
                [SimData(0, count=2, values=False, datatype=bits)],
                [SimData(0, count=4, values=False, datatype=bits)],
                holding,
                [SimData(0, count=IR_COUNT, values=0, datatype=regs)],
            ),
            action=self._action,
        )

    async def _action(
        self,
        func_code: int,
        start_address: int,
        address: int,
        count: int,
        registers: list[int],
        values: list[int] | list[bool] | None,
    ) -> ExcCodes | None:
        """Check and apply a client's write before pymodbus stores it."""
        if self._internal or values is None or func_code not in _CLIENT_WRITES:
            return None
        now = self.clock.elapsed()
        try:
            if func_code in (5, 15):
                self._write_coils(address, [bool(v) for v in values], now)
                if address <= CO_RESET < address + len(values):
                    cast(list[bool], values)[CO_RESET - address] = False  # self-clearing
            else:
                ints = [int(v) for v in values]
                self._write_holding(address, ints, now)
                if address <= HR_COMMAND < address + len(ints):
                    cast(list[int], values)[HR_COMMAND - address] = CMD_NONE  # self-clearing
        except CommandRefused as exc:
            _log.info("refused write at %d: %s", address, exc)
            return ExcCodes.ILLEGAL_VALUE
        await self._publish()  # a command shows in the measurements at once
        return None

    def _write_coils(self, address: int, bits: list[bool], now: float) -> None:
        for i, bit in enumerate(bits):
            if address + i == CO_RUN:
                if bit:
                    self.model.start(now)
                else:
                    self.model.stop(now)
            elif address + i == CO_RESET and bit:
                self.model.reset()

    def _write_holding(self, address: int, ints: list[int], now: float) -> None:
        written = {address + i: v for i, v in enumerate(ints)}
        m = self.model
        m.advance(now)
        # Validate everything before changing anything.
        command = written.get(HR_COMMAND, CMD_NONE)
        if command not in (CMD_NONE, CMD_START, CMD_STOP, CMD_RESET):
            raise CommandRefused(f"unknown command {command}")
        program = written.get(HR_PROGRAM, m.program)
        if program != m.program:
            m.select(program)
        if command == CMD_START:
            m.start(now)
        elif command == CMD_STOP:
            m.stop(now)
        elif command == CMD_RESET:
            m.reset()

    # -- update loop -----------------------------------------------------------------

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(_IDLE_S)
            try:
                await self._publish()
            except Exception:  # keep serving; a broken update must be visible
                _log.exception("freezer update failed")

    async def _publish(self) -> None:
        server = self._server
        if server is None:
            return
        m = self.model
        m.advance(self.clock.elapsed())
        ir = [0] * IR_COUNT
        ir[IR_STATE], ir[IR_PROGRAM], ir[IR_ALARM], ir[IR_SEGMENT] = (
            int(m.state),
            m.program,
            m.alarm_code,
            m.segment,
        )
        ir[IR_CHAMBER : IR_CHAMBER + 2] = float_regs(m.chamber_c)
        ir[IR_SAMPLE : IR_SAMPLE + 2] = float_regs(m.sample_c)
        ir[IR_SETPOINT : IR_SETPOINT + 2] = float_regs(m.setpoint_c)
        ir[IR_ELAPSED : IR_ELAPSED + 2] = uint32_regs(round(m.elapsed_s))
        ir[IR_REMAINING : IR_REMAINING + 2] = uint32_regs(round(m.remaining_s))
        ir[IR_SEGMENTS] = m.segment_count
        di = [
            m.state is State.RUNNING,
            m.state is State.COMPLETE,
            m.state is State.ALARM,
            m.ln2_supply_ok,
        ]
        self._internal = True
        try:
            await server.async_setValues(DEVICE_ID, _FC_IR, 0, ir)
            await server.async_setValues(DEVICE_ID, _FC_DI, 0, di)
            await server.async_setValues(DEVICE_ID, _FC_COIL, CO_RUN, [m.state is State.RUNNING])
            await server.async_setValues(DEVICE_ID, _FC_HR, HR_PROGRAM, [m.program])
        finally:
            self._internal = False
