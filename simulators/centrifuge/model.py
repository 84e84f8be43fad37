"""The cell processor's process model: programs, phases, volumes, recovery (pure).

Times are simulated seconds on the shared clock (``ScaledClock.elapsed()``).
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum
from typing import Final


class State(IntEnum):
    """Machine state as published in input register 0."""

    IDLE = 0
    RUNNING = 1
    COMPLETE = 2
    ALARM = 3


class Phase(IntEnum):
    """Phase of a running program (input register 3)."""

    NONE = 0
    LOAD = 1
    WASH = 2
    CONCENTRATE = 3
    HARVEST = 4


@dataclass(frozen=True, slots=True)
class Program:
    """A wash/concentrate program: wash cycles and the recovery it achieves."""

    number: int
    name: str
    wash_cycles: int
    recovery_pct: float


PROGRAMS: Final = {
    1: Program(1, "wash-concentrate", 3, 92.0),
    2: Program(2, "buffer-exchange", 2, 94.0),
    3: Program(3, "concentrate", 0, 96.0),
}
LOAD_ML_PER_MIN: Final = 50.0
WASH_CYCLE_S: Final = 360.0
CONCENTRATE_S: Final = 240.0
HARVEST_ML_PER_MIN: Final = 20.0
ROTOR_RPM: Final = {Phase.LOAD: 2000, Phase.WASH: 2500, Phase.CONCENTRATE: 3000}
INPUT_RANGE: Final = (10.0, 1000.0)
FINAL_RANGE: Final = (5.0, 200.0)


class CommandRefused(Exception):
    """A command or setpoint the machine cannot accept now (Modbus exception 3)."""


class CellProcessorModel:
    """One cell processor: select a program, start, stop, reset; alarms by injection."""

    def __init__(self) -> None:
        self.program = 1
        self.input_volume_sp = 500.0
        self.final_volume_sp = 50.0
        self.state = State.IDLE
        self.alarm_code = 0
        self.phase = Phase.NONE
        self.processed_ml = 0.0
        self.output_ml = 0.0
        self.recovery_pct = 0.0
        self.elapsed_s = 0.0
        self.remaining_s = 0.0
        self._started_at = 0.0
        self._run: tuple[Program, float, float] | None = None  # program, input, final

    def select(self, program: int) -> None:
        """Select a program (1–3); refused while running."""
        if program not in PROGRAMS:
            raise CommandRefused(f"no program {program}")
        if self.state is State.RUNNING:
            raise CommandRefused("program cannot change while running")
        self.program = program

    def set_volumes(self, input_ml: float | None = None, final_ml: float | None = None) -> None:
        """Set the input and/or final volume setpoints (checked against their ranges)."""
        if input_ml is not None:
            if not INPUT_RANGE[0] <= input_ml <= INPUT_RANGE[1]:
                raise CommandRefused(f"input volume {input_ml} out of range")
            self.input_volume_sp = input_ml
        if final_ml is not None:
            if not FINAL_RANGE[0] <= final_ml <= FINAL_RANGE[1]:
                raise CommandRefused(f"final volume {final_ml} out of range")
            self.final_volume_sp = final_ml

    def durations(self) -> tuple[float, float, float, float]:
        """Load, wash, concentrate, harvest durations (s) of the selected program."""
        prog = PROGRAMS[self.program]
        return (
            self.input_volume_sp / LOAD_ML_PER_MIN * 60.0,
            prog.wash_cycles * WASH_CYCLE_S,
            CONCENTRATE_S,
            self.final_volume_sp / HARVEST_ML_PER_MIN * 60.0,
        )

    def start(self, now: float) -> None:
        """Start the selected program (from idle or complete)."""
        if self.state not in (State.IDLE, State.COMPLETE):
            raise CommandRefused(f"cannot start while {self.state.name.lower()}")
        if self.final_volume_sp > self.input_volume_sp:
            raise CommandRefused("final volume exceeds input volume")
        self._run = (PROGRAMS[self.program], self.input_volume_sp, self.final_volume_sp)
        self._started_at = now
        self.state = State.RUNNING
        self.processed_ml = self.output_ml = self.recovery_pct = 0.0
        self.advance(now)

    def stop(self, now: float) -> None:
        """Stop a running program: back to idle, results as they stand."""
        if self.state is State.RUNNING:
            self.advance(now)
            self.state = State.IDLE
            self.phase = Phase.NONE
            self.remaining_s = 0.0
            self._run = None

    def reset(self) -> None:
        """Acknowledge an alarm or a completed run: back to idle."""
        if self.state is State.RUNNING:
            raise CommandRefused("cannot reset while running (stop first)")
        self.state = State.IDLE
        self.alarm_code = 0
        self.phase = Phase.NONE

    def raise_alarm(self, code: int) -> None:
        """Fault injection: a running or idle machine goes to alarm with ``code``."""
        self.state = State.ALARM
        self.alarm_code = code
        self.phase = Phase.NONE
        self._run = None

    def advance(self, now: float) -> None:
        """Bring the published values up to simulated time ``now``."""
        if self.state is not State.RUNNING or self._run is None:
            return
        prog, input_ml, final_ml = self._run
        load, wash, conc, harvest = self.durations()
        t = max(0.0, now - self._started_at)
        total = load + wash + conc + harvest
        self.elapsed_s = min(t, total)
        self.remaining_s = max(0.0, total - t)
        self.processed_ml = min(input_ml, t / 60.0 * LOAD_ML_PER_MIN)
        into_harvest = t - (load + wash + conc)
        fraction = min(1.0, max(0.0, into_harvest / harvest)) if harvest > 0 else 1.0
        self.output_ml = final_ml * fraction
        self.recovery_pct = prog.recovery_pct * fraction
        if t >= total:
            self.state = State.COMPLETE
            self.phase = Phase.NONE
            self._run = None
        elif t < load:
            self.phase = Phase.LOAD
        elif t < load + wash:
            self.phase = Phase.WASH
        elif t < load + wash + conc:
            self.phase = Phase.CONCENTRATE
        else:
            self.phase = Phase.HARVEST

    @property
    def rotor_rpm(self) -> int:
        """Rotor speed (0 when not spinning)."""
        return ROTOR_RPM.get(self.phase, 0) if self.state is State.RUNNING else 0
