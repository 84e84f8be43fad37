"""The bench: liquid pumped by the pumps lands on the balance pan (pure, exact).

Flows are piecewise constant, so integrating them lazily at each change or
query is exact. Times are simulated seconds (``ScaledClock.elapsed()``).
"""

from __future__ import annotations

from typing import Final

DENSITY_G_PER_ML: Final = 1.0
SETTLE_S: Final = 2.0  # the pan is still moving this long after the flow changes


class Bench:
    """Mass on the balance pan, fed by any number of pumps."""

    def __init__(self, *, mass_g: float = 0.0, density_g_per_ml: float = DENSITY_G_PER_ML) -> None:
        self.density = density_g_per_ml
        self._mass_g = mass_g
        self._flows: dict[str, float] = {}  # pump name → mL/s onto the pan
        self._t = 0.0
        self._changed_at = -SETTLE_S

    def _update(self, now: float) -> None:
        if now > self._t:
            self._mass_g += sum(self._flows.values()) * self.density * (now - self._t)
            self._t = now

    def set_flow(self, pump: str, ml_per_s: float, now: float) -> None:
        """Pump ``pump`` delivers ``ml_per_s`` onto the pan from ``now`` on."""
        self._update(now)
        if self._flows.get(pump, 0.0) != ml_per_s:
            self._changed_at = now
        self._flows[pump] = ml_per_s

    def mass(self, now: float) -> float:
        """Grams on the pan at simulated time ``now``."""
        self._update(now)
        return self._mass_g

    def add(self, grams: float, now: float) -> None:
        """Put something on (or take it off) the pan."""
        self._update(now)
        self._mass_g += grams
        self._changed_at = now

    def moving(self, now: float) -> bool:
        """True while liquid flows or the pan has not settled since the last change."""
        return any(f != 0.0 for f in self._flows.values()) or now - self._changed_at < SETTLE_S
