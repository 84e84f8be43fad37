"""The equipment class catalog (data only). Add new classes here: pump, balance, centrifuge…"""

from __future__ import annotations

from recipes.equipment import EquipmentClass, equipment_class

ROCKING_BIOREACTOR = equipment_class(
    "rocking_bioreactor",
    capabilities=[
        ("temperature.pv", "degC", "r"),
        ("temperature.sp", "degC", "w"),
        ("ph.pv", "pH", "r"),
        ("ph.sp", "pH", "w"),
        ("do.pv", "%", "r"),
        ("do.sp", "%", "w"),
        ("rocking.rate_pv", "rpm", "r"),
        ("rocking.rate_sp", "rpm", "w"),
        ("rocking.angle_pv", "deg", "r"),
        ("rocking.angle_sp", "deg", "w"),
        ("volume.pv", "mL", "r"),
        ("volume.sp", "mL", "w"),
        ("perfusion.rate_pv", "mL/d", "r"),
        ("perfusion.rate_sp", "mL/d", "w"),
        ("culture.viable_density", "cells/mL", "r"),
        ("culture.viability", "%", "r"),
        ("culture.glucose", "mM", "r"),
        ("culture.lactate", "mM", "r"),
    ],
    methods={
        "inoculate": {"volume": "mL", "viable_cells": "cells"},
    },
)

EQUIPMENT_CLASSES: dict[str, EquipmentClass] = {cls.name: cls for cls in (ROCKING_BIOREACTOR,)}
"""Every known equipment class by name."""
