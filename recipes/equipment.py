"""Equipment class descriptions: what a unit of a given class can measure, be set to, and do."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Literal

Access = Literal["r", "w"]
"""Capability access: read-only (``r``) or writable setpoint (``w``)."""


@dataclass(frozen=True, slots=True)
class CapabilitySpec:
    """A named value of a unit (``temperature.pv``), its engineering unit and writability."""

    name: str
    unit: str
    writable: bool


@dataclass(frozen=True, slots=True)
class MethodSpec:
    """A command a unit can execute, with its arguments' engineering units."""

    name: str
    args: dict[str, str]


@dataclass(frozen=True, slots=True)
class EquipmentClass:
    """All capabilities and methods shared by units of one class."""

    name: str
    capabilities: dict[str, CapabilitySpec]
    methods: dict[str, MethodSpec]


def equipment_class(
    name: str,
    capabilities: Iterable[tuple[str, str, Access]],
    methods: Mapping[str, Mapping[str, str]],
) -> EquipmentClass:
    """Build an :class:`EquipmentClass` from compact catalog rows."""
    return EquipmentClass(
        name=name,
        capabilities={
            cap: CapabilitySpec(cap, unit, access == "w") for cap, unit, access in capabilities
        },
        methods={method: MethodSpec(method, dict(args)) for method, args in methods.items()},
    )
