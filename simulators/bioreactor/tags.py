"""Tag list of one simulated bioreactor: names, units, access and setpoint limits.

Pure data (no asyncua): the OPC UA address space, the README table and the tests
are all derived from :data:`TAGS`. A tag path ``Group.Name`` becomes the node
``ns=<idx>;s=<vessel>.Group.Name`` under the functional-unit object ``Group``.

Units follow OPC UA Part 8 ``EUInformation`` with UNECE Recommendation 20 common
codes (namespace :data:`UNECE_NAMESPACE`); a unit without a UNECE code has
``UnitId`` −1.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

__all__ = [
    "SIMULATION_UNITS",
    "TAGS",
    "UNECE_NAMESPACE",
    "EngineeringUnit",
    "Tag",
]

UNECE_NAMESPACE: Final = "http://www.opcfoundation.org/UA/units/un/cefact"


@dataclass(frozen=True, slots=True)
class EngineeringUnit:
    """An engineering unit: UNECE common code (may be empty), symbol and name."""

    code: str
    symbol: str
    name: str

    @property
    def unit_id(self) -> int:
        """OPC UA ``UnitId``: the code's ASCII bytes as a big-endian integer, −1 if none."""
        return int.from_bytes(self.code.encode("ascii"), "big") if self.code else -1


CELSIUS: Final = EngineeringUnit("CEL", "°C", "degree Celsius")
PH: Final = EngineeringUnit("C62", "pH", "pH (dimensionless)")
PERCENT_AIR: Final = EngineeringUnit("P1", "%", "percent of air saturation")
PERCENT: Final = EngineeringUnit("P1", "%", "percent")
RPM: Final = EngineeringUnit("RPM", "r/min", "revolutions per minute")
DEGREE: Final = EngineeringUnit("DD", "°", "degree (unit of angle)")
MILLILITRE: Final = EngineeringUnit("MLT", "mL", "millilitre")
MILLILITRE_PER_DAY: Final = EngineeringUnit("G54", "mL/d", "millilitre per day")
CELLS_PER_ML: Final = EngineeringUnit("", "cells/mL", "cells per millilitre")
MILLIMOLAR: Final = EngineeringUnit("M33", "mmol/L", "millimole per litre")
ONE: Final = EngineeringUnit("C62", "1", "one (dimensionless ratio)")
SECOND: Final = EngineeringUnit("SEC", "s", "second")


@dataclass(frozen=True, slots=True)
class Tag:
    """One variable of a vessel."""

    path: str
    description: str
    unit: EngineeringUnit
    limits: tuple[float, float] | None = None  # set for writable setpoints only

    @property
    def group(self) -> str:
        """Functional unit (object) the variable belongs to."""
        return self.path.split(".", 1)[0]

    @property
    def name(self) -> str:
        """Browse name of the variable."""
        return self.path.split(".", 1)[1]

    @property
    def writable(self) -> bool:
        """True for setpoints."""
        return self.limits is not None


#: Every variable of a vessel, in address-space order.
TAGS: Final[tuple[Tag, ...]] = (
    Tag("Temperature.PV", "Broth temperature", CELSIUS),
    Tag("Temperature.SP", "Temperature setpoint (heater pad)", CELSIUS, (4.0, 40.0)),
    Tag("pH.PV", "Broth pH", PH),
    Tag("pH.SP", "pH setpoint (CO2/base loop)", PH, (6.0, 8.0)),
    Tag("DO.PV", "Dissolved oxygen", PERCENT_AIR),
    Tag("DO.SP", "Dissolved oxygen setpoint (O2 enrichment)", PERCENT_AIR, (0.0, 100.0)),
    Tag("Rocking.RatePV", "Rocking rate", RPM),
    Tag("Rocking.RateSP", "Rocking rate setpoint", RPM, (0.0, 30.0)),
    Tag("Rocking.AnglePV", "Rocking angle", DEGREE),
    Tag("Rocking.AngleSP", "Rocking angle setpoint", DEGREE, (0.0, 12.0)),
    Tag("Volume.PV", "Broth volume (load cell)", MILLILITRE),
    Tag("Volume.SP", "Volume setpoint (feed pump fills up to it)", MILLILITRE, (0.0, 2000.0)),
    Tag("Perfusion.RatePV", "Perfusion medium exchange rate", MILLILITRE_PER_DAY),
    Tag("Perfusion.RateSP", "Perfusion rate setpoint", MILLILITRE_PER_DAY, (0.0, 5000.0)),
    Tag("Culture.ViableDensity", "Viable cell density", CELLS_PER_ML),
    Tag("Culture.Viability", "Viable fraction of all cells", PERCENT),
    Tag("Culture.Glucose", "Glucose concentration", MILLIMOLAR),
    Tag("Culture.Lactate", "Lactate concentration", MILLIMOLAR),
)

#: Units of the numeric ``Simulation`` variables.
SIMULATION_UNITS: Final[dict[str, EngineeringUnit]] = {"TimeScale": ONE, "StepSeconds": SECOND}
