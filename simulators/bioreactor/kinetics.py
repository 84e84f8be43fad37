"""T-cell growth kinetics for the bioreactor simulator (pure functions, no I/O).

Unstructured model: viable and dead cell densities, glucose and lactate. Growth is
Monod on glucose with a post-activation lag, an activation signal that fades after
the first week, lactate inhibition, and mild temperature, pH, oxygen and density
effects. Death rises under glucose starvation, high lactate, heat and hypoxia.
Dead cells lyse slowly. Values follow shared/notes/domain.md.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass, replace

__all__ = [
    "Culture",
    "GrowthParameters",
    "death_rate_per_h",
    "draw_growth",
    "grow",
    "growth_rate_per_h",
    "oxygen_uptake_pct_per_h",
]

# Oxygen solubility in culture medium at 37 °C under air (mol/mL): 0.2 mM.
_O2_SATURATION_MOL_PER_ML = 2.0e-7  # 0.2 mmol/L
_PMOL = 1e-12


@dataclass(frozen=True, slots=True)
class GrowthParameters:
    """Kinetic constants of the culture; defaults give a healthy 10–11 day expansion."""

    mu_max_per_h: float = 0.031
    lag_h: float = 36.0
    lag_width_h: float = 5.0
    activation_peak_h: float = 180.0
    activation_decay_h: float = 54.0
    ks_glucose_mm: float = 0.5
    lactate_onset_mm: float = 20.0
    lactate_stop_mm: float = 45.0
    density_limit_per_ml: float = 4.0e7
    kd_base_per_h: float = 0.002
    kd_starvation_per_h: float = 0.03
    starvation_glucose_mm: float = 2.0
    kd_lactate_per_h_mm: float = 0.002
    lactate_toxic_mm: float = 30.0
    kd_heat_per_h_c: float = 0.02
    heat_onset_c: float = 39.0
    kd_hypoxia_per_h: float = 0.02
    hypoxia_do_pct: float = 5.0
    lysis_per_h: float = 0.004
    glucose_uptake_pmol_per_cell_day: float = 1.5
    uptake_km_glucose_mm: float = 0.2
    lactate_per_glucose: float = 1.8
    o2_uptake_pmol_per_cell_h: float = 0.03
    inoculum_viability: float = 0.95


BIOLOGY_RANGES = {
    "lag_h": (24.0, 48.0),
    "mu_max_per_h": (0.024, 0.035),
    "kd_base_per_h": (0.001, 0.0035),
}
"""Published ranges a drawn batch stays within (shared/notes/domain.md: lag 1-2 d,
doubling 20-36 h, viability 85-95 % in a healthy run)."""


def draw_growth(rng: random.Random, base: GrowthParameters | None = None) -> GrowthParameters:
    """One batch's biology: lag, maximum growth rate and base death rate drawn around the
    defaults from ``rng`` (normal, clipped to :data:`BIOLOGY_RANGES`)."""
    base = base or GrowthParameters()

    def draw(name: str, mean: float, sd: float) -> float:
        low, high = BIOLOGY_RANGES[name]
        return min(high, max(low, rng.gauss(mean, sd)))

    return replace(
        base,
        lag_h=draw("lag_h", base.lag_h, 4.0),
        mu_max_per_h=draw("mu_max_per_h", base.mu_max_per_h, 0.0022),
        kd_base_per_h=draw("kd_base_per_h", base.kd_base_per_h, 0.0004),
    )


@dataclass(slots=True)
class Culture:
    """Well-mixed culture state, all per mL of broth."""

    viable_per_ml: float = 0.0
    dead_per_ml: float = 0.0
    glucose_mm: float = 0.0
    lactate_mm: float = 0.0

    @property
    def viability_pct(self) -> float:
        """Viable fraction of all cells in percent (0 when there are no cells)."""
        total = self.viable_per_ml + self.dead_per_ml
        return 100.0 * self.viable_per_ml / total if total > 0.0 else 0.0


def _clamp(x: float, lo: float, hi: float) -> float:
    return lo if x < lo else hi if x > hi else x


def growth_rate_per_h(
    p: GrowthParameters,
    c: Culture,
    age_h: float,
    temperature_c: float,
    ph: float,
    do_pct: float,
) -> float:
    """Specific growth rate μ (1/h) ``age_h`` hours after inoculation."""
    lag = 1.0 / (1.0 + math.exp(-(age_h - p.lag_h) / p.lag_width_h))
    fade = age_h - p.activation_peak_h
    activation = 1.0 if fade <= 0.0 else math.exp(-fade / p.activation_decay_h)
    glucose = c.glucose_mm / (p.ks_glucose_mm + c.glucose_mm) if c.glucose_mm > 0.0 else 0.0
    lactate = _clamp(
        (p.lactate_stop_mm - c.lactate_mm) / (p.lactate_stop_mm - p.lactate_onset_mm), 0.0, 1.0
    )
    temperature = _clamp(1.0 - ((temperature_c - 37.0) / 5.0) ** 2, 0.0, 1.0)
    acidity = _clamp(1.0 - ((ph - 7.2) / 0.8) ** 2, 0.0, 1.0)
    oxygen = do_pct / (do_pct + 2.0) if do_pct > 0.0 else 0.0
    density = _clamp(1.0 - c.viable_per_ml / p.density_limit_per_ml, 0.0, 1.0)
    return (
        p.mu_max_per_h
        * lag
        * activation
        * glucose
        * lactate
        * temperature
        * acidity
        * oxygen
        * density
    )


def death_rate_per_h(p: GrowthParameters, c: Culture, temperature_c: float, do_pct: float) -> float:
    """Specific death rate k_d (1/h)."""
    starvation = _clamp(
        (p.starvation_glucose_mm - c.glucose_mm) / p.starvation_glucose_mm, 0.0, 1.0
    )
    hypoxia = _clamp((p.hypoxia_do_pct - do_pct) / p.hypoxia_do_pct, 0.0, 1.0)
    return (
        p.kd_base_per_h
        + p.kd_starvation_per_h * starvation
        + p.kd_lactate_per_h_mm * max(0.0, c.lactate_mm - p.lactate_toxic_mm)
        + p.kd_heat_per_h_c * max(0.0, temperature_c - p.heat_onset_c)
        + p.kd_hypoxia_per_h * hypoxia
    )


def oxygen_uptake_pct_per_h(p: GrowthParameters, viable_per_ml: float) -> float:
    """Oxygen uptake rate expressed in % air saturation per hour."""
    mol_per_ml_h = p.o2_uptake_pmol_per_cell_h * _PMOL * viable_per_ml
    return 100.0 * mol_per_ml_h / _O2_SATURATION_MOL_PER_ML


def grow(
    p: GrowthParameters,
    c: Culture,
    dt_h: float,
    age_h: float,
    temperature_c: float,
    ph: float,
    do_pct: float,
) -> None:
    """Advance ``c`` in place by ``dt_h`` hours (explicit Euler; keep dt_h ≲ 0.05)."""
    viable = c.viable_per_ml
    if viable <= 0.0 and c.dead_per_ml <= 0.0:
        return
    mu = growth_rate_per_h(p, c, age_h, temperature_c, ph, do_pct)
    kd = death_rate_per_h(p, c, temperature_c, do_pct)
    uptake = p.glucose_uptake_pmol_per_cell_day / 24.0
    if c.glucose_mm > 0.0:
        uptake *= c.glucose_mm / (c.glucose_mm + p.uptake_km_glucose_mm)
    else:
        uptake = 0.0
    # pmol/mL = 1e-6 mmol/L
    consumed_mm = min(c.glucose_mm, uptake * viable * dt_h * 1e-6)
    c.glucose_mm -= consumed_mm
    c.lactate_mm += p.lactate_per_glucose * consumed_mm
    c.viable_per_ml = viable + (mu - kd) * viable * dt_h
    c.dead_per_ml += (kd * viable - p.lysis_per_h * c.dead_per_ml) * dt_h
    c.viable_per_ml = max(c.viable_per_ml, 0.0)
    c.dead_per_ml = max(c.dead_per_ml, 0.0)
