"""Readers for the recipe header, the formula and the equipment requirements."""

from __future__ import annotations

from typing import cast

from recipes.catalog import EQUIPMENT_CLASSES
from recipes.diagnostics import DiagnosticSink
from recipes.expressions import TIME_UNITS, duration_problem
from recipes.fields import (
    IDENTIFIER_RE,
    NAME_RE,
    FieldReader,
    as_map,
    check_name,
    is_number,
    suggest,
)
from recipes.model import EquipmentRequirement, Header, Parameter, Status
from recipes.symbols import Symbols
from recipes.yamltree import Entry, MapNode, ScalarNode

STATUSES = ("draft", "approved", "retired")


def read_header(node: MapNode, sink: DiagnosticSink) -> Header | None:
    """The ``recipe:`` section."""
    before = sink.count
    fields = FieldReader(
        node,
        sink,
        "recipe header",
        required=("name", "version", "product", "status", "author"),
        optional=("description", "site", "master_sha256"),
    )
    name = fields.string("name")
    version = _version(fields)
    product = fields.string("product")
    status = fields.choice("status", STATUSES)
    author = fields.string("author")
    description = fields.string("description")
    site = fields.string("site")
    master = fields.string("master_sha256")
    if sink.count > before or not (name and version and product and status and author):
        return None
    return Header(name, version, product, cast(Status, status), author, description, site, master)


def _version(fields: FieldReader) -> str | None:
    """The version, which must be a string: an unquoted ``1.10`` would read as the number 1.1."""
    node = fields.get("version")
    if node is not None and is_number(node):
        assert isinstance(node, ScalarNode)
        fields.sink.error(
            node.pos,
            f"recipe header: version must be a string, got number {node.value}; "
            'quote it, e.g. version: "1.0.0"',
        )
        return None
    return fields.string("version")


def read_formula(node: MapNode, symbols: Symbols, sink: DiagnosticSink) -> dict[str, Parameter]:
    """The ``formula:`` section into ``symbols.parameters`` (invalid ones into broken)."""
    for name, entry in node.entries.items():
        param = _read_parameter(name, entry, sink)
        if param is None:
            symbols.broken_parameters.add(name)
        else:
            symbols.parameters[name] = param
    return symbols.parameters


def _read_parameter(name: str, entry: Entry, sink: DiagnosticSink) -> Parameter | None:
    before = sink.count
    what = f"parameter '{name}'"
    check_name(name, entry.key_pos, sink, "parameter name", IDENTIFIER_RE)
    mapping = as_map(entry.value, sink, what)
    if mapping is None:
        return None
    fields = FieldReader(
        mapping, sink, what, required=("value", "unit"), optional=("min", "max", "description")
    )
    value, unit = fields.number("value"), fields.string("unit")
    low, high = fields.number("min"), fields.number("max")
    description = fields.string("description")
    if low is not None and high is not None and low > high:
        sink.error(
            fields.node.entries["min"].value.pos,
            f"{what}: min {low:g} is greater than max {high:g}",
        )
    elif value is not None:
        value_pos = fields.node.entries["value"].value.pos
        if low is not None and value < low:
            sink.error(value_pos, f"{what}: value {value:g} is below its min {low:g}")
        if high is not None and value > high:
            sink.error(value_pos, f"{what}: value {value:g} is above its max {high:g}")
    if unit in TIME_UNITS:  # a time: never negative, never longer than a recipe may state
        for key, number in (("value", value), ("min", low), ("max", high)):
            problem = None if number is None else duration_problem(number * TIME_UNITS[unit])
            if problem is not None:
                sink.error(
                    fields.node.entries[key].value.pos, f"{what}: {key} {number:g} {unit} {problem}"
                )
    if sink.count > before or value is None or unit is None:
        return None
    return Parameter(name, value, unit, low, high, description)


def read_equipment(
    node: MapNode, symbols: Symbols, sink: DiagnosticSink
) -> dict[str, EquipmentRequirement]:
    """The ``equipment:`` section (alias → class) into ``symbols.units``."""
    requirements: dict[str, EquipmentRequirement] = {}
    if not node.entries:
        sink.error(node.pos, "equipment must declare at least one unit")
    for alias, entry in node.entries.items():
        what = f"equipment '{alias}'"
        check_name(alias, entry.key_pos, sink, "equipment alias", NAME_RE)
        symbols.units[alias] = None
        mapping = as_map(entry.value, sink, what)
        if mapping is None:
            continue
        class_name = FieldReader(mapping, sink, what, required=("class",)).string("class")
        if class_name is None:
            continue
        cls = EQUIPMENT_CLASSES.get(class_name)
        if cls is None:
            sink.error(
                mapping.entries["class"].value.pos,
                f"unknown equipment class '{class_name}'{suggest(class_name, EQUIPMENT_CLASSES)}"
                f" (known: {', '.join(sorted(EQUIPMENT_CLASSES))})",
            )
            continue
        symbols.units[alias] = cls
        requirements[alias] = EquipmentRequirement(alias, class_name)
    return requirements
