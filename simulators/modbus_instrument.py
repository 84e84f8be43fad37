"""What the Modbus instrument simulators share: lifecycle, register conventions, helpers.

:class:`ModbusInstrumentServer` serves one instrument model over Modbus TCP on a real
socket (``modbus+tcp://HOST:PORT``) or Modbus RTU on a pseudo-terminal
(``modbus+rtu://``; clients open ``modbus+rtu:///dev/pts/N``). A subclass names its
model, identity and register image through small hooks; see
:mod:`simulators.centrifuge.modbus_server` and :mod:`simulators.freezer.modbus_server`.

Shared conventions (device id 1, zero-based PDU addresses): program and command in
holding registers 0 and 1 (the command self-clears), model id and firmware read-only
at 100 and 101, run and reset coils 0 and 1 (reset self-clears), running / complete /
alarm in discrete inputs 0-2, state / program / alarm code in input registers 0-2.
32-bit values are big-endian within each register and **low word first** (word order
"little", mbpoll's default for ``-t 3:float``).

Faults (``server.faults``, see :mod:`simulators.faults`): over TCP a
:class:`~simulators.gate.TcpGate` in front of pymodbus shows refuse, drop, silent,
slow, garbage and truncated; over RTU the pty bridge shows silent, slow, garbage,
truncated and bad_crc. Both show exception (any code, on reads, writes or both),
alarm (the model's alarm with ``code``, cleared by the instrument's reset), and the
sensor faults on the input registers a subclass lists in :attr:`sensor_registers`
(target ``ir:N``). Over TCP, ``restart`` power-cycles the instrument (see
:meth:`ModbusInstrumentServer.restart`).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import math
import signal
import struct
import sys
from abc import ABC, abstractmethod
from collections.abc import Callable, Coroutine
from pathlib import Path
from types import TracebackType
from typing import Any, ClassVar, Final, Generic, Protocol, Self, TypeVar, cast
from urllib.parse import urlsplit

from pymodbus.constants import ExcCodes
from pymodbus.framer import FramerType
from pymodbus.server import ModbusSerialServer, ModbusTcpServer
from pymodbus.simulator import DataType, SimData, SimDevice

from simulators.clock import ScaledClock
from simulators.faults import Fault, FaultBoard, FaultError, Restarter
from simulators.gate import CONNECTION_KINDS, TcpGate
from simulators.serial_instruments.pty_port import PtyBridge, make_link, remove_link

__all__ = [
    "DEFAULT_URL",
    "DEVICE_ID",
    "InstrumentModel",
    "ModbusInstrumentServer",
    "command_line",
    "float_regs",
    "quiet_pymodbus_logging",
    "regs_float",
    "serial_regs",
    "serve_main",
    "serve_until_signal",
    "uint32_regs",
]

DEFAULT_URL: Final = "modbus+tcp://127.0.0.1:0"
DEVICE_ID: Final = 1
_IDLE_S: Final = 0.01  # update period (wall clock)

# Function codes (block chosen by pymodbus from the code).
_FC_COIL, _FC_DI, _FC_HR, _FC_IR = 5, 2, 16, 4
_CLIENT_WRITES: Final = frozenset({5, 6, 15, 16, 22, 23})

# Holding registers
HR_PROGRAM, HR_COMMAND = 0, 1
HR_MODEL, HR_FIRMWARE = 100, 101
#: The serial number: ASCII, two characters per register (high byte first), NUL-padded;
#: all NULs when the instrument has none configured (it reports no serial).
HR_SERIAL, SERIAL_REGISTERS = 102, 8
CMD_NONE, CMD_START, CMD_STOP, CMD_RESET = 0, 1, 2, 3
# Input registers (elapsed and remaining seconds are uint32)
IR_STATE, IR_PROGRAM, IR_ALARM = 0, 1, 2
IR_ELAPSED, IR_REMAINING = 10, 12
# Coils and discrete inputs
CO_RUN, CO_RESET = 0, 1
DI_RUNNING, DI_COMPLETE, DI_ALARM = 0, 1, 2


def quiet_pymodbus_logging() -> None:
    """Lower pymodbus's chatter (per-request tracebacks, frame dumps) to ERROR."""
    logging.getLogger("pymodbus").setLevel(logging.ERROR)


def float_regs(value: float) -> list[int]:
    """A float32 as two registers, low word first."""
    hi, lo = struct.unpack(">HH", struct.pack(">f", value))
    return [lo, hi]


def regs_float(regs: list[int]) -> float:
    """Two registers, low word first, as a float32."""
    value: float = struct.unpack(">f", struct.pack(">HH", regs[1], regs[0]))[0]
    return value


def uint32_regs(value: int) -> list[int]:
    """An unsigned 32-bit value as two registers, low word first."""
    return [value & 0xFFFF, (value >> 16) & 0xFFFF]


class InstrumentModel(Protocol):
    """What the shared server needs of a model: program, run/stop/reset, alarms, time."""

    @property
    def program(self) -> int: ...
    @property
    def state(self) -> int: ...
    @property
    def alarm_code(self) -> int: ...
    @property
    def elapsed_s(self) -> float: ...
    @property
    def remaining_s(self) -> float: ...
    def start(self, now: float) -> None: ...
    def stop(self, now: float) -> None: ...
    def reset(self) -> None: ...
    def raise_alarm(self, code: int) -> None: ...
    def advance(self, now: float) -> None: ...


ModelT = TypeVar("ModelT", bound=InstrumentModel)


def serial_regs(serial: str) -> list[int]:
    """A serial number as SERIAL_REGISTERS registers (ValueError if it does not fit)."""
    raw = serial.encode("ascii", errors="strict") if serial.isascii() else None
    if raw is None or len(raw) > 2 * SERIAL_REGISTERS:
        raise ValueError(
            f"serial {serial!r} must be ASCII of at most {2 * SERIAL_REGISTERS} characters"
        )
    raw = raw.ljust(2 * SERIAL_REGISTERS, b"\0")
    return [int.from_bytes(raw[i : i + 2], "big") for i in range(0, len(raw), 2)]


class ModbusInstrumentServer(ABC, Generic[ModelT]):
    """A real Modbus TCP (or RTU) server around one instrument model.

    Subclasses set :attr:`task_name`, :attr:`identity`, :attr:`ir_count` and
    :attr:`refused` (the model's refusal exception), and implement :meth:`_make_model`,
    :meth:`_inputs` and :meth:`_write_holding` (with :meth:`_check_command` and
    :meth:`_command`).
    """

    task_name: ClassVar[str]  # name of the update-loop task
    identity: ClassVar[tuple[int, int]]  # model id and firmware, holding registers 100-101
    ir_count: ClassVar[int]  # input registers from address 0
    refused: ClassVar[type[Exception]]  # a write the model refuses: exception 3
    #: Input registers sensor faults may target: address → float32, int16 or uint16.
    sensor_registers: ClassVar[dict[int, str]] = {}

    def __init__(
        self, *, url: str = DEFAULT_URL, time_scale: float = 1.0, serial: str = ""
    ) -> None:
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
        self.serial_registers = serial_regs(serial)
        self._host = parts.hostname or ""
        self._port = parts.port if parts.port is not None else 502
        self._link = parts.path if self._rtu and parts.path else None
        self._bridge: PtyBridge | None = None
        self._time_scale = time_scale
        self.model: ModelT = self._make_model()
        self._internal = False
        self._server: ModbusTcpServer | ModbusSerialServer | None = None
        self._clock: ScaledClock | None = None
        self._task: asyncio.Task[None] | None = None
        self._bound_port = 0
        self._log = logging.getLogger(type(self).__module__)
        common = ("exception", "alarm", "stuck", "drift", "noise", "spike")
        line = ("silent", "slow", "garbage", "truncated", "bad_crc")
        self.faults = FaultBoard(
            self.task_name,
            (*line, *common) if self._rtu else (*CONNECTION_KINDS, *common, "restart"),
            targets=lambda: [f"ir:{a}" for a in self.sensor_registers],
            check=_check_fault,
        )
        self.faults.on_inject = self._fault_injected
        self._restarter = Restarter(self.faults, self.restart)
        self._gate: TcpGate | None = None
        #: times the instrument restarted (``restart`` fault or :meth:`restart`)
        self.restarts = 0

    # -- hooks -----------------------------------------------------------------------

    @abstractmethod
    def _make_model(self) -> ModelT:
        """A fresh model, in its power-on state."""

    def _holding_values(self) -> list[int]:
        """The initial holding registers after program and command (default: none)."""
        return []

    @abstractmethod
    def _inputs(self, ir: list[int]) -> list[bool]:
        """Fill ``ir`` past state, program, alarm code and times; the discrete inputs from 0.

        Called with the model just advanced.
        """

    @abstractmethod
    def _write_holding(
        self, address: int, ints: list[int], registers: list[int], start: int, now: float
    ) -> None:
        """Validate and apply a client's holding-register write; raise :attr:`refused`."""

    def _on_start(self, now: float) -> None:
        """Called once the clock is set, before the server binds (default: nothing)."""

    def _power_cycled(self, old: ModelT) -> ModelT:
        """The model after a power cycle of ``old`` (default: a fresh one, in its
        power-on state); a subclass keeps what physics keeps (e.g. a temperature)."""
        return self._make_model()

    # -- lifecycle -------------------------------------------------------------------

    @property
    def description(self) -> str:
        """The instrument in log messages: the task name in words."""
        return self.task_name.replace("-", " ")

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
        self._on_start(self._clock.elapsed())
        if self._rtu:
            await self._start_rtu()
        else:
            await self._start_tcp()
        await self._publish()
        self._task = asyncio.create_task(self._run(), name=self.task_name)

    async def _start_tcp(self) -> None:
        # pymodbus serves on a private port; the gate owns the public one (faults).
        server = ModbusTcpServer(self._device(), address=("127.0.0.1", 0))
        try:
            await server.serve_forever(background=True)
        except RuntimeError as exc:  # pymodbus reports a failed bind this way
            raise OSError(98, f"cannot listen on 127.0.0.1 ({exc})") from None
        self._server = server
        transport = server.transport
        sockets: Any = getattr(transport, "sockets", None) or ()
        private = int(sockets[0].getsockname()[1])
        gate = TcpGate(self.faults, self._host, self._port)
        try:
            self._bound_port = await gate.start(("127.0.0.1", private))
        except OSError as exc:
            await server.shutdown()
            self._server = None
            raise OSError(
                exc.errno, f"cannot listen on {self._host}:{self._port} ({exc})"
            ) from None
        self._gate = gate

    async def _start_rtu(self) -> None:
        bridge = self._bridge = PtyBridge(self.faults)
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

    async def restart(self, downtime_s: float = 1.0) -> None:
        """Restart like a power-cycled instrument (Modbus TCP): every connection is
        dropped, the port stays closed ``downtime_s`` wall seconds, then the instrument
        answers again on the same port in its power-on state: setpoints and program at
        their defaults, idle, a run under way lost, an alarm gone (the model is
        :meth:`_power_cycled`). The simulated clock runs on."""
        if self._rtu:
            raise RuntimeError("restart is simulated over Modbus TCP only")
        clock = self.clock
        self._port = self._bound_port or self._port  # back on the same port
        await self._shutdown()
        await asyncio.sleep(max(0.0, downtime_s))
        self.model = self._power_cycled(self.model)
        await self.start(clock)
        self.restarts += 1
        self._log.warning(
            "%s restarted after %.1f s in its power-on state", self.endpoint, downtime_s
        )

    async def stop(self) -> None:
        """Stop the update loop and close the socket or pty (idempotent); ends a restart."""
        await self._restarter.cancel()
        await self._shutdown()

    async def _shutdown(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        gate, self._gate = self._gate, None
        if gate is not None:
            await gate.stop()
        server, self._server = self._server, None
        if server is not None:
            await server.shutdown()
        if self._bridge is not None:
            self._bridge.close()
            if self._link:
                remove_link(Path(self._link))

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.stop()

    def raise_alarm(self, code: int) -> None:
        """Fault injection: put the machine into alarm with ``code``."""
        self.model.raise_alarm(code)

    def _fault_injected(self, fault: Fault) -> None:
        if fault.kind == "alarm":
            self.raise_alarm(int(fault.params.get("code", 1)))
        self._restarter.injected(fault)

    def _exception_fault(self, func_code: int) -> ExcCodes | None:
        fault = self.faults.first("exception")
        if fault is None:
            return None
        on = fault.params.get("on", "any")
        if on != "any" and (on == "write") != (func_code in _CLIENT_WRITES):
            return None
        return ExcCodes(int(fault.params["code"]))

    def _sensor_faults(self, ir: list[int]) -> None:
        """Apply stuck, drift, noise and spike faults to the targeted input registers."""
        for fault in self.faults.faults:
            target = fault.target
            if target is None or not target.startswith("ir:"):
                continue
            address = int(target[3:])
            kind = self.sensor_registers[address]
            if kind == "float32":
                raw = regs_float(ir[address : address + 2])
                ir[address : address + 2] = float_regs(self.faults.sensor(target, raw))
            else:
                value = ir[address] - (0x10000 if kind == "int16" and ir[address] >= 0x8000 else 0)
                faulty = round(self.faults.sensor(target, float(value)))
                low, high = (-0x8000, 0x7FFF) if kind == "int16" else (0, 0xFFFF)
                ir[address] = min(max(faulty, low), high) & 0xFFFF

    # -- register blocks -----------------------------------------------------------

    def _device(self) -> SimDevice:
        bits = DataType.BITS
        regs = DataType.REGISTERS
        holding = [
            SimData(
                HR_PROGRAM,
                values=[self.model.program, CMD_NONE, *self._holding_values()],
                datatype=regs,
            ),
            SimData(HR_MODEL, values=list(self.identity), datatype=regs, readonly=True),
            SimData(HR_SERIAL, values=list(self.serial_registers), datatype=regs, readonly=True),
        ]
        return SimDevice(
            id=DEVICE_ID,
            simdata=(
                [SimData(0, count=2, values=False, datatype=bits)],
                [SimData(0, count=4, values=False, datatype=bits)],
                holding,
                [SimData(0, count=self.ir_count, values=0, datatype=regs)],
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
        if self._internal:
            return None
        refusal = self._exception_fault(func_code)
        if refusal is not None:
            return refusal
        if values is None or func_code not in _CLIENT_WRITES:
            return None
        now = self.clock.elapsed()
        try:
            if func_code in (5, 15):
                self._write_coils(address, [bool(v) for v in values], now)
                if address <= CO_RESET < address + len(values):
                    cast(list[bool], values)[CO_RESET - address] = False  # self-clearing
            else:
                ints = [int(v) for v in values]
                self._write_holding(address, ints, registers, start_address, now)
                if address <= HR_COMMAND < address + len(ints):
                    cast(list[int], values)[HR_COMMAND - address] = CMD_NONE  # self-clearing
        except self.refused as exc:
            self._log.info("refused write at %d: %s", address, exc)
            return ExcCodes.ILLEGAL_VALUE
        await self._publish()  # a command shows in the measurements at once
        return None

    def _check_command(self, command: int) -> None:
        """Refuse a command register value that is no command."""
        if command not in (CMD_NONE, CMD_START, CMD_STOP, CMD_RESET):
            raise self.refused(f"unknown command {command}")

    def _command(self, command: int, now: float) -> None:
        """Obey a (checked) command register value."""
        if command == CMD_START:
            self.model.start(now)
        elif command == CMD_STOP:
            self.model.stop(now)
        elif command == CMD_RESET:
            self.model.reset()

    def _write_coils(self, address: int, bits: list[bool], now: float) -> None:
        for i, bit in enumerate(bits):
            if address + i == CO_RUN:
                if bit:
                    self.model.start(now)
                else:
                    self.model.stop(now)
            elif address + i == CO_RESET and bit:
                self.model.reset()

    # -- update loop -----------------------------------------------------------------

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(_IDLE_S)
            try:
                await self._publish()
            except Exception:  # keep serving; a broken update must be visible
                self._log.exception("%s update failed", self.description)

    async def _publish(self) -> None:
        server = self._server
        if server is None:
            return
        m = self.model
        m.advance(self.clock.elapsed())
        ir = [0] * self.ir_count
        ir[IR_STATE], ir[IR_PROGRAM], ir[IR_ALARM] = int(m.state), m.program, m.alarm_code
        ir[IR_ELAPSED : IR_ELAPSED + 2] = uint32_regs(round(m.elapsed_s))
        ir[IR_REMAINING : IR_REMAINING + 2] = uint32_regs(round(m.remaining_s))
        di = self._inputs(ir)
        self._sensor_faults(ir)
        self._internal = True
        try:
            await server.async_setValues(DEVICE_ID, _FC_IR, 0, ir)
            await server.async_setValues(DEVICE_ID, _FC_DI, 0, di)
            await server.async_setValues(DEVICE_ID, _FC_COIL, CO_RUN, [di[DI_RUNNING]])
            await server.async_setValues(DEVICE_ID, _FC_HR, HR_PROGRAM, [m.program])
        finally:
            self._internal = False


def _check_fault(kind: str, params: Any) -> None:
    if kind == "exception":
        if params["code"] not in {int(c) for c in ExcCodes}:
            codes = ", ".join(str(int(c)) for c in ExcCodes)
            raise FaultError(f"exception: code must be one of {codes}, got {params['code']}")
        if params.get("on", "any") not in ("read", "write", "any"):
            raise FaultError(f"exception: on must be read, write or any, got {params['on']!r}")


# -- command line --------------------------------------------------------------------


class MainFunction(Protocol):
    """``main(argv=None)``: parse the command line, serve, return the exit status."""

    def __call__(self, argv: list[str] | None = None) -> int: ...


async def serve_until_signal(
    factory: Callable[..., ModbusInstrumentServer[ModelT]], args: argparse.Namespace
) -> None:
    """Run one server (``args.host``, ``.port``, ``.time_scale``) until SIGINT or SIGTERM."""
    server = factory(url=f"modbus+tcp://{args.host}:{args.port}", time_scale=args.time_scale)
    done = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, done.set)
    await server.start()
    try:
        print(f"serving {server.endpoint} time_scale={args.time_scale:g}", flush=True)
        await done.wait()
    finally:
        await server.stop()


def serve_main(
    factory: Callable[..., ModbusInstrumentServer[ModelT]],
    argv: list[str] | None,
    *,
    prog: str,
    port: int,
) -> int:
    """Parse ``--host --port --time-scale``, serve until SIGINT or SIGTERM; the exit status."""
    parser = argparse.ArgumentParser(prog=prog)
    parser.add_argument("--host", default="127.0.0.1", help="address to bind")
    parser.add_argument("--port", type=int, default=port, help="TCP port, 0 = any free port")
    parser.add_argument("--time-scale", type=float, default=1.0, help="simulated s per wall s")
    args = parser.parse_args(argv)
    try:
        asyncio.run(serve_until_signal(factory, args))
    except (ValueError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


def command_line(
    factory: Callable[..., ModbusInstrumentServer[ModelT]], *, prog: str, port: int
) -> tuple[MainFunction, Callable[[argparse.Namespace], Coroutine[Any, Any, None]]]:
    """An instrument's ``__main__`` functions: ``main(argv=None)`` and ``serve(args)``."""

    def main(argv: list[str] | None = None) -> int:
        """Command-line entry point; returns the exit status."""
        return serve_main(factory, argv, prog=prog, port=port)

    async def serve(args: argparse.Namespace) -> None:
        """Run one server until a termination signal arrives."""
        await serve_until_signal(factory, args)

    return main, serve
