"""Phase types where a person acts: ``operator_prompt``, ``manual_sample``, ``identity_check``.

Every typed entry declares its type, unit, limits and an ``example`` answer; the
example is what a simulated operator gives, so every recipe runs unattended in
simulation.
"""

from __future__ import annotations

from dataclasses import replace
from typing import cast

from recipes.argschemas import ARG_SCHEMAS
from recipes.fields import FieldReader, as_bool, as_choice, as_map, as_str, is_number
from recipes.model import EntryKind, EntrySpec
from recipes.phasespec import ArgSpec, PhaseContext, PhaseSpec, register_phase
from recipes.yamltree import Node, ScalarNode, SeqNode

ENTRY_KINDS = ("number", "text", "choice")
IDENTITY_TARGETS = ("coi",)


def _text(node: Node, ctx: PhaseContext) -> str | None:
    return as_str(node, ctx.sink, f"phase '{ctx.phase}': field 'text'")


def _verify(node: Node, ctx: PhaseContext) -> bool | None:
    return as_bool(node, ctx.sink, f"phase '{ctx.phase}': field 'verify'")


def _entries(node: Node, ctx: PhaseContext) -> dict[str, EntrySpec] | None:
    """``{name: {type, unit, min, max, choices, example}}``; the example must be valid."""
    mapping = as_map(node, ctx.sink, f"phase '{ctx.phase}': field 'entries'")
    if mapping is None:
        return None
    if not mapping.entries:
        ctx.sink.error(node.pos, f"phase '{ctx.phase}': field 'entries' must not be empty")
        return None
    result: dict[str, EntrySpec] = {}
    for name, entry in mapping.entries.items():
        spec = _entry(name, entry.value, ctx)
        if spec is not None:
            result[name] = spec
    return result if len(result) == len(mapping.entries) else None


def _entry(name: str, node: Node, ctx: PhaseContext) -> EntrySpec | None:
    what = f"phase '{ctx.phase}': entry '{name}'"
    mapping = as_map(node, ctx.sink, what)
    if mapping is None:
        return None
    before = ctx.sink.count
    fields = FieldReader(
        mapping,
        ctx.sink,
        what,
        required=("type", "example"),
        optional=("unit", "min", "max", "choices"),
    )
    kind = fields.choice("type", ENTRY_KINDS)
    unit = fields.string("unit") if fields.has("unit") else None
    low = fields.number("min") if fields.has("min") else None
    high = fields.number("max") if fields.has("max") else None
    choices: tuple[str, ...] = ()
    seq = fields.sequence("choices", non_empty=True) if fields.has("choices") else None
    if isinstance(seq, SeqNode):
        choices = tuple(str(as_str(i, ctx.sink, f"{what}: choice") or "") for i in seq.items)
    if kind == "choice" and not choices and not fields.has("choices"):
        ctx.sink.error(mapping.label_pos, f"{what}: type 'choice' needs 'choices'")
    if kind != "number" and (low is not None or high is not None or unit is not None):
        ctx.sink.error(mapping.label_pos, f"{what}: unit, min and max apply to numbers only")
    if low is not None and high is not None and low > high:
        ctx.sink.error(
            mapping.entries["min"].value.pos, f"{what}: min {low:g} exceeds max {high:g}"
        )
    example_node = fields.get("example")
    if ctx.sink.count > before or kind is None or example_node is None:
        return None
    raw = example_node.value if isinstance(example_node, ScalarNode) else None
    if kind == "number" and not is_number(example_node):
        raw = None
    spec = EntrySpec(name, cast(EntryKind, kind), unit, low, high, choices)
    try:
        if raw is None:
            raise ValueError(f"{name}: the example must be a {kind}")
        example = spec.check(raw)
    except ValueError as exc:
        ctx.sink.error(example_node.pos, f"{what}: example: {exc}")
        return None
    return replace(spec, example=example)


def _identity_target(node: Node, ctx: PhaseContext) -> str | None:
    return as_choice(node, ctx.sink, f"phase '{ctx.phase}': field 'expect'", IDENTITY_TARGETS)


register_phase(
    PhaseSpec(
        name="operator_prompt",
        description="Show an instruction; optionally collect typed entries; optional verification.",
        args=(
            ArgSpec(
                "text",
                _text,
                schema=ARG_SCHEMAS["text"],
                description="the instruction shown to the operator",
            ),
            ArgSpec(
                "entries",
                _entries,
                schema=ARG_SCHEMAS["entries"],
                required=False,
                description="name → entry spec",
            ),
            ArgSpec(
                "verify",
                _verify,
                schema=ARG_SCHEMAS["verify"],
                required=False,
                default=False,
                description="second-person verification (true/false)",
            ),
        ),
    )
)
register_phase(
    PhaseSpec(
        name="manual_sample",
        description="A person types a measurement (e.g. a cell count); verified by default.",
        args=(
            ArgSpec(
                "text", _text, schema=ARG_SCHEMAS["text"], description="what to measure and how"
            ),
            ArgSpec(
                "entries", _entries, schema=ARG_SCHEMAS["entries"], description="name → entry spec"
            ),
            ArgSpec(
                "verify",
                _verify,
                schema=ARG_SCHEMAS["verify"],
                required=False,
                default=True,
                description="second-person verification (default true)",
            ),
        ),
    )
)
register_phase(
    PhaseSpec(
        name="identity_check",
        description="Scan a container's chain-of-identity label and match it to the batch.",
        args=(
            ArgSpec("text", _text, schema=ARG_SCHEMAS["text"], description="what to scan"),
            ArgSpec(
                "expect",
                _identity_target,
                schema=ARG_SCHEMAS["expect"],
                required=False,
                default="coi",
                description="what the scan must match: coi",
            ),
        ),
    )
)
