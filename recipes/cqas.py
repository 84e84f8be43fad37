"""Reader for the ``cqas:`` section: critical quality attributes and their specifications."""

from __future__ import annotations

from recipes.diagnostics import DiagnosticSink
from recipes.fields import FieldReader, UniqueNames, as_map, peek_str
from recipes.model import Cqa, Range
from recipes.yamltree import MapNode, SeqNode


def read_cqas(node: SeqNode, sink: DiagnosticSink) -> list[Cqa]:
    """Every CQA; names must be unique."""
    cqas: list[Cqa] = []
    names = UniqueNames(sink, "cqa")
    for item in node.items:
        mapping = as_map(item, sink, "cqa")
        if mapping is None:
            continue
        cqa = _read_cqa(mapping, sink, names)
        if cqa is not None:
            cqas.append(cqa)
    return cqas


def _read_cqa(node: MapNode, sink: DiagnosticSink, names: UniqueNames) -> Cqa | None:
    before = sink.count
    label = peek_str(node, "name")
    what = f"cqa '{label}'" if label else "cqa"
    fields = FieldReader(
        node,
        sink,
        what,
        required=("name", "method", "specification"),
        optional=("unit", "description"),
    )
    name = fields.name("name")
    if name is not None:
        names.claim(name, node.entries["name"].value.pos)
    method = fields.string("method")
    unit = fields.string("unit")
    description = fields.string("description")
    spec: Range | None = None
    expect: str | None = None
    mapping = fields.mapping("specification")
    if mapping is not None:
        spec_what = f"{what}: specification"
        limits = FieldReader(
            mapping, sink, spec_what, required=(), optional=("low", "high", "expect")
        )
        low, high, expect = limits.number("low"), limits.number("high"), limits.string("expect")
        if not mapping.entries:
            sink.error(mapping.pos, f"{spec_what} needs 'low', 'high' or 'expect'")
        elif expect is not None and (low is not None or high is not None):
            sink.error(mapping.pos, f"{spec_what}: give either 'expect' or 'low'/'high', not both")
        elif low is not None and high is not None and low > high:
            sink.error(
                mapping.entries["low"].value.pos, f"{spec_what}: low {low:g} is above high {high:g}"
            )
        elif expect is None:
            spec = Range(low, high)
            if unit is None:
                sink.error(node.label_pos, f"{what}: a numeric specification needs a 'unit'")
    if sink.count > before or name is None or method is None:
        return None
    return Cqa(name, unit, method, spec, expect, description)
