"""Reader for the ``procedure:`` section: unit procedures › operations › phases.

At every level a list item may be a parallel block instead of an element
(an AND split/join, as in ISA-88 SFC procedures)::

    - parallel:
        feed_line: [{name: prime, ...}, {name: feed, ...}]
        sampling:  [{name: sample, ...}]

Every branch is a sequence of the same kind of items (blocks may nest); the step
after the block starts when every branch has ended. Names stay unique in the parent.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from recipes.diagnostics import DiagnosticSink, Pos
from recipes.fields import (
    NAME_RE,
    FieldReader,
    UniqueNames,
    as_bool,
    as_map,
    as_name,
    as_seq,
    as_str,
    peek_str,
    suggest,
)
from recipes.model import Flow, FlowItem, Operation, Parallel, Phase, Procedure, UnitProcedure
from recipes.phaseargs import setpoint_map
from recipes.phases import PHASE_TYPES
from recipes.phasespec import PhaseContext, PhaseSpec
from recipes.symbols import Symbols
from recipes.yamltree import MapNode, Node, ScalarNode

RESERVED = ("name", "type")
"""Fields every phase has, whatever its type."""

COMMON = ("on_hold", "repeatable")
"""Optional fields of every phase: ``on_hold`` is its holding logic, setpoints written
while the phase is held (e.g. stop a pump) and restored on restart; ``repeatable: true``
lets a supervisor repeat a phase whose type is not idempotent (R7)."""


def read_procedure(node: MapNode, symbols: Symbols, sink: DiagnosticSink) -> Procedure | None:
    """The whole procedure; every level must be non-empty and sibling names unique."""
    before = sink.count
    fields = FieldReader(node, sink, "procedure", required=("name", "unit_procedures"))
    name = fields.name("name")
    items = fields.sequence("unit_procedures", non_empty=True)
    names = UniqueNames(sink, "unit procedure", "procedure")
    unit_procedures: list[UnitProcedure] = []
    flow = _read_steps(
        items.items if items else (),
        lambda item: _read_unit_procedure(item, symbols, sink, names),
        unit_procedures,
        sink,
        "procedure",
    )
    if sink.count > before or name is None or flow is None:
        return None
    return Procedure(name, unit_procedures, _flow_if_parallel(flow))


def _flow_if_parallel(flow: Flow) -> Flow:
    """Keep an explicit flow only where it differs from plain sequence."""
    return flow if any(isinstance(step, Parallel) for step in flow) else ()


def _read_steps(
    nodes: tuple[Node, ...] | list[Node],
    read_one: Callable[[Node], Any],
    out: list[Any],
    sink: DiagnosticSink,
    what: str,
) -> Flow | None:
    """Read a list of elements and parallel blocks; elements are appended to ``out``."""
    flow: list[FlowItem] = []
    ok = True
    for node in nodes:
        if isinstance(node, MapNode) and "parallel" in node.entries:
            block = _read_parallel(node, read_one, out, sink, what)
            if block is None:
                ok = False
            else:
                flow.append(block)
            continue
        element = read_one(node)
        if element is None:
            ok = False
        else:
            out.append(element)
            flow.append(element.name)
    return tuple(flow) if ok else None


def _read_parallel(
    node: MapNode,
    read_one: Callable[[Node], Any],
    out: list[Any],
    sink: DiagnosticSink,
    what: str,
) -> Parallel | None:
    where = f"parallel block in {what}"
    fields = FieldReader(node, sink, where, required=("parallel",))
    branches_node = fields.mapping("parallel")
    if branches_node is None:
        return None
    if len(branches_node.entries) < 2:
        sink.error(branches_node.pos, f"{where}: needs at least two branches")
        return None
    branches: list[tuple[str, Flow]] = []
    ok = True
    for branch, entry in branches_node.entries.items():
        label = f"{where}: branch '{branch}'"
        if (
            as_name(_key_node(branch, entry.key_pos), sink, f"{where}: branch name", NAME_RE)
            is None
        ):
            ok = False
            continue
        seq = as_seq(entry.value, sink, label, non_empty=True)
        if seq is None:
            ok = False
            continue
        flow = _read_steps(seq.items, read_one, out, sink, what)
        if flow is None:
            ok = False
        else:
            branches.append((branch, flow))
    return Parallel(tuple(branches)) if ok else None


def _key_node(text: str, pos: Pos) -> Node:
    return ScalarNode(pos, pos, text)


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
    operations: list[Operation] = []
    flow = _read_steps(
        items.items if items else (),
        lambda item: _read_operation(item, symbols, sink, usable_unit, op_names),
        operations,
        sink,
        what,
    )
    if name is None or unit is None or items is None or flow is None:
        return None
    return UnitProcedure(name, unit, operations, _flow_if_parallel(flow))


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
    phases: list[Phase] = []
    flow = _read_steps(
        items.items if items else (),
        lambda item: _read_phase(item, symbols, sink, unit, phase_names),
        phases,
        sink,
        what,
    )
    if name is None or items is None or flow is None:
        return None
    return Operation(name, phases, _flow_if_parallel(flow))


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
            mapping,
            sink,
            what,
            required=(*RESERVED, *spec.required),
            optional=(*spec.optional, *COMMON),
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
    if "on_hold" in mapping.entries:
        on_hold = setpoint_map(mapping.entries["on_hold"].value, ctx, "on_hold")
        if on_hold is not None:
            args["on_hold"] = on_hold
    if "repeatable" in mapping.entries:
        repeatable = _repeatable(mapping.entries["repeatable"].value, ctx)
        if repeatable is not None:
            args["repeatable"] = repeatable
    if sink.count > before or name is None:
        return None
    return Phase(name, spec.name, args, mapping.label_pos.line)


def _repeatable(node: Node, ctx: PhaseContext) -> bool | None:
    return as_bool(node, ctx.sink, f"phase '{ctx.phase}': field 'repeatable'")


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
