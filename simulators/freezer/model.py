"""The controlled-rate freezer's process model: programs, chamber, sample, alarms (pure).

Times are simulated seconds on the shared clock (``ScaledClock.elapsed()``).

A program is a list of segments run from the start temperature (4 °C): a *ramp*
moves the profile setpoint to its target at a fixed rate, a *hold* keeps it there
for a time. The chamber follows the profile setpoint first-order (τ 10 s) with
its rate bounded by the liquid-nitrogen cooling (−30 °C/min) and the heater
(+15 °C/min). The sample (a bag of cryomedium) follows the chamber first-order
(τ 2 min) until it supercools to −7 °C; then ice nucleates, the released latent
heat lifts it to −2.5 °C and it stays near that plateau (drifting to −5 °C as it
freezes) until the latent heat is gone, after which it follows the chamber again.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum
from typing import Final


class State(IntEnum):
    """Machine state as published in input register 0 (same codes as the cell processor)."""

    IDLE = 0
    RUNNING = 1
    COMPLETE = 2
    ALARM = 3


@dataclass(frozen=True, slots=True)
class Segment:
    """Ramp to ``target`` °C at ``rate`` °C/min (> 0), or hold it ``hold_min`` minutes."""

    target: float
    rate: float | None = None
    hold_min: float = 0.0

    def duration_s(self, start: float) -> float:
        """Simulated seconds this segment takes when entered at ``start`` °C."""
        if self.rate is not None:
            return abs(self.target - start) / self.rate * 60.0
        return self.hold_min * 60.0

    def setpoint(self, start: float, t: float) -> float:
        """The profile setpoint ``t`` seconds into the segment."""
        if self.rate is None:
            return self.target
        step = self.rate / 60.0 * t
        if self.target < start:
            return max(self.target, start - step)
        return min(self.target, start + step)


@dataclass(frozen=True, slots=True)
class Program:
    """A freezing program: segments run in order from :data:`START_C`."""

    number: int
    name: str
    segments: tuple[Segment, ...]

    def schedule(self) -> list[tuple[float, float, Segment]]:
        """(start time s, start temperature °C, segment) for every segment."""
        rows: list[tuple[float, float, Segment]] = []
        t, temp = 0.0, START_C
        for seg in self.segments:
            rows.append((t, temp, seg))
            t += seg.duration_s(temp)
            temp = seg.target
        return rows

    def total_s(self) -> float:
        """Total duration of the program (simulated seconds)."""
        t, temp = 0.0, START_C
        for seg in self.segments:
            t += seg.duration_s(temp)
            temp = seg.target
        return t


START_C: Final = 4.0  # every program starts here; the idle chamber stands by at it
PROGRAMS: Final = {
    # CAR-T profile (domain notes, estimate): the fast −25 °C/min chamber step counters
    # the latent heat released when the sample freezes. Ends at −90 °C (the chamber
    # holds it until reset); transfer below −150 °C is manual.
    1: Program(
        1,
        "car-t",
        (
            Segment(4.0, hold_min=10.0),
            Segment(-4.0, rate=1.0),
            Segment(-40.0, rate=25.0),
            Segment(-12.0, rate=10.0),
            Segment(-40.0, rate=1.0),
            Segment(-90.0, rate=10.0),
        ),
    ),
    2: Program(2, "test", (Segment(-20.0, rate=5.0),)),
}
CHAMBER_TAU_S: Final = 10.0
MAX_COOL_C_PER_MIN: Final = 30.0
MAX_HEAT_C_PER_MIN: Final = 15.0
SAMPLE_TAU_S: Final = 120.0
SAMPLE_LOAD_C: Final = 4.0  # a fresh bag at start
NUCLEATION_C: Final = -7.0  # supercooled sample freezes here
PLATEAU_C: Final = -2.5  # equilibrium freezing temperature of the cryomedium
PLATEAU_END_C: Final = -5.0  # sample temperature when the last water freezes
LATENT_C: Final = 50.0  # latent heat as °C of sensible cooling of the liquid sample
DEVIATION_C: Final = 5.0
DEVIATION_S: Final = 120.0
ALARM_DEVIATION: Final = 1  # chamber > 5 °C from the profile for > 2 min
STEP_S: Final = 1.0  # integration sub-step (simulated seconds)


class CommandRefused(Exception):
    """A command or setpoint the machine cannot accept now (Modbus exception 3)."""


class FreezerModel:
    """One controlled-rate freezer: select a program, start, stop, reset; alarms."""

    def __init__(self) -> None:
        self.program = 1
        self.state = State.IDLE
        self.alarm_code = 0
        self.segment = 0
        self.chamber_c = START_C
        self.sample_c = SAMPLE_LOAD_C
        self.setpoint_c = START_C
        self.frozen_fraction = 0.0
        self.elapsed_s = 0.0
        self.remaining_s = 0.0
        self.ln2_supply_ok = True  # fault injection: False = no cooling
        self._t = 0.0
        self._started_at = 0.0
        self._deviating_since: float | None = None
        self._run: Program | None = None
        self._schedule: list[tuple[float, float, Segment]] = []
        self._total_s = 0.0

    # -- commands ----------------------------------------------------------------------

    def select(self, program: int) -> None:
        """Select a program; refused while running."""
        if program not in PROGRAMS:
            raise CommandRefused(f"no program {program}")
        if self.state is State.RUNNING:
            raise CommandRefused("program cannot change while running")
        self.program = program

    def start(self, now: float) -> None:
        """Start the selected program with a fresh bag at 4 °C (from idle or complete).

        Refused unless the chamber is within 5 °C of the start temperature (after a
        run, reset and let it warm back up first).
        """
        self.advance(now)
        if self.state not in (State.IDLE, State.COMPLETE):
            raise CommandRefused(f"cannot start while {self.state.name.lower()}")
        if abs(self.chamber_c - START_C) > DEVIATION_C:
            raise CommandRefused(
                f"chamber at {self.chamber_c:.1f} °C, not at the start temperature {START_C} °C"
            )
        self._run = PROGRAMS[self.program]
        self._schedule = self._run.schedule()
        self._total_s = self._run.total_s()
        self._started_at = now
        self._deviating_since = None
        self.state = State.RUNNING
        self.sample_c = SAMPLE_LOAD_C
        self.frozen_fraction = 0.0
        self._program_step(now)

    def stop(self, now: float) -> None:
        """Abort a running program: back to idle, the chamber returns to 4 °C."""
        if self.state is State.RUNNING:
            self.advance(now)
            self._to_idle()

    def reset(self) -> None:
        """Acknowledge an alarm or a completed run: back to idle (chamber to 4 °C)."""
        if self.state is State.RUNNING:
            raise CommandRefused("cannot reset while running (stop first)")
        self._to_idle()
        self.alarm_code = 0

    def raise_alarm(self, code: int) -> None:
        """Fault injection: a running or idle machine goes to alarm with ``code``.

        The chamber holds its current temperature while in alarm.
        """
        self.state = State.ALARM
        self.alarm_code = code
        self.segment = 0
        self.remaining_s = 0.0
        self.setpoint_c = self.chamber_c
        self._run = None

    def _to_idle(self) -> None:
        self.state = State.IDLE
        self.segment = 0
        self.remaining_s = 0.0
        self.setpoint_c = START_C
        self._run = None

    # -- time --------------------------------------------------------------------------

    def switch_on(self, now: float) -> None:
        """Start the model's time at simulated ``now`` (nothing is integrated before it)."""
        self._t = max(self._t, now)

    def advance(self, now: float) -> None:
        """Integrate chamber and sample up to simulated time ``now``."""
        while self._t < now:
            dt = min(STEP_S, now - self._t)
            self._t += dt
            self._program_step(self._t)
            self._chamber_step(dt)
            self._sample_step(dt)
            self._check_deviation(self._t)

    def _program_step(self, t: float) -> None:
        prog = self._run
        if self.state is not State.RUNNING or prog is None:
            return
        run_t = max(0.0, t - self._started_at)
        total = self._total_s
        self.elapsed_s = min(run_t, total)
        self.remaining_s = max(0.0, total - run_t)
        if run_t >= total:
            self.state = State.COMPLETE
            self.segment = 0
            self.setpoint_c = prog.segments[-1].target  # held until reset
            self._run = None
            return
        for i, (begin, temp, seg) in enumerate(self._schedule):
            if run_t < begin + seg.duration_s(temp):
                self.segment = i + 1
                self.setpoint_c = seg.setpoint(temp, run_t - begin)
                return

    def _chamber_step(self, dt: float) -> None:
        rate = (self.setpoint_c - self.chamber_c) / CHAMBER_TAU_S
        max_cool = MAX_COOL_C_PER_MIN / 60.0 if self.ln2_supply_ok else 0.0
        rate = max(-max_cool, min(MAX_HEAT_C_PER_MIN / 60.0, rate))
        self.chamber_c += rate * dt
        if self.state is not State.RUNNING and abs(self.setpoint_c - self.chamber_c) < 1e-9:
            self.chamber_c = self.setpoint_c

    def _sample_step(self, dt: float) -> None:
        flow = (self.chamber_c - self.sample_c) / SAMPLE_TAU_S * dt  # °C of sensible heat
        if 0.0 < self.frozen_fraction < 1.0:
            if flow >= 0.0:
                return  # thawing is not modelled
            self.frozen_fraction = min(1.0, self.frozen_fraction - flow / LATENT_C)
            self.sample_c = PLATEAU_C + (PLATEAU_END_C - PLATEAU_C) * self.frozen_fraction
            return
        self.sample_c += flow
        if self.frozen_fraction == 0.0 and self.sample_c <= NUCLEATION_C:
            # Ice nucleates: the supercooling's sensible heat is paid in latent heat.
            self.frozen_fraction = (PLATEAU_C - self.sample_c) / LATENT_C
            self.sample_c = PLATEAU_C

    def _check_deviation(self, t: float) -> None:
        if self.state is not State.RUNNING:
            self._deviating_since = None
            return
        if abs(self.chamber_c - self.setpoint_c) <= DEVIATION_C:
            self._deviating_since = None
        elif self._deviating_since is None:
            self._deviating_since = t
        elif t - self._deviating_since > DEVIATION_S:
            self.raise_alarm(ALARM_DEVIATION)

    @property
    def segment_count(self) -> int:
        """Number of segments of the active (or selected) program."""
        return len((self._run or PROGRAMS[self.program]).segments)
