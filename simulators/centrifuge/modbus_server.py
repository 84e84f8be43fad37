"""Modbus server publishing a simulated counterflow centrifuge / cell processor.

Modbus TCP on a real socket (``modbus+tcp://HOST:PORT``) or Modbus RTU on a
pseudo-terminal (``modbus+rtu://``; clients open ``modbus+rtu:///dev/pts/N``); the
lifecycle is :class:`simulators.modbus_instrument.ModbusInstrumentServer`'s.

Register map (device id 1, zero-based PDU addresses; mbpoll's reference = address + 1):
see ``simulators/README.md``. 32-bit values are big-endian within each register and
**low word first** (word order "little", mbpoll's default for ``-t 3:float``).

Client writes pass through :meth:`CellProcessorServer._action`, which refuses an
out-of-range value or a command the machine cannot accept now with exception 3;
pymodbus itself answers exception 2 for read-only or unmapped addresses.
"""

from __future__ import annotations

import math
from typing import ClassVar, Final

from simulators.centrifuge.model import CellProcessorModel, CommandRefused, State

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
from simulators.modbus_instrument import HR_COMMAND, HR_PROGRAM, ModbusInstrumentServer
from simulators.modbus_instrument import HR_FIRMWARE as HR_FIRMWARE
from simulators.modbus_instrument import HR_MODEL as HR_MODEL
from simulators.modbus_instrument import IR_ALARM as IR_ALARM
from simulators.modbus_instrument import IR_ELAPSED as IR_ELAPSED
from simulators.modbus_instrument import IR_PROGRAM as IR_PROGRAM
from simulators.modbus_instrument import IR_REMAINING as IR_REMAINING
from simulators.modbus_instrument import IR_STATE as IR_STATE
from simulators.modbus_instrument import float_regs as float_regs
from simulators.modbus_instrument import quiet_pymodbus_logging as quiet_pymodbus_logging
from simulators.modbus_instrument import regs_float as regs_float
from simulators.modbus_instrument import uint32_regs as uint32_regs

__all__ = ["DEFAULT_URL", "DEVICE_ID", "CellProcessorServer", "quiet_pymodbus_logging"]

MODEL_ID: Final = 3100
FIRMWARE: Final = 102  # 1.02

# Register map beyond the shared conventions (simulators.modbus_instrument).
HR_INPUT_SP, HR_FINAL_SP = 2, 4
HR_COUNT: Final = 6
IR_PHASE = 3
IR_PROCESSED, IR_OUTPUT, IR_RECOVERY = 4, 6, 8
IR_ROTOR, IR_TEMPERATURE = 14, 15
IR_COUNT: Final = 16
DI_DOOR = 3


class CellProcessorServer(ModbusInstrumentServer[CellProcessorModel]):
    """A real Modbus TCP server around one :class:`CellProcessorModel`."""

    task_name = "cell-processor"
    identity = (MODEL_ID, FIRMWARE)
    ir_count = IR_COUNT
    sensor_registers: ClassVar[dict[int, str]] = {
        IR_PROCESSED: "float32",
        IR_OUTPUT: "float32",
        IR_RECOVERY: "float32",
        IR_ROTOR: "uint16",
        IR_TEMPERATURE: "int16",
    }
    refused = CommandRefused

    def _make_model(self) -> CellProcessorModel:
        return CellProcessorModel()

    # -- register blocks -----------------------------------------------------------

    def _holding_values(self) -> list[int]:
        m = self.model
        return [*float_regs(m.input_volume_sp), *float_regs(m.final_volume_sp)]

    def _write_holding(
        self, address: int, ints: list[int], registers: list[int], start: int, now: float
    ) -> None:
        image = list(registers[HR_PROGRAM - start : HR_PROGRAM - start + HR_COUNT])
        touched = range(address, address + len(ints))
        for i, v in enumerate(ints):
            if HR_PROGRAM <= address + i < HR_PROGRAM + HR_COUNT:
                image[address + i - HR_PROGRAM] = v
        m = self.model
        # Validate everything before changing anything.
        program = image[HR_PROGRAM]
        input_ml = regs_float(image[HR_INPUT_SP : HR_INPUT_SP + 2])
        final_ml = regs_float(image[HR_FINAL_SP : HR_FINAL_SP + 2])
        command = image[HR_COMMAND]
        if HR_COMMAND in touched:
            self._check_command(command)
        volumes_touched = any(a in touched for a in range(HR_INPUT_SP, HR_FINAL_SP + 2))
        if volumes_touched and m.state is State.RUNNING:
            raise CommandRefused("volumes cannot change while running")
        for value, (lo, hi) in ((input_ml, (10.0, 1000.0)), (final_ml, (5.0, 200.0))):
            if volumes_touched and not (math.isfinite(value) and lo <= value <= hi):
                raise CommandRefused(f"volume {value} out of range {lo}–{hi}")
        if HR_PROGRAM in touched and program != m.program:
            m.select(program)
        if volumes_touched:
            m.set_volumes(input_ml, final_ml)
        if HR_COMMAND in touched:
            self._command(command, now)

    def _inputs(self, ir: list[int]) -> list[bool]:
        m = self.model
        ir[IR_PHASE] = int(m.phase)
        ir[IR_PROCESSED : IR_PROCESSED + 2] = float_regs(m.processed_ml)
        ir[IR_OUTPUT : IR_OUTPUT + 2] = float_regs(m.output_ml)
        ir[IR_RECOVERY : IR_RECOVERY + 2] = float_regs(m.recovery_pct)
        ir[IR_ROTOR] = m.rotor_rpm
        ir[IR_TEMPERATURE] = 221  # 22.1 °C, int16 in 0.1 °C
        return [m.state is State.RUNNING, m.state is State.COMPLETE, m.state is State.ALARM, True]
