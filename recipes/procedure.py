"""Reader for the ``procedure:`` section: unit procedures › operations › phases."""

from __future__ import annotations

from recipes.diagnostics import DiagnosticSink
from recipes.fields import FieldReader, UniqueNames, as_map, as_str, peek_str, suggest
from recipes.model import Operation, Phase, Procedure, UnitProcedure
from recipes.phases import PHASE_TYPES
from recipes.phasespec import PhaseContext, PhaseSpec
from recipes.symbols import Symbols
from recipes.yamltree import MapNode, Node

RESERVED = ("name", "type")
"""Fields every phase has, whatever its type."""


def read_procedure(node: MapNode, symbols: Symbols, sink: DiagnosticSink) -> Procedure | None:
    """The whole procedure; every level must be non-empty and sibling names unique."""
    before = sink.count
    fields = FieldReader(node, sink, "procedure", required=("name", "unit_procedures"))
    name = fields.name("name")
    items = fields.sequence("unit_procedures", non_empty=True)
    names = UniqueNames(sink, "unit procedure", "procedure")
    unit_procedures = [
        up
        for item in (items.items if items else ())
        if (up := _read_unit_procedure(item, symbols, sink, names)) is not None
    ]
    if sink.count > before or name is None:
        return None
    return Procedure(name, unit_procedures)


def _read_unit_procedure(
    node: Node, symbols: Symbols, sink: DiagnosticSink, names: UniqueNames
) -> UnitProcedure | None:
    mapping = as_map(node, sink, "unit procedure")
    if mapping is None:
        return None
    label = peek_str(mapping, "name")
    what = f"unit procedure '{label}'" if label else "unit procedure"
    fields = FieldReader(mapping, sink, what, required=("name", "unit", "operations"))
    name = fields.name("name")
    if name is not None:
        names.claim(name, mapping.entries["name"].value.pos)
    unit = fields.name("unit")
    if unit is not None:
        symbols.unit_class(unit, mapping.entries["unit"].value.pos, sink)
    usable_unit = unit if unit in symbols.units else None
    items = fields.sequence("operations", non_empty=True)
    op_names = UniqueNames(sink, "operation", what)
    operations = [
        op
        for item in (items.items if items else ())
        if (op := _read_operation(item, symbols, sink, usable_unit, op_names)) is not None
    ]
    if name is None or unit is None or items is None or len(operations) != len(items.items):
        return None
    return UnitProcedure(name, unit, operations)


def _read_operation(
    node: Node, symbols: Symbols, sink: DiagnosticSink, unit: str | None, names: UniqueNames
) -> Operation | None:
    mapping = as_map(node, sink, "operation")
    if mapping is None:
        return None
    label = peek_str(mapping, "name")
    what = f"operation '{label}'" if label else "operation"
    fields = FieldReader(mapping, sink, what, required=("name", "phases"))
    name = fields.name("name")
    if name is not None:
        names.claim(name, mapping.entries["name"].value.pos)
    items = fields.sequence("phases", non_empty=True)
    phase_names = UniqueNames(sink, "phase", what)
    phases = [
        phase
        for item in (items.items if items else ())
        if (phase := _read_phase(item, symbols, sink, unit, phase_names)) is not None
    ]
    if name is None or items is None or len(phases) != len(items.items):
        return None
    return Operation(name, phases)


def _read_phase(
    node: Node, symbols: Symbols, sink: DiagnosticSink, unit: str | None, names: UniqueNames
) -> Phase | None:
    mapping = as_map(node, sink, "phase")
    if mapping is None:
        return None
    before = sink.count
    label = peek_str(mapping, "name")
    what = f"phase '{label}'" if label else "phase"
    spec = _phase_type(mapping, sink, what)
    if spec is not None:
        fields = FieldReader(
            mapping, sink, what, required=(*RESERVED, *spec.required), optional=spec.optional
        )
    else:  # arguments of an unknown type cannot be judged
        fields = FieldReader(
            mapping, sink, what, required=RESERVED, optional=tuple(mapping.entries)
        )
    name = fields.name("name")
    if name is not None:
        names.claim(name, mapping.entries["name"].value.pos)
    if spec is None:
        return None
    ctx = PhaseContext(symbols=symbols, sink=sink, node=mapping, phase=label or "?", unit=unit)
    args = spec.check_args(ctx)
    if sink.count > before or name is None:
        return None
    return Phase(name, spec.name, args, mapping.label_pos.line)


def _phase_type(mapping: MapNode, sink: DiagnosticSink, what: str) -> PhaseSpec | None:
    """The spec of the phase's ``type``, reporting an unknown type at its value."""
    entry = mapping.entries.get("type")
    if entry is None:
        return None  # reported as a missing field
    type_name = as_str(entry.value, sink, f"{what}: field 'type'")
    if type_name is None:
        return None
    spec = PHASE_TYPES.get(type_name)
    if spec is None:
        sink.error(
            entry.value.pos,
            f"unknown phase type '{type_name}'{suggest(type_name, PHASE_TYPES)}"
            f" (known: {', '.join(sorted(PHASE_TYPES))})",
        )
    return spec
