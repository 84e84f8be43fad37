"""Deterministic model of one rocking-motion bioreactor culturing T cells.

The model is pure: no clock, no I/O, no asyncio. A caller sets
:attr:`BioreactorModel.setpoints`, calls :meth:`BioreactorModel.step` with a time
step in simulated seconds, and reads :meth:`BioreactorModel.measurements`. Sensor
noise comes from a seeded :class:`random.Random`, so a given seed, setpoint history
and step sequence always give the same readings.

Equipment behaviour:

* temperature: heater pad, first order towards ``max(SP, ambient)`` (it cannot cool);
* pH: falls as lactate accumulates; a CO2/base loop pulls it towards SP within a
  bounded authority, first order;
* DO: gas transfer ``kLa`` grows with rocking rate and angle; the gas is air,
  enriched with O2 up to 40 % when the culture needs more, so DO stays above SP
  until the uptake outruns the enriched transfer (dense culture, slow rocking);
* rocking rate and angle: slew-rate limited towards SP;
* volume: a feed pump fills towards SP with fresh medium at a bounded rate; it
  never drains (only :meth:`~BioreactorModel.harvest` removes broth);
* perfusion: medium exchange at the SP rate, in = out, cells retained.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass, replace
from typing import Final

from simulators.bioreactor.kinetics import (
    Culture,
    GrowthParameters,
    grow,
    oxygen_uptake_pct_per_h,
)

__all__ = [
    "MEASUREMENT_NAMES",
    "SETPOINT_FIELDS",
    "BioreactorModel",
    "Setpoints",
    "VesselParameters",
    "VesselStateError",
]

#: Names of the measured values, as published by the OPC UA server.
MEASUREMENT_NAMES: Final[tuple[str, ...]] = (
    "Temperature.PV",
    "pH.PV",
    "DO.PV",
    "Rocking.RatePV",
    "Rocking.AnglePV",
    "Volume.PV",
    "Perfusion.RatePV",
    "Culture.ViableDensity",
    "Culture.Viability",
    "Culture.Glucose",
    "Culture.Lactate",
)

#: Setpoint tag name → attribute of :class:`Setpoints`.
SETPOINT_FIELDS: Final[dict[str, str]] = {
    "Temperature.SP": "temperature_c",
    "pH.SP": "ph",
    "DO.SP": "do_pct",
    "Rocking.RateSP": "rocking_rpm",
    "Rocking.AngleSP": "rocking_angle_deg",
    "Volume.SP": "volume_ml",
    "Perfusion.RateSP": "perfusion_ml_per_day",
}

_EMPTY_ML = 0.5  # below this the bag counts as empty


class VesselStateError(RuntimeError):
    """The vessel is in the wrong state for the request (e.g. inoculated twice)."""


@dataclass(slots=True)
class Setpoints:
    """Operator/controller setpoints of one vessel."""

    temperature_c: float = 37.0
    ph: float = 7.2
    do_pct: float = 50.0
    rocking_rpm: float = 0.0
    rocking_angle_deg: float = 0.0
    volume_ml: float = 0.0
    perfusion_ml_per_day: float = 0.0


@dataclass(frozen=True, slots=True)
class VesselParameters:
    """Equipment constants and sensor noise (standard deviations) of the vessel."""

    ambient_c: float = 22.0
    heater_tau_s: float = 600.0
    ph_fresh: float = 7.40
    ph_per_lactate_mm: float = 0.02
    ph_raise_max: float = 0.35
    ph_lower_max: float = 0.40
    ph_tau_s: float = 1200.0
    kla_min_per_h: float = 0.3
    kla_ref_per_h: float = 4.0  # at 10 rpm and 7°
    do_gas_max_pct: float = 190.0  # 40 % O2 in the inlet gas
    rocking_slew_rpm_per_s: float = 1.0
    angle_slew_deg_per_s: float = 0.5
    feed_rate_ml_per_min: float = 20.0
    medium_glucose_mm: float = 20.0
    capacity_ml: float = 2000.0
    max_substep_s: float = 60.0
    noise_temperature_c: float = 0.02
    noise_ph: float = 0.005
    noise_do_pct: float = 0.3
    noise_volume_ml: float = 0.2
    noise_density_rel: float = 0.01
    noise_viability_pct: float = 0.2
    noise_metabolite_mm: float = 0.05


def _clamp(x: float, lo: float, hi: float) -> float:
    return lo if x < lo else hi if x > hi else x


def _slew(pv: float, sp: float, max_delta: float) -> float:
    return pv + _clamp(sp - pv, -max_delta, max_delta)


class BioreactorModel:
    """One rocking bioreactor: equipment loops, medium mass balance and culture."""

    def __init__(
        self,
        seed: int = 0,
        growth: GrowthParameters | None = None,
        vessel: VesselParameters | None = None,
    ) -> None:
        """Create an empty, idle vessel at ambient temperature."""
        self.setpoints = Setpoints()
        self._g = growth or GrowthParameters()
        self._v = vessel or VesselParameters()
        self._rng = random.Random(seed)
        self._t_s = 0.0
        self._inoculated_at_s: float | None = None
        self._temperature_c = self._v.ambient_c
        self._ph = self._v.ph_fresh
        self._do_pct = 100.0
        self._rpm = 0.0
        self._angle_deg = 0.0
        self._volume_ml = 0.0
        self._perfusion_ml_per_day = 0.0
        self._culture = Culture(glucose_mm=self._v.medium_glucose_mm)
        self._forced: dict[str, float] = {}
        self._readings: dict[str, float] = {}
        self._sample()

    # -- read-only state ------------------------------------------------------------

    @property
    def growth(self) -> GrowthParameters:
        """The culture's kinetic constants (fixed, or drawn for this batch)."""
        return self._g

    @property
    def time_s(self) -> float:
        """Simulated seconds stepped so far."""
        return self._t_s

    @property
    def inoculated(self) -> bool:
        """True while the bag holds a culture."""
        return self._inoculated_at_s is not None

    @property
    def culture_age_h(self) -> float:
        """Hours since inoculation (0 when not inoculated)."""
        if self._inoculated_at_s is None:
            return 0.0
        return (self._t_s - self._inoculated_at_s) / 3600.0

    @property
    def temperature_c(self) -> float:
        """True broth temperature (°C)."""
        return self._temperature_c

    @property
    def ph(self) -> float:
        """True broth pH."""
        return self._ph

    @property
    def do_pct(self) -> float:
        """True dissolved oxygen (% air saturation)."""
        return self._do_pct

    @property
    def rocking_rpm(self) -> float:
        """Actual rocking rate (rpm)."""
        return self._rpm

    @property
    def rocking_angle_deg(self) -> float:
        """Actual rocking angle (degrees)."""
        return self._angle_deg

    @property
    def volume_ml(self) -> float:
        """True broth volume (mL)."""
        return self._volume_ml

    @property
    def perfusion_ml_per_day(self) -> float:
        """Actual perfusion (medium exchange) rate (mL/day)."""
        return self._perfusion_ml_per_day

    @property
    def culture(self) -> Culture:
        """A copy of the true culture state."""
        return replace(self._culture)

    @property
    def viable_cells(self) -> float:
        """Total viable cells in the bag."""
        return self._culture.viable_per_ml * self._volume_ml

    def kla_per_h(self) -> float:
        """Oxygen transfer coefficient kLa (1/h) at the current rocking rate and angle."""
        v = self._v
        return (
            v.kla_min_per_h + v.kla_ref_per_h * (self._rpm / 10.0) * (self._angle_deg / 7.0) ** 1.5
        )

    # -- commands -------------------------------------------------------------------

    def inoculate(self, volume_ml: float, viable_cells: float) -> None:
        """Add ``viable_cells`` suspended in ``volume_ml`` of medium to the bag.

        Raises ValueError for non-positive or non-finite values or an overfull bag,
        VesselStateError if the bag already holds a culture.
        """
        for name, value in (("volume_ml", volume_ml), ("viable_cells", viable_cells)):
            if not (math.isfinite(value) and value > 0.0):
                raise ValueError(f"{name} must be a positive number, got {value!r}")
        if self._inoculated_at_s is not None:
            raise VesselStateError("vessel is already inoculated")
        if self._volume_ml + volume_ml > self._v.capacity_ml:
            raise ValueError(
                f"inoculum of {volume_ml} mL overfills the bag "
                f"({self._volume_ml:.1f} of {self._v.capacity_ml:.0f} mL used)"
            )
        dead = viable_cells * (1.0 - self._g.inoculum_viability) / self._g.inoculum_viability
        self._add_medium(volume_ml, viable_cells, dead)
        self._inoculated_at_s = self._t_s
        self._sample()

    def harvest(self, volume_ml: float) -> float:
        """Pump ``volume_ml`` of broth out of the bag; return the viable cells removed.

        The volume setpoint is lowered to what remains so the feed pump does not
        refill the bag. Emptying the bag ends the culture (it may be inoculated again).
        """
        if not (math.isfinite(volume_ml) and volume_ml > 0.0):
            raise ValueError(f"volume_ml must be a positive number, got {volume_ml!r}")
        if self._inoculated_at_s is None:
            raise VesselStateError("vessel holds no culture to harvest")
        if volume_ml > self._volume_ml + 1e-9:
            raise ValueError(
                f"cannot harvest {volume_ml} mL from {self._volume_ml:.1f} mL of broth"
            )
        removed = min(volume_ml, self._volume_ml)
        cells = self._culture.viable_per_ml * removed
        self._volume_ml -= removed
        self.setpoints.volume_ml = min(self.setpoints.volume_ml, self._volume_ml)
        if self._volume_ml < _EMPTY_ML:
            self._volume_ml = 0.0
            self.setpoints.volume_ml = 0.0
            self._inoculated_at_s = None
            self._culture = Culture(glucose_mm=self._v.medium_glucose_mm)
            self._ph = self._v.ph_fresh
        self._sample()
        return cells

    def install_bag(self) -> None:
        """Replace the bag by a new, empty one (the operator's bag change between two
        batches): no culture, no broth, fresh medium chemistry; the volume setpoint goes
        to 0. The equipment (heater, rocker) and its other setpoints are unchanged."""
        self._inoculated_at_s = None
        self._volume_ml = 0.0
        self.setpoints.volume_ml = 0.0
        self._culture = Culture(glucose_mm=self._v.medium_glucose_mm)
        self._ph = self._v.ph_fresh
        self._do_pct = 100.0
        self._sample()

    def force(self, name: str, value: float | None) -> None:
        """Override a measurement (stuck sensor, spike); ``None`` releases it.

        Only the reading changes; the process itself is unaffected.
        """
        if name not in MEASUREMENT_NAMES:
            raise KeyError(f"unknown measurement {name!r}; known: {', '.join(MEASUREMENT_NAMES)}")
        if value is None:
            self._forced.pop(name, None)
        else:
            self._forced[name] = float(value)

    @property
    def forced(self) -> dict[str, float]:
        """Currently overridden measurements."""
        return dict(self._forced)

    def measurements(self) -> dict[str, float]:
        """Sensor readings after the last step, keyed by :data:`MEASUREMENT_NAMES`."""
        if not self._forced:
            return dict(self._readings)
        readings = dict(self._readings)
        readings.update(self._forced)
        return readings

    def step(self, dt_s: float) -> None:
        """Advance the model by ``dt_s`` simulated seconds (internally ≤ 60 s sub-steps)."""
        if not (math.isfinite(dt_s) and dt_s > 0.0):
            raise ValueError(f"dt_s must be a positive number, got {dt_s!r}")
        n = max(1, math.ceil(dt_s / self._v.max_substep_s - 1e-9))
        h = dt_s / n
        for _ in range(n):
            self._advance(h)
        self._sample()

    # -- internals ------------------------------------------------------------------

    def _add_medium(self, volume_ml: float, viable: float = 0.0, dead: float = 0.0) -> None:
        """Mix fresh medium (optionally carrying cells) into the bag."""
        c = self._culture
        old = self._volume_ml
        new = old + volume_ml
        c.viable_per_ml = (c.viable_per_ml * old + viable) / new
        c.dead_per_ml = (c.dead_per_ml * old + dead) / new
        c.glucose_mm = (c.glucose_mm * old + self._v.medium_glucose_mm * volume_ml) / new
        c.lactate_mm = c.lactate_mm * old / new
        self._volume_ml = new

    def _advance(self, h: float) -> None:
        v, sp, c = self._v, self.setpoints, self._culture
        self._rpm = _slew(self._rpm, max(sp.rocking_rpm, 0.0), v.rocking_slew_rpm_per_s * h)
        self._angle_deg = _slew(
            self._angle_deg, max(sp.rocking_angle_deg, 0.0), v.angle_slew_deg_per_s * h
        )
        target_ml = min(sp.volume_ml, v.capacity_ml)
        if self._volume_ml < target_ml:
            self._add_medium(min(v.feed_rate_ml_per_min * h / 60.0, target_ml - self._volume_ml))
        self._perfusion_ml_per_day = (
            max(sp.perfusion_ml_per_day, 0.0) if self._volume_ml > 0 else 0.0
        )
        if self._perfusion_ml_per_day > 0.0:
            washout = 1.0 - math.exp(-self._perfusion_ml_per_day * h / 86400.0 / self._volume_ml)
            c.glucose_mm += (v.medium_glucose_mm - c.glucose_mm) * washout
            c.lactate_mm -= c.lactate_mm * washout
        heat_target = max(sp.temperature_c, v.ambient_c)
        self._temperature_c = heat_target + (self._temperature_c - heat_target) * math.exp(
            -h / v.heater_tau_s
        )
        h_h = h / 3600.0
        if self._inoculated_at_s is not None and self._volume_ml > 0.0:
            grow(
                self._g,
                c,
                h_h,
                (self._t_s - self._inoculated_at_s) / 3600.0,
                self._temperature_c,
                self._ph,
                self._do_pct,
            )
        ph_open = v.ph_fresh - v.ph_per_lactate_mm * c.lactate_mm
        ph_target = ph_open + _clamp(sp.ph - ph_open, -v.ph_lower_max, v.ph_raise_max)
        self._ph = ph_target + (self._ph - ph_target) * math.exp(-h / v.ph_tau_s)
        kla = self.kla_per_h()
        demand = oxygen_uptake_pct_per_h(self._g, c.viable_per_ml) / kla
        gas = _clamp(sp.do_pct + demand, 100.0, v.do_gas_max_pct)
        do_ss = gas - demand
        self._do_pct = max(0.0, do_ss + (self._do_pct - do_ss) * math.exp(-kla * h_h))
        self._t_s += h

    def _sample(self) -> None:
        """Draw noisy sensor readings of the current state."""
        v, c, g = self._v, self._culture, self._rng.gauss
        r = self._readings
        r["Temperature.PV"] = self._temperature_c + g(0.0, v.noise_temperature_c)
        r["pH.PV"] = self._ph + g(0.0, v.noise_ph)
        r["DO.PV"] = max(0.0, self._do_pct + g(0.0, v.noise_do_pct))
        r["Rocking.RatePV"] = self._rpm
        r["Rocking.AnglePV"] = self._angle_deg
        r["Volume.PV"] = max(0.0, self._volume_ml + g(0.0, v.noise_volume_ml))
        r["Perfusion.RatePV"] = self._perfusion_ml_per_day
        r["Culture.ViableDensity"] = max(0.0, c.viable_per_ml * (1.0 + g(0.0, v.noise_density_rel)))
        viability = c.viability_pct
        if viability > 0.0:
            viability = _clamp(viability + g(0.0, v.noise_viability_pct), 0.0, 100.0)
        r["Culture.Viability"] = viability
        r["Culture.Glucose"] = max(0.0, c.glucose_mm + g(0.0, v.noise_metabolite_mm))
        r["Culture.Lactate"] = max(0.0, c.lactate_mm + g(0.0, v.noise_metabolite_mm))
