"""Device profiles: files mapping an equipment class's capabilities to protocol addresses."""

from __future__ import annotations

import math
import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from drivers.errors import ProfileError

PROFILE_DIR = Path(__file__).parent / "profiles"


@dataclass(frozen=True, slots=True)
class TagSpec:
    """How one capability is reached: address template, data type, unit, access."""

    capability: str
    address: str
    data_type: str
    unit: str
    writable: bool
    verify: bool
    #: Protocol-specific keys of the tag (e.g. Modbus ``scale``, ``offset``, ``enum``).
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class MethodArg:
    """One input argument of a device method."""

    name: str
    data_type: str
    unit: str


@dataclass(frozen=True, slots=True)
class MethodSpec:
    """A device method (e.g. ``inoculate``): owning object, method address, arguments."""

    name: str
    object_address: str
    address: str
    args: tuple[MethodArg, ...]
    #: Protocol-specific keys of the method (e.g. the Modbus ``writes`` it performs).
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class DeviceProfile:
    """Everything a driver needs to present an instrument as capabilities."""

    name: str
    equipment_class: str
    protocol: str
    options: dict[str, Any]
    tags: dict[str, TagSpec]
    methods: dict[str, MethodSpec]

    def tag(self, capability: str) -> TagSpec:
        """The spec of a capability, or ProfileError naming it and the profile."""
        try:
            return self.tags[capability]
        except KeyError:
            raise ProfileError(f"profile {self.name!r} has no capability {capability!r}") from None

    def method(self, name: str) -> MethodSpec:
        """The spec of a method, or ProfileError naming it and the profile."""
        try:
            return self.methods[name]
        except KeyError:
            raise ProfileError(f"profile {self.name!r} has no method {name!r}") from None


def load_profile(name_or_path: str | Path) -> DeviceProfile:
    """Load a profile by name (from ``drivers/profiles/``) or by file path."""
    path = Path(name_or_path)
    if path.suffix != ".toml":
        path = PROFILE_DIR / f"{name_or_path}.toml"
    try:
        text = path.read_text(encoding="utf-8")
        doc = tomllib.loads(text)
    except FileNotFoundError:
        raise ProfileError(f"device profile not found: {path}") from None
    except UnicodeDecodeError as exc:
        raise ProfileError(f"{path}: not UTF-8 text (byte {exc.start})") from None
    except OSError as exc:
        raise ProfileError(f"{path}: cannot read ({exc.strerror})") from None
    except tomllib.TOMLDecodeError as exc:
        raise ProfileError(f"{path}: {exc}") from None
    except RecursionError:
        raise ProfileError(f"{path}: nested too deeply") from None
    bad = _non_finite(doc)
    if bad is not None:
        raise ProfileError(f"{_where(path, text, bad)}: {bad!r} must be a finite number")
    try:
        return _build(doc)
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise ProfileError(f"{path}: malformed profile ({type(exc).__name__}: {exc})") from None


def _non_finite(value: Any, key: str = "") -> str | None:
    """The key of the first NaN or infinite number in a document, else None."""
    if isinstance(value, float) and not math.isfinite(value):
        return key or "value"
    items = (
        value.items()
        if isinstance(value, dict)
        else enumerate(value)
        if isinstance(value, list)
        else ()
    )
    for child_key, child in items:
        found = _non_finite(child, str(child_key) if isinstance(value, dict) else key)
        if found is not None:
            return found
    return None


def _where(path: Path, text: str, key: str) -> str:
    """`FILE:LINE:COL` of the first `key =` in the file (FILE:1:1 if not found)."""
    found = re.search(
        rf'(?m)^[ \t]*"?{re.escape(key)}"?[ \t]*=|[{{,][ \t]*"?{re.escape(key)}"?[ \t]*=', text
    )
    if found is None:
        return f"{path}:1:1"
    line = text.count("\n", 0, found.start()) + 1
    column = found.start() - (text.rfind("\n", 0, found.start()) + 1) + 1
    return f"{path}:{line}:{column}"


_TAG_KEYS = frozenset({"node", "address", "type", "unit", "writable", "verify"})
_METHOD_KEYS = frozenset({"object", "node", "address", "args"})


def _build(doc: dict[str, Any]) -> DeviceProfile:
    head = dict(doc["profile"])
    name = str(head.pop("name"))
    equipment_class = str(head.pop("equipment_class"))
    protocol = str(head.pop("protocol"))
    tags = {
        cap: TagSpec(
            capability=cap,
            address=str(spec["node"] if "node" in spec else spec["address"]),
            data_type=str(spec["type"]),
            unit=str(spec.get("unit", "")),
            writable=bool(spec.get("writable", False)),
            verify=bool(spec.get("verify", False)),
            extra={k: v for k, v in spec.items() if k not in _TAG_KEYS},
        )
        for cap, spec in doc.get("tags", {}).items()
    }
    methods = {
        mname: MethodSpec(
            name=mname,
            object_address=str(spec["object"] if protocol == "opcua" else spec.get("object", "")),
            address=str(spec["node"] if protocol == "opcua" else spec.get("address", "")),
            args=tuple(
                MethodArg(str(a["name"]), str(a["type"]), str(a.get("unit", "")))
                for a in spec.get("args", [])
            ),
            extra={k: v for k, v in spec.items() if k not in _METHOD_KEYS},
        )
        for mname, spec in doc.get("methods", {}).items()
    }
    return DeviceProfile(name, equipment_class, protocol, head, tags, methods)
