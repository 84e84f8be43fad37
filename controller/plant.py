"""Plant configuration: which unit is which instrument at which address."""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field, replace
from datetime import date
from pathlib import Path
from typing import Any

from controller.mqtt_config import MqttConfig, MqttConfigError, parse_mqtt
from drivers.profile_schema import Key, Problems
from drivers.tomlpos import Located, TomlSyntaxError, load_located

ON_RESTART = ("reassert", "hold")
"""A unit's policies for an instrument that restarted (lost its setpoints)."""


class PlantError(Exception):
    """A plant file is missing, malformed or inconsistent (message names file and field)."""


QUALIFIED = "qualified"


@dataclass(frozen=True, slots=True)
class AssetStatus:
    """A unit's asset identity and GMP status (R8): what the plant file declares."""

    asset_id: str
    serial: str
    calibration_due: date
    qualification: str

    def problems(self, today: date) -> list[str]:
        """Why this unit may not start a batch on `today` (empty when it may)."""
        found = []
        if self.calibration_due < today:
            found.append(f"calibration due {self.calibration_due.isoformat()} (overdue)")
        if self.qualification != QUALIFIED:
            found.append(f"qualification {self.qualification!r}")
        return found

    def to_dict(self, today: date) -> dict[str, object]:
        """As recorded with the batch: identity, due date and status on `today`."""
        return {
            "asset_id": self.asset_id,
            "serial": self.serial,
            "calibration_due": self.calibration_due.isoformat(),
            "calibration": "overdue" if self.calibration_due < today else "in calibration",
            "qualification": self.qualification,
        }


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
    #: Asset ID, serial, calibration due date and qualification (`asset = {…}`), if declared.
    asset: AssetStatus | None = None
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
    #: where live batch data is published (``[mqtt]``; None: nothing is published)
    mqtt: MqttConfig | None = None

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


MAX_PLANT_BYTES = 1_000_000
MAX_TIME_SCALE = 1e7


def load_plant(path: str | Path) -> Plant:
    """Parse and check a plant file; every problem is listed in one PlantError, one
    ``FILE:LINE:COL: message`` per line (unknown keys with a "did you mean")."""
    path = Path(path)
    try:
        with path.open("rb") as handle:
            data = handle.read(MAX_PLANT_BYTES + 1)
    except FileNotFoundError:
        raise PlantError(f"plant file not found: {path}") from None
    except OSError as exc:
        raise PlantError(f"{path}: cannot read ({exc.strerror})") from None
    if len(data) > MAX_PLANT_BYTES:
        raise PlantError(f"{path}:1:1: larger than {MAX_PLANT_BYTES} bytes; not a plant file")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        raise PlantError(f"{path}:{line}:1: not UTF-8 text") from None
    try:
        located = load_located(text, str(path))
    except TomlSyntaxError as exc:
        raise PlantError(str(exc)) from None
    except RecursionError:
        raise PlantError(f"{path}:1:1: nested too deeply") from None
    plant = _parse(located, str(path))
    raw_mqtt = located.doc.get("mqtt")
    try:
        mqtt = parse_mqtt(raw_mqtt, text, str(path), site=plant.site, plant=plant.name)
    except MqttConfigError as exc:
        raise PlantError(str(exc)) from None
    return replace(plant, mqtt=mqtt)


TOP_KEYS = {
    "plant": Key("table"),
    "simulation": Key("table"),
    "simulators": Key("list"),
    "units": Key("list"),
    "mqtt": Key("table"),
}
PLANT_KEYS = {
    "name": Key("str"),
    "site": Key("str"),
    "mode": Key("str", False, ("simulation", "gmp")),
    "description": Key("str"),
}
SIMULATION_KEYS = {"time_scale": Key("number")}
UNIT_KEYS = {
    "name": Key("str", True),
    "class": Key("str", True),
    "profile": Key("str", True),
    "endpoint": Key("str", True),
    "address": Key("table"),
    "connection": Key("table"),
    "on_restart": Key("str", False, ON_RESTART),
    "asset": Key("table"),
    "description": Key("str"),
}
"""The keys of a plant file, by table (``[[simulators]]`` keys are checked by kind
when the simulators start)."""


UNSAFE = re.compile("[\x00-\x1f\x7f-\x9f\u200b-\u200f\u2028-\u202e\u2060-\u2069\ufeff]")
"""Control and invisible/bidirectional formatting characters, refused in names."""


def _need(table: dict[str, Any], key: str, kind: type, where: str) -> Any:
    if key not in table:
        raise PlantError(f"{where}: missing {key!r}")
    value = table[key]
    if kind is float and isinstance(value, int) and not isinstance(value, bool):
        value = float(value)
    if not isinstance(value, kind):
        raise PlantError(f"{where}: {key!r} must be {kind.__name__}, got {type(value).__name__}")
    if isinstance(value, str) and (len(value) > 1000 or UNSAFE.search(value)):
        raise PlantError(f"{where}: {key!r} must be printable text (at most 1000 characters)")
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


def _asset(raw: Any, where: str) -> AssetStatus | None:
    """`asset = { id, serial, calibration_due = YYYY-MM-DD, qualification }` of a unit."""
    if raw is None:
        return None
    if not isinstance(raw, dict):
        raise PlantError(f"{where}: must be a table")
    unknown = sorted(set(raw) - {"id", "serial", "calibration_due", "qualification"})
    if unknown:
        raise PlantError(f"{where}: unknown field {unknown[0]!r}")
    due = raw.get("calibration_due")
    if not isinstance(due, date) or hasattr(due, "hour"):
        raise PlantError(f"{where}: 'calibration_due' must be a date (YYYY-MM-DD), got {due!r}")
    return AssetStatus(
        asset_id=_need(raw, "id", str, where),
        serial=_need(raw, "serial", str, where),
        calibration_due=due,
        qualification=_need(raw, "qualification", str, where),
    )


def _parse(located: Located, src: str) -> Plant:
    p = Problems(located)
    doc = p.table((), located.doc, TOP_KEYS, "the plant file")
    head = p.table(("plant",), doc.get("plant", {}), PLANT_KEYS, "[plant]")
    mode = str(head.get("mode", "gmp"))
    sim = p.table(("simulation",), doc.get("simulation", {}), SIMULATION_KEYS, "[simulation]")
    time_scale = sim.get("time_scale", 1.0)
    if (
        isinstance(time_scale, bool)
        or not isinstance(time_scale, int | float)
        or not math.isfinite(time_scale)
        or not 0 < time_scale <= MAX_TIME_SCALE
    ):
        p.add(
            ("simulation", "time_scale"),
            f"[simulation] time_scale must be a number above 0 and at most {MAX_TIME_SCALE:g}",
        )
        time_scale = 1.0
    units = []
    seen: set[str] = set()
    raw_units = doc.get("units", [])
    for i, raw in enumerate(raw_units if isinstance(raw_units, list) else []):
        where = ("units", i)
        raw = p.table(where, raw, UNIT_KEYS, f"[[units]] #{i + 1}")
        if not all(isinstance(raw.get(k), str) for k in ("name", "class", "profile", "endpoint")):
            continue
        name = str(raw["name"])
        if len(name) > 1000 or UNSAFE.search(name):
            p.add((*where, "name"), "unit names must be printable text (at most 1000 characters)")
        if name in seen:
            p.add((*where, "name"), f"duplicate unit name {name!r}")
        seen.add(name)
        address = raw.get("address", {})
        address = address if isinstance(address, dict) else {}
        connection = raw.get("connection", {})
        connection = connection if isinstance(connection, dict) else {}
        for key, value in address.items():
            if not isinstance(value, str | int) or isinstance(value, bool):
                p.add((*where, "address", key), f"address {key!r} must be a string or integer")
        asset = None
        try:
            asset = _asset(raw.get("asset"), f"{src}: [[units]] #{i + 1} asset")
        except PlantError as exc:
            p.add((*where, "asset"), str(exc).removeprefix(f"{src}: "))
        units.append(
            UnitConfig(
                name=name,
                equipment_class=raw["class"],
                profile=_profile_ref(raw["profile"], src),
                endpoint=raw["endpoint"],
                address={str(k): str(v) for k, v in address.items()},
                connection=_paths(connection, _CONNECTION_PATHS, src),
                on_restart=str(raw.get("on_restart", "reassert")),
                asset=asset,
            )
        )
    if not raw_units:
        p.add(("units",), "no [[units]] defined")
    simulators = []
    raw_sims = doc.get("simulators", [])
    for i, spec in enumerate(raw_sims if isinstance(raw_sims, list) else []):
        if not isinstance(spec, dict):
            p.add(("simulators", i), "[[simulators]] entries must be tables")
            continue
        simulators.append(_simulator(dict(spec), src))
    if simulators and mode != "simulation":
        p.add(("simulators",), "[[simulators]] are only allowed when [plant] mode = 'simulation'")
    for key in ("name", "site"):
        value = head.get(key)
        if isinstance(value, str) and (len(value) > 1000 or UNSAFE.search(value)):
            p.add(("plant", key), f"[plant] {key} must be printable text (at most 1000 characters)")
    if p.found:
        raise PlantError("\n".join(p.found))
    return Plant(
        name=str(head.get("name", Path(src).stem)),
        site=str(head.get("site", "")),
        mode=mode,
        time_scale=float(time_scale),
        units=tuple(units),
        simulators=tuple(simulators),
        source=src,
    )


def _profile_ref(profile: str, src: str) -> str:
    """A profile named by file (``….toml``) is found relative to the plant file."""
    if not profile.endswith(".toml"):
        return profile
    path = Path(profile).expanduser()
    return str(path if path.is_absolute() else Path(src).resolve().parent / path)
