"""The schema of a device profile: which keys each protocol allows, their types, and
what each value must look like. Every problem is reported as ``FILE:LINE:COL: message``
(an unknown key with a "did you mean"); :func:`check_profile` lists them all.

The format is documented with a worked example per protocol in ``drivers/README.md``.
"""

from __future__ import annotations

import base64
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from asyncua import ua

from drivers.modbus import DATA_TYPES, MAX_REGISTERS_PER_READ, STRING
from drivers.tomlpos import Located, Path, did_you_mean

PROTOCOLS = ("opcua", "modbus", "serial")
MODBUS_TYPES = (*DATA_TYPES, STRING)
SERIAL_TYPES = ("float", "bool", "string", "int")
OPCUA_TYPES = tuple(t.name for t in ua.VariantType if t.name not in ("Null", "Variant"))
DIALECTS = ("wm-pump", "mt-sics")
ORDERS = ("big", "little")


@dataclass(frozen=True, slots=True)
class Key:
    """One allowed key: its type check and whether it must be present."""

    kind: str  # "str" | "int" | "number" | "bool" | "table" | "list" | "any"
    required: bool = False
    choices: tuple[str, ...] = ()


_COMMON_HEAD = {
    "name": Key("str", True),
    "equipment_class": Key("str", True),
    "protocol": Key("str", True, PROTOCOLS),
    "description": Key("str"),
    "status_blip_s": Key("number"),
    "status_fail_after_s": Key("number"),
    "reconnect_backoff_initial_s": Key("number"),
    "reconnect_backoff_max_s": Key("number"),
    "sample_period_s": Key("number"),
    "confirm_period_s": Key("number"),
}
HEAD_KEYS: Mapping[str, Mapping[str, Key]] = {
    "opcua": _COMMON_HEAD | {"namespace_uri": Key("str"), "namespace_index": Key("int")},
    "modbus": _COMMON_HEAD
    | {
        "device_id": Key("int"),
        "byte_order": Key("str", False, ORDERS),
        "word_order": Key("str", False, ORDERS),
        "poll_interval_s": Key("number"),
        "read_gap": Key("int"),
        "baudrate": Key("int"),
        "framing": Key("str"),
    },
    "serial": _COMMON_HEAD
    | {
        "dialect": Key("str", True, DIALECTS),
        "baudrate": Key("int"),
        "framing": Key("str"),
        "terminator": Key("str"),
        "pump_address": Key("int"),
        "poll_interval_s": Key("number"),
    },
}
_COMMON_TAG = {
    "type": Key("str", True),
    "unit": Key("str"),
    "writable": Key("bool"),
    "verify": Key("bool"),
    "period_s": Key("number"),
    "confirm_s": Key("number"),
    "description": Key("str"),
}
TAG_KEYS: Mapping[str, Mapping[str, Key]] = {
    "opcua": _COMMON_TAG
    | {"node": Key("str", True), "namespace_uri": Key("str"), "namespace_index": Key("int")},
    "modbus": _COMMON_TAG
    | {
        "address": Key("str", True),
        "scale": Key("number"),
        "offset": Key("number"),
        "enum": Key("list"),
        "states": Key("table"),
        "bit": Key("int"),
        "length": Key("int"),
    },
    "serial": _COMMON_TAG | {"address": Key("str", True)},
}
DERIVED_KEYS: Mapping[str, Key] = {
    "from": Key("str", True),
    "equals": Key("any"),
    "in": Key("list"),
    "unit": Key("str"),
    "period_s": Key("number"),
    "confirm_s": Key("number"),
    "description": Key("str"),
}
METHOD_KEYS: Mapping[str, Mapping[str, Key]] = {
    "opcua": {"object": Key("str", True), "node": Key("str", True), "args": Key("list")},
    "modbus": {"writes": Key("list", True), "args": Key("list")},
    "serial": {"address": Key("str", True), "args": Key("list")},
}
ARG_KEYS: Mapping[str, Key] = {
    "name": Key("str", True),
    "type": Key("str", True),
    "unit": Key("str"),
}
WRITE_KEYS: Mapping[str, Key] = {
    "address": Key("str", True),
    "type": Key("str", True),
    "value": Key("any"),
    "arg": Key("str"),
}

_MODBUS_ADDRESS = re.compile(r"^(co|di|hr|ir):(\d+)$")
_GUID = re.compile(r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$")


def _is(kind: str, value: Any) -> bool:
    if kind == "str":
        return isinstance(value, str)
    if kind == "int":
        return isinstance(value, int) and not isinstance(value, bool)
    if kind == "number":
        return isinstance(value, int | float) and not isinstance(value, bool)
    if kind == "bool":
        return isinstance(value, bool)
    if kind == "table":
        return isinstance(value, dict)
    if kind == "list":
        return isinstance(value, list)
    return True


_ARTICLE = {
    "str": "a string",
    "int": "an integer",
    "number": "a number",
    "bool": "true or false",
    "table": "a table",
    "list": "a list",
}


class Problems:
    """Problems found in one file, each ``FILE:LINE:COL: message``."""

    def __init__(self, located: Located) -> None:
        self.located = located
        self.found: list[str] = []

    def add(self, path: Path, message: str) -> None:
        """Note a problem at ``path``."""
        self.found.append(f"{self.located.at(path)}: {message}")

    def table(
        self,
        path: Path,
        value: Any,
        keys: Mapping[str, Key],
        what: str,
    ) -> dict[str, Any]:
        """Check a table against ``keys``: unknown keys, missing keys, wrong types."""
        if not isinstance(value, dict):
            self.add(path, f"{what} must be a table, got {value!r}")
            return {}
        for key, item in value.items():
            spec = keys.get(key)
            if spec is None:
                hint = did_you_mean(key, sorted(keys))
                self.add((*path, key), f"unknown key {key!r} in {what}{hint}")
            elif not _is(spec.kind, item):
                self.add((*path, key), f"{key!r} must be {_ARTICLE[spec.kind]}, got {item!r}")
            elif spec.choices and item not in spec.choices:
                hint = did_you_mean(str(item), spec.choices)
                self.add(
                    (*path, key),
                    f"{key!r} must be one of {', '.join(spec.choices)}, got {item!r}{hint}",
                )
        for key, spec in keys.items():
            if spec.required and key not in value:
                self.add(path, f"{what} is missing {key!r}")
        return value


def check_node(template: str) -> str | None:
    """What is wrong with an OPC UA node template (None: nothing)."""
    probe = re.sub(r"\{[^{}]*\}", "X", template)
    body = probe
    if probe.startswith("nsu="):
        if ";" not in probe:
            return f"node {template!r}: 'nsu=URI;' must be followed by i=, s=, g= or b="
        body = probe.split(";", 1)[1]
    elif probe.startswith("ns="):
        index, sep, body = probe[3:].partition(";")
        if not sep or not index.isdigit():
            return f"node {template!r}: 'ns=' needs an index and ';' (e.g. ns=2;i=1001)"
    if body.startswith("i="):
        if not body[2:].isdigit():
            return f"node {template!r}: i= needs a number"
    elif body.startswith("g="):
        if not _GUID.match(body[2:]):
            return f"node {template!r}: g= needs a GUID (8-4-4-4-12 hex digits)"
    elif body.startswith("b="):
        try:
            base64.b64decode(body[2:], validate=True)
        except ValueError:
            return f"node {template!r}: b= needs base64 bytes"
    elif body.startswith("s="):
        if not body[2:]:
            return f"node {template!r}: s= needs a string"
    elif probe != body:
        return f"node {template!r}: after the namespace, give i=, s=, g= or b="
    elif not body:
        return "node must not be empty"
    return None


def check_profile(located: Located) -> list[str]:
    """Every problem of a profile document (empty: it is valid)."""
    p = Problems(located)
    doc = located.doc
    for key in doc:
        if key not in ("profile", "tags", "methods"):
            hint = did_you_mean(key, ["profile", "tags", "methods"])
            p.add((key,), f"unknown table [{key}]{hint}")
    if "profile" not in doc:
        p.add((), "missing [profile] table (name, equipment_class, protocol)")
        return p.found
    head = doc["profile"]
    protocol = head.get("protocol") if isinstance(head, dict) else None
    if protocol not in PROTOCOLS:
        if isinstance(head, dict) and "protocol" in head:
            hint = did_you_mean(str(protocol), PROTOCOLS)
            p.add(
                ("profile", "protocol"),
                f"'protocol' must be one of {', '.join(PROTOCOLS)}, got {protocol!r}{hint}",
            )
        else:
            p.add(("profile",), "[profile] is missing 'protocol' (opcua, modbus or serial)")
        return p.found
    p.table(("profile",), head, HEAD_KEYS[protocol], "[profile]")
    tags = doc.get("tags", {})
    if not isinstance(tags, dict):
        p.add(("tags",), "[tags] must be a table")
        tags = {}
    for cap, spec in tags.items():
        _check_tag(p, protocol, head, tags, cap, spec)
    methods = doc.get("methods", {})
    if not isinstance(methods, dict):
        p.add(("methods",), "[methods] must be a table")
        methods = {}
    for name, spec in methods.items():
        _check_method(p, protocol, name, spec)
    return p.found


def _check_tag(
    p: Problems, protocol: str, head: dict[str, Any], tags: dict[str, Any], cap: str, spec: Any
) -> None:
    path: Path = ("tags", cap)
    what = f"tag {cap!r}"
    if isinstance(spec, dict) and "from" in spec:
        p.table(path, spec, DERIVED_KEYS, f"derived {what}")
        source = spec.get("from")
        if isinstance(source, str) and source not in tags:
            hint = did_you_mean(source, sorted(tags))
            p.add((*path, "from"), f"{what}: derives from unknown tag {source!r}{hint}")
        elif isinstance(source, str) and "from" in (tags.get(source) or {}):
            p.add((*path, "from"), f"{what}: cannot derive from derived tag {source!r}")
        if ("equals" in spec) == ("in" in spec):
            p.add(path, f"derived {what} needs exactly one of 'equals' or 'in'")
        return
    spec = p.table(path, spec, TAG_KEYS[protocol], what)
    if not spec:
        return
    data_type = spec.get("type")
    if protocol == "opcua":
        node = spec.get("node")
        if isinstance(node, str):
            problem = check_node(node)
            if problem is not None:
                p.add((*path, "node"), problem)
            elif not _explicit_namespace(node, spec) and not (
                "namespace_uri" in head or "namespace_index" in head
            ):
                p.add(
                    (*path, "node"),
                    f"{what}: no namespace: give [profile] namespace_uri or namespace_index, "
                    "the tag's namespace_uri / namespace_index, or ns=/nsu= in the node",
                )
        if isinstance(data_type, str) and data_type not in OPCUA_TYPES:
            hint = did_you_mean(data_type, OPCUA_TYPES)
            p.add((*path, "type"), f"{what}: unknown OPC UA data type {data_type!r}{hint}")
    elif protocol == "modbus":
        _check_modbus_tag(p, path, what, spec)
    elif isinstance(data_type, str) and data_type not in SERIAL_TYPES:
        hint = did_you_mean(data_type, SERIAL_TYPES)
        p.add(
            (*path, "type"),
            f"{what}: type must be one of {', '.join(SERIAL_TYPES)}, got {data_type!r}{hint}",
        )
    if spec.get("verify") and not spec.get("writable"):
        p.add((*path, "verify"), f"{what}: verify (read back after write) needs writable = true")


def _explicit_namespace(node: str, spec: dict[str, Any]) -> bool:
    return node.startswith(("ns=", "nsu=")) or "namespace_uri" in spec or "namespace_index" in spec


def _check_modbus_tag(p: Problems, path: Path, what: str, spec: dict[str, Any]) -> None:
    address, data_type = spec.get("address"), spec.get("type")
    if isinstance(address, str) and not _MODBUS_ADDRESS.match(address):
        p.add((*path, "address"), f"{what}: address {address!r} is not co:N, di:N, hr:N or ir:N")
    if isinstance(data_type, str) and data_type not in MODBUS_TYPES:
        hint = did_you_mean(data_type, sorted(MODBUS_TYPES))
        p.add(
            (*path, "type"),
            f"{what}: type must be one of {', '.join(MODBUS_TYPES)}, got {data_type!r}{hint}",
        )
    table = address.split(":", 1)[0] if isinstance(address, str) else ""
    length = spec.get("length")
    if data_type == STRING:
        if table in ("co", "di"):
            p.add((*path, "type"), f"{what}: a string lives in registers (hr or ir)")
        if not isinstance(length, int) or not 1 <= length <= MAX_REGISTERS_PER_READ:
            p.add(path, f"{what}: a string needs length = its registers (1–125)")
        if spec.get("writable"):
            p.add((*path, "writable"), f"{what}: a string is read-only")
        for key in ("scale", "offset", "enum", "states", "bit"):
            if key in spec:  # a text is not scaled or mapped: the key would be ignored
                p.add((*path, key), f'{what}: {key} does not apply to type = "string"')
    elif length is not None:
        p.add((*path, "length"), f'{what}: length belongs to type = "string"')
    if table in ("co", "di") and data_type not in (None, "bool", STRING):
        p.add((*path, "type"), f"{what}: coils and discrete inputs are bool, not {data_type!r}")
    if spec.get("writable") and table in ("di", "ir"):
        p.add((*path, "writable"), f"{what}: {table} registers cannot be written")
    used = [k for k in ("enum", "states", "bit") if k in spec]
    if len(used) > 1:
        p.add(path, f"{what}: use one of enum, states or bit, not {' and '.join(used)}")
    enum = spec.get("enum")
    if isinstance(enum, list) and not all(isinstance(x, str) and x for x in enum):
        p.add((*path, "enum"), f"{what}: enum must list non-empty names (use states for gaps)")
    states = spec.get("states")
    if isinstance(states, dict):
        for code, name in states.items():
            if not re.fullmatch(r"-?\d+", code):
                p.add((*path, "states", code), f"{what}: state code {code!r} is not an integer")
            if not isinstance(name, str) or not name:
                p.add((*path, "states", code), f"{what}: state {code} needs a name, got {name!r}")
        names = [n for n in states.values() if isinstance(n, str)]
        if len(set(names)) != len(names):
            p.add((*path, "states"), f"{what}: state names must be unique")
    bit = spec.get("bit")
    if isinstance(bit, int) and isinstance(data_type, str) and data_type in DATA_TYPES:
        width = DATA_TYPES[data_type][0] * 16
        if data_type in ("bool", "float32") or not 0 <= bit < width:
            p.add((*path, "bit"), f"{what}: bit {bit} is not a bit of a {data_type} register")
        if spec.get("writable"):
            p.add((*path, "writable"), f"{what}: a single bit of a register cannot be written")


def _check_method(p: Problems, protocol: str, name: str, spec: Any) -> None:
    path: Path = ("methods", name)
    spec = p.table(path, spec, METHOD_KEYS[protocol], f"method {name!r}")
    if not spec:
        return
    args = spec.get("args", [])
    names: list[str] = []
    if isinstance(args, list):
        for i, arg in enumerate(args):
            got = p.table((*path, "args", i), arg, ARG_KEYS, f"argument {i + 1} of {name!r}")
            if isinstance(got.get("name"), str):
                names.append(got["name"])
    writes = spec.get("writes", [])
    if protocol == "modbus" and isinstance(writes, list):
        for i, write in enumerate(writes):
            got = p.table((*path, "writes", i), write, WRITE_KEYS, f"write {i + 1} of {name!r}")
            if got and ("value" in got) == ("arg" in got):
                p.add((*path, "writes", i), f"write {i + 1} of {name!r} needs value or arg")
            arg = got.get("arg")
            if isinstance(arg, str) and arg not in names:
                hint = did_you_mean(arg, names)
                p.add((*path, "writes", i, "arg"), f"{name!r} has no argument {arg!r}{hint}")
            address = got.get("address")
            if isinstance(address, str) and not _MODBUS_ADDRESS.match(address):
                p.add((*path, "writes", i, "address"), f"address {address!r} is not hr:N or co:N")
    if protocol == "opcua":
        for key in ("object", "node"):
            node = spec.get(key)
            if isinstance(node, str) and (problem := check_node(node)) is not None:
                p.add((*path, key), problem)
