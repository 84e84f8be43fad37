"""Plant configuration: which unit is which instrument at which address."""

from __future__ import annotations

import math
import re
import tomllib
from dataclasses import dataclass, field, replace
from datetime import date
from pathlib import Path
from typing import Any

from controller.mqtt_config import MqttConfig, MqttConfigError, parse_mqtt


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
    """Parse and check a plant file; every error is `FILE:LINE:COL: message`."""
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
        doc = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise PlantError(f"{path}: {exc}") from None
    except RecursionError:
        raise PlantError(f"{path}:1:1: nested too deeply") from None
    plant = _parse(doc, str(path), text)
    try:
        mqtt = parse_mqtt(doc.get("mqtt"), text, str(path), site=plant.site, plant=plant.name)
    except MqttConfigError as exc:
        raise PlantError(str(exc)) from None
    return replace(plant, mqtt=mqtt)


def _at(text: str, src: str, key: str) -> str:
    """`FILE:LINE:COL` of where `key` is set or its table starts (1:1 if not found)."""
    pattern = re.compile(
        rf'^[ \t]*(?:\[\[?[ \t]*"?{re.escape(key)}"?[ \t]*\]|"?{re.escape(key)}"?[ \t]*=)',
        re.MULTILINE,
    )
    found = pattern.search(text)
    if found is None:
        return f"{src}:1:1"
    line = text.count("\n", 0, found.start()) + 1
    column = found.start() - (text.rfind("\n", 0, found.start()) + 1) + 1
    indent = len(found.group()) - len(found.group().lstrip())
    return f"{src}:{line}:{column + indent}"


def _table(doc: dict[str, Any], key: str, where: str) -> dict[str, Any]:
    value = doc.get(key, {})
    if not isinstance(value, dict):
        raise PlantError(f"{where}: [{key}] must be a table, got {type(value).__name__}")
    return value


def _tables(doc: dict[str, Any], key: str, where: str) -> list[dict[str, Any]]:
    value = doc.get(key, [])
    if not isinstance(value, list) or not all(isinstance(item, dict) for item in value):
        raise PlantError(f"{where}: [[{key}]] must be a list of tables")
    return value


def _text(table: dict[str, Any], key: str, default: str, where: str) -> str:
    value = table.get(key, default)
    if not isinstance(value, str) or len(value) > 1000 or UNSAFE.search(value):
        raise PlantError(f"{where}: {key!r} must be printable text (at most 1000 characters)")
    return value


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


def _parse(doc: dict[str, Any], src: str, text: str = "") -> Plant:
    head = _table(doc, "plant", _at(text, src, "plant"))
    mode = _text(head, "mode", "gmp", _at(text, src, "mode"))
    if mode not in ("simulation", "gmp"):
        raise PlantError(
            f"{_at(text, src, 'mode')}: [plant] mode must be 'simulation' or 'gmp', got {mode!r}"
        )
    sim = _table(doc, "simulation", _at(text, src, "simulation"))
    scale = sim.get("time_scale", 1.0)
    if (
        isinstance(scale, bool)
        or not isinstance(scale, int | float)
        or not math.isfinite(scale)
        or not 0 < scale <= MAX_TIME_SCALE
    ):
        raise PlantError(
            f"{_at(text, src, 'time_scale')}: [simulation] time_scale must be a number "
            f"above 0 and at most {MAX_TIME_SCALE:g}"
        )
    time_scale = float(scale)
    units = []
    seen: set[str] = set()
    for i, raw in enumerate(_tables(doc, "units", _at(text, src, "units"))):
        where = f"{_at(text, src, 'units')}: [[units]] #{i + 1}"
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
        units.append(
            UnitConfig(
                name=name,
                equipment_class=_need(raw, "class", str, where),
                profile=_need(raw, "profile", str, where),
                endpoint=_need(raw, "endpoint", str, where),
                address={str(k): str(v) for k, v in address.items()},
                connection=_paths(connection, _CONNECTION_PATHS, src),
                asset=_asset(raw.get("asset"), f"{where} asset"),
            )
        )
    if not units:
        raise PlantError(f"{src}:1:1: no [[units]] defined")
    where = _at(text, src, "simulators")
    simulators = tuple(_simulator(dict(s), src) for s in _tables(doc, "simulators", where))
    if simulators and mode != "simulation":
        raise PlantError(f"{where}: [[simulators]] are only allowed when mode = 'simulation'")
    for spec in simulators:
        _need(spec, "name", str, f"{where}: [[simulators]]")
        _need(spec, "kind", str, f"{where}: [[simulators]]")
    return Plant(
        name=_text(head, "name", Path(src).stem, _at(text, src, "name")),
        site=_text(head, "site", "", _at(text, src, "site")),
        mode=mode,
        time_scale=time_scale,
        units=tuple(units),
        simulators=simulators,
        source=src,
    )
