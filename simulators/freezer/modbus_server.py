"""Modbus server publishing a simulated controlled-rate freezer.

Modbus TCP on a real socket (``modbus+tcp://HOST:PORT``) or Modbus RTU on a
pseudo-terminal (``modbus+rtu://``; clients open ``modbus+rtu:///dev/pts/N``); the
lifecycle is :class:`simulators.modbus_instrument.ModbusInstrumentServer`'s.

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

from typing import ClassVar, Final

from simulators.freezer.model import CommandRefused, FreezerModel, State

# The shared register conventions and helpers, re-exported (``X as X``) under the
# names this module has always had.
from simulators.modbus_instrument import CMD_NONE as CMD_NONE
from simulators.modbus_instrument import CMD_RESET as CMD_RESET
from simulators.modbus_instrument import CMD_START as CMD_START
from simulators.modbus_instrument import CMD_STOP as CMD_STOP
from simulators.modbus_instrument import CO_RESET as CO_RESET
from simulators.modbus_instrument import CO_RUN as CO_RUN
from simulators.modbus_instrument import DEFAULT_URL as DEFAULT_URL
from simulators.modbus_instrument import DEVICE_ID as DEVICE_ID
from simulators.modbus_instrument import DI_ALARM as DI_ALARM
from simulators.modbus_instrument import DI_COMPLETE as DI_COMPLETE
from simulators.modbus_instrument import DI_RUNNING as DI_RUNNING
from simulators.modbus_instrument import HR_COMMAND, HR_PROGRAM, ModbusInstrumentServer, float_regs
from simulators.modbus_instrument import HR_FIRMWARE as HR_FIRMWARE
from simulators.modbus_instrument import HR_MODEL as HR_MODEL
from simulators.modbus_instrument import IR_ALARM as IR_ALARM
from simulators.modbus_instrument import IR_ELAPSED as IR_ELAPSED
from simulators.modbus_instrument import IR_PROGRAM as IR_PROGRAM
from simulators.modbus_instrument import IR_REMAINING as IR_REMAINING
from simulators.modbus_instrument import IR_STATE as IR_STATE
from simulators.modbus_instrument import quiet_pymodbus_logging as quiet_pymodbus_logging
from simulators.modbus_instrument import uint32_regs as uint32_regs

__all__ = ["DEFAULT_URL", "DEVICE_ID", "FreezerServer"]

MODEL_ID: Final = 4100
FIRMWARE: Final = 100  # 1.00

# Register map beyond the shared conventions (simulators.modbus_instrument).
HR_COUNT: Final = 2
IR_SEGMENT = 3
IR_CHAMBER, IR_SAMPLE, IR_SETPOINT = 4, 6, 8
IR_SEGMENTS = 14
IR_COUNT: Final = 15
DI_LN2 = 3


class FreezerServer(ModbusInstrumentServer[FreezerModel]):
    """A real Modbus TCP (or RTU) server around one :class:`FreezerModel`.

    The freezer switches on when the server starts (its chamber starts settling from
    then), and an injected alarm first brings the model up to the clock's time.
    """

    task_name = "freezer"
    identity = (MODEL_ID, FIRMWARE)
    ir_count = IR_COUNT
    sensor_registers: ClassVar[dict[int, str]] = {
        IR_CHAMBER: "float32",
        IR_SAMPLE: "float32",
        IR_SETPOINT: "float32",
    }
    refused = CommandRefused

    def _on_start(self, now: float) -> None:
        self.model.switch_on(now)

    def raise_alarm(self, code: int) -> None:
        """Fault injection: put the machine into alarm with ``code``."""
        self.model.advance(self.clock.elapsed())
        self.model.raise_alarm(code)

    def _make_model(self) -> FreezerModel:
        return FreezerModel()

    def _power_cycled(self, old: FreezerModel) -> FreezerModel:
        """Idle with program 1 after a power cycle; the chamber and the sample keep
        their temperatures (physics does not restart) and settle from the clock's now."""
        old.advance(self.clock.elapsed())
        new = FreezerModel()
        new.chamber_c, new.sample_c, new.frozen_fraction = (
            old.chamber_c,
            old.sample_c,
            old.frozen_fraction,
        )
        new.ln2_supply_ok = old.ln2_supply_ok
        return new

    # -- register blocks -----------------------------------------------------------

    def _write_holding(
        self, address: int, ints: list[int], registers: list[int], start: int, now: float
    ) -> None:
        written = {address + i: v for i, v in enumerate(ints)}
        m = self.model
        m.advance(now)
        # Validate everything before changing anything.
        command = written.get(HR_COMMAND, CMD_NONE)
        self._check_command(command)
        program = written.get(HR_PROGRAM, m.program)
        if program != m.program:
            m.select(program)
        self._command(command, now)

    def _inputs(self, ir: list[int]) -> list[bool]:
        m = self.model
        ir[IR_SEGMENT] = m.segment
        ir[IR_CHAMBER : IR_CHAMBER + 2] = float_regs(m.chamber_c)
        ir[IR_SAMPLE : IR_SAMPLE + 2] = float_regs(m.sample_c)
        ir[IR_SETPOINT : IR_SETPOINT + 2] = float_regs(m.setpoint_c)
        ir[IR_SEGMENTS] = m.segment_count
        return [
            m.state is State.RUNNING,
            m.state is State.COMPLETE,
            m.state is State.ALARM,
            m.ln2_supply_ok,
        ]
