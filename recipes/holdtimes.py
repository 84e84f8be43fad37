"""Reader for the ``hold_times:`` section: limits on the process time between the end of
one named step and the start of another (exposure and hold-time limits, e.g. harvest to
freeze, DMSO exposure). Review reports a batch that exceeded one (``hold_time`` rule).

    hold_times:
      - {name: harvest-to-freeze, from: harvest/collect, to: freeze/cool, max: 2 h}

``from`` and ``to`` are element paths of the procedure (``unit_procedure``,
``unit_procedure/operation`` or ``unit_procedure/operation/phase``); ``max`` is a literal
duration (seconds, or ``"<number> <unit>"`` with s, min, h, d).
"""

from __future__ import annotations

from recipes.diagnostics import DiagnosticSink
from recipes.fields import (
    FieldReader,
    UniqueNames,
    as_map,
    peek_str,
)
from recipes.model import HoldTime, Procedure
from recipes.monitors import literal_seconds
from recipes.yamltree import MapNode, Node, SeqNode


def element_paths(procedure: Procedure) -> list[str]:
    """Every element path of the procedure, in file order."""
    paths: list[str] = []
    for up in procedure.unit_procedures:
        paths.append(up.name)
        for op in up.operations:
            paths.append(f"{up.name}/{op.name}")
            paths.extend(f"{up.name}/{op.name}/{phase.name}" for phase in op.phases)
    return paths


def read_hold_times(
    node: SeqNode, procedure: Procedure | None, sink: DiagnosticSink
) -> list[HoldTime]:
    """Every hold-time limit; names unique, paths checked when the procedure is valid."""
    limits: list[HoldTime] = []
    names = UniqueNames(sink, "hold time")
    paths = element_paths(procedure) if procedure is not None else None
    for item in node.items:
        mapping = as_map(item, sink, "hold time")
        if mapping is not None:
            limit = _read_one(mapping, paths, sink, names)
            if limit is not None:
                limits.append(limit)
    return limits


def _read_one(
    node: MapNode, paths: list[str] | None, sink: DiagnosticSink, names: UniqueNames
) -> HoldTime | None:
    before = sink.count
    label = peek_str(node, "name")
    what = f"hold time '{label}'" if label else "hold time"
    fields = FieldReader(
        node, sink, what, required=("name", "from", "to", "max"), optional=("description",)
    )
    name = fields.name("name")
    if name is not None:
        names.claim(name, node.entries["name"].value.pos)
    ends = {key: fields.string(key) for key in ("from", "to")}
    for key, path in ends.items():
        if path is not None and paths is not None and path not in paths:
            sink.error(
                node.entries[key].value.pos,
                f"{what}: {key} '{path}' is not an element of the procedure "
                "(write unit_procedure, unit_procedure/operation or .../phase)",
            )
    if ends["from"] is not None and ends["from"] == ends["to"]:
        sink.error(node.entries["to"].value.pos, f"{what}: from and to are the same element")
    seconds = _max(fields.get("max"), what, sink)
    description = fields.string("description")
    start, end = ends["from"], ends["to"]
    if sink.count > before or name is None or start is None or end is None or seconds is None:
        return None
    return HoldTime(name, start, end, seconds, description)


def _max(node: Node | None, what: str, sink: DiagnosticSink) -> float | None:
    """A positive literal duration in seconds."""
    if node is None:
        return None
    label = f"{what}: max"
    seconds = literal_seconds(node, label, sink)
    if seconds is None:
        return None
    if seconds <= 0:
        sink.error(node.pos, f"{label} must be positive")
        return None
    return seconds
