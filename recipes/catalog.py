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

CELL_PROCESSOR = equipment_class(
    "cell_processor",
    capabilities=[
        ("program.selected", "", "w"),
        ("input_volume.sp", "mL", "w"),
        ("final_volume.sp", "mL", "w"),
        ("state", "", "r"),
        ("phase", "", "r"),
        ("alarm.code", "", "r"),
        ("alarm.active", "", "r"),
        ("run.running", "", "r"),
        ("run.complete", "", "r"),
        ("run.remaining", "s", "r"),
        ("processed_volume.pv", "mL", "r"),
        ("output_volume.pv", "mL", "r"),
        ("cell_recovery.pv", "%", "r"),
    ],
    methods={
        "start_program": {"program": ""},
        "stop": {},
        "reset": {},
    },
)
"""Counterflow centrifuge / cell processor: wash and concentrate programs."""

PERISTALTIC_PUMP = equipment_class(
    "peristaltic_pump",
    capabilities=[
        ("pump.rate_sp", "rpm", "w"),
        ("pump.speed_pv", "rpm", "r"),
        ("pump.running", "", "r"),
    ],
    methods={"start": {}, "stop": {}},
)

BALANCE = equipment_class(
    "balance",
    capabilities=[
        ("balance.weight", "g", "r"),
        ("balance.stable", "", "r"),
    ],
    methods={"tare": {}, "zero": {}},
)

CONTROLLED_RATE_FREEZER = equipment_class(
    "controlled_rate_freezer",
    capabilities=[
        ("program.selected", "", "w"),
        ("state", "", "r"),
        ("segment", "", "r"),
        ("alarm.code", "", "r"),
        ("alarm.active", "", "r"),
        ("run.running", "", "r"),
        ("run.complete", "", "r"),
        ("run.remaining", "s", "r"),
        ("chamber_temperature.pv", "degC", "r"),
        ("sample_temperature.pv", "degC", "r"),
    ],
    methods={
        "start_program": {"program": ""},
        "stop": {},
        "reset": {},
    },
)
"""Controlled-rate freezer: segment programs (ramps, holds); state codes as the cell processor."""

EQUIPMENT_CLASSES: dict[str, EquipmentClass] = {
    cls.name: cls
    for cls in (
        ROCKING_BIOREACTOR,
        CELL_PROCESSOR,
        PERISTALTIC_PUMP,
        BALANCE,
        CONTROLLED_RATE_FREEZER,
    )
}
"""Every known equipment class by name."""
