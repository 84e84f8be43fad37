"""Device profiles: files mapping an equipment class's capabilities to protocol addresses."""

from __future__ import annotations

import hashlib
import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from drivers.errors import ProfileError
from drivers.profile_schema import check_profile
from drivers.tomlpos import TomlSyntaxError, load_located

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

    @property
    def derived_from(self) -> str | None:
        """The tag a derived boolean capability is computed from (None: a real tag)."""
        source = self.extra.get("from")
        return None if source is None else str(source)

    def derive(self, value: Any) -> bool:
        """A derived capability's value from its source tag's value."""
        if "equals" in self.extra:
            return bool(value == self.extra["equals"])
        return bool(value in self.extra.get("in", ()))


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
    #: The profile file's text and its SHA-256 (pinned in the batch record).
    source: str = ""
    sha256: str = ""

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


def profile_path(name_or_path: str | Path) -> Path:
    """The file of a profile given by name (from ``drivers/profiles/``) or path."""
    path = Path(name_or_path)
    if path.suffix != ".toml":
        path = PROFILE_DIR / f"{name_or_path}.toml"
    return path


def load_profile(name_or_path: str | Path) -> DeviceProfile:
    """Load a profile by name (from ``drivers/profiles/``) or by file path.

    Every problem (syntax, unknown keys with a "did you mean", missing keys, wrong
    types or values; see :mod:`drivers.profile_schema`) is listed in one ProfileError,
    one ``FILE:LINE:COL: message`` per line.
    """
    path = profile_path(name_or_path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ProfileError(f"device profile not found: {path}") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ProfileError(f"{path}: cannot read: {exc}") from None
    try:
        located = load_located(text, str(path))
    except TomlSyntaxError as exc:
        raise ProfileError(str(exc)) from None
    bad = _non_finite(located.doc)
    if bad is not None:
        raise ProfileError(f"{_where(path, text, bad)}: {bad!r} must be a finite number")
    problems = check_profile(located)
    if problems:
        raise ProfileError("\n".join(problems))
    return _build(located.doc, text)


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


def _tag(cap: str, spec: dict[str, Any]) -> TagSpec:
    if "from" in spec:
        keys = ("from", "equals", "in", "period_s", "confirm_s")
        derived: dict[str, Any] = {k: spec[k] for k in keys if k in spec}
        return TagSpec(cap, "", "bool", str(spec.get("unit", "")), False, False, derived)
    extra: dict[str, Any] = {k: v for k, v in spec.items() if k not in _TAG_KEYS}
    if "states" in extra:
        extra["states"] = {int(code): str(name) for code, name in extra["states"].items()}
    return TagSpec(
        capability=cap,
        address=str(spec["node"] if "node" in spec else spec["address"]),
        data_type=str(spec["type"]),
        unit=str(spec.get("unit", "")),
        writable=bool(spec.get("writable", False)),
        verify=bool(spec.get("verify", False)),
        extra=extra,
    )


def _build(doc: dict[str, Any], text: str = "") -> DeviceProfile:
    head = dict(doc["profile"])
    name = str(head.pop("name"))
    equipment_class = str(head.pop("equipment_class"))
    protocol = str(head.pop("protocol"))
    tags = {cap: _tag(cap, spec) for cap, spec in doc.get("tags", {}).items()}
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
    digest = hashlib.sha256(text.encode("utf-8")).hexdigest()
    return DeviceProfile(name, equipment_class, protocol, head, tags, methods, text, digest)
