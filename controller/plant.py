"""Plant configuration: which unit is which instrument at which address."""

from __future__ import annotations

import tomllib
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

ON_RESTART = ("reassert", "hold")
"""A unit's policies for an instrument that restarted (lost its setpoints)."""


class PlantError(Exception):
    """A plant file is missing, malformed or inconsistent (message names file and field)."""


@dataclass(frozen=True, slots=True)
class UnitConfig:
    """One ISA-88 unit: an instrument reached through a device profile."""

    name: str
    equipment_class: str
    profile: str
    endpoint: str
    address: dict[str, str] = field(default_factory=dict)
    #: Connection settings (OPC UA security and identity), paths made absolute.
    connection: dict[str, object] = field(default_factory=dict)
    #: What the batch does when the instrument comes back without the setpoints last
    #: written (it restarted): ``reassert`` them (journaled writes; an exception for
    #: review) or ``hold`` the batch.
    on_restart: str = "reassert"


@dataclass(frozen=True, slots=True)
class Plant:
    """A parsed plant file."""

    name: str
    site: str
    mode: str
    time_scale: float
    units: tuple[UnitConfig, ...]
    simulators: tuple[dict[str, Any], ...]
    source: str

    @property
    def simulation(self) -> bool:
        """True for a simulation plant (records are marked not for GMP use)."""
        return self.mode == "simulation"

    def unit(self, name: str) -> UnitConfig:
        """A unit by name."""
        for unit in self.units:
            if unit.name == name:
                return unit
        raise PlantError(f"{self.source}: no unit named {name!r}")

    def with_endpoints(self, moved: dict[str, str]) -> Plant:
        """The plant with unit endpoints rewritten (configured URL → actual URL)."""
        units = tuple(replace(u, endpoint=moved.get(u.endpoint, u.endpoint)) for u in self.units)
        return replace(self, units=units)


def load_plant(path: str | Path) -> Plant:
    """Parse and check a plant file."""
    path = Path(path)
    try:
        doc = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise PlantError(f"plant file not found: {path}") from None
    except tomllib.TOMLDecodeError as exc:
        raise PlantError(f"{path}: {exc}") from None
    return _parse(doc, str(path))


def _need(table: dict[str, Any], key: str, kind: type, where: str) -> Any:
    if key not in table:
        raise PlantError(f"{where}: missing {key!r}")
    value = table[key]
    if kind is float and isinstance(value, int) and not isinstance(value, bool):
        value = float(value)
    if not isinstance(value, kind):
        raise PlantError(f"{where}: {key!r} must be {kind.__name__}, got {value!r}")
    return value


_CONNECTION_PATHS = ("certificate", "private_key", "server_certificate")
_SECURITY_PATHS = ("certificate", "private_key", "trusted")


def _paths(table: dict[str, Any], keys: tuple[str, ...], src: str) -> dict[str, object]:
    """``table`` with the file paths under ``keys`` made relative to the plant file."""
    base = Path(src).resolve().parent
    out: dict[str, object] = dict(table)
    for key in keys:
        value = out.get(key)
        if isinstance(value, str) and value:
            out[key] = str(base / Path(value).expanduser())
    return out


def _simulator(spec: dict[str, Any], src: str) -> dict[str, Any]:
    security = spec.get("security")
    if isinstance(security, dict):
        spec["security"] = _paths(security, _SECURITY_PATHS, src)
    return spec


def _parse(doc: dict[str, Any], src: str) -> Plant:
    head = doc.get("plant", {})
    mode = str(head.get("mode", "gmp"))
    if mode not in ("simulation", "gmp"):
        raise PlantError(f"{src}: [plant] mode must be 'simulation' or 'gmp', got {mode!r}")
    sim = doc.get("simulation", {})
    time_scale = float(sim.get("time_scale", 1.0))
    if time_scale <= 0:
        raise PlantError(f"{src}: [simulation] time_scale must be positive")
    units = []
    seen: set[str] = set()
    for i, raw in enumerate(doc.get("units", [])):
        where = f"{src}: [[units]] #{i + 1}"
        name = _need(raw, "name", str, where)
        if name in seen:
            raise PlantError(f"{where}: duplicate unit name {name!r}")
        seen.add(name)
        address = raw.get("address", {})
        if not isinstance(address, dict):
            raise PlantError(f"{where}: 'address' must be a table")
        connection = raw.get("connection", {})
        if not isinstance(connection, dict):
            raise PlantError(f"{where}: 'connection' must be a table")
        on_restart = raw.get("on_restart", "reassert")
        if on_restart not in ON_RESTART:
            raise PlantError(
                f"{where}: 'on_restart' must be one of {', '.join(ON_RESTART)}, got {on_restart!r}"
            )
        units.append(
            UnitConfig(
                name=name,
                equipment_class=_need(raw, "class", str, where),
                profile=_need(raw, "profile", str, where),
                endpoint=_need(raw, "endpoint", str, where),
                address={str(k): str(v) for k, v in address.items()},
                connection=_paths(connection, _CONNECTION_PATHS, src),
                on_restart=on_restart,
            )
        )
    if not units:
        raise PlantError(f"{src}: no [[units]] defined")
    simulators = tuple(_simulator(dict(s), src) for s in doc.get("simulators", []))
    if simulators and mode != "simulation":
        raise PlantError(f"{src}: [[simulators]] are only allowed when mode = 'simulation'")
    return Plant(
        name=str(head.get("name", Path(src).stem)),
        site=str(head.get("site", "")),
        mode=mode,
        time_scale=time_scale,
        units=tuple(units),
        simulators=simulators,
        source=src,
    )
