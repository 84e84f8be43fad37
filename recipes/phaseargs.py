"""Reusable checks for phase arguments: numbers, ``$param`` references, durations, conditions."""

from __future__ import annotations

from recipes.conditions import (
    ELAPSED,
    AllOf,
    AnyOf,
    Expr,
    Not,
    RawComparison,
    RawExpr,
    parse_raw,
)
from recipes.diagnostics import Pos
from recipes.expressions import (
    TIME_UNITS,
    ExpressionError,
    duration_problem,
    looks_like_param,
    param_name,
    parse_duration,
)
from recipes.fields import as_map, as_number, describe, is_number, suggest
from recipes.model import Condition, Duration, Parameter, ParamRef
from recipes.phasespec import PhaseContext
from recipes.yamltree import BadNode, Node, ScalarNode


def reference(
    text: str, pos: Pos, ctx: PhaseContext, *, unit: str | None, target: str
) -> tuple[ParamRef, Parameter] | None:
    """Resolve ``$name`` to its parameter; report bad syntax, undefined names and unit mismatch.

    ``unit`` is the engineering unit the target expects (None: any); ``target`` names the
    target in messages (e.g. "temperature.sp").
    """
    name = param_name(text)
    if name is None:
        ctx.sink.error(pos, f"bad parameter reference '{text}': expected '$name'")
        return None
    symbols = ctx.symbols
    if name in symbols.broken_parameters or not symbols.parameters_known:
        return None
    param = symbols.parameters.get(name)
    if param is None:
        ctx.sink.error(
            pos,
            f"undefined parameter '${name}' (not in formula){suggest(name, symbols.parameters)}",
        )
        return None
    if unit is not None and param.unit != unit:
        ctx.sink.error(
            pos, f"parameter '${name}' has unit '{param.unit}' but {target} expects '{unit}'"
        )
        return None
    return ParamRef(name), param


def number_or_param(
    node: Node, ctx: PhaseContext, *, unit: str | None, target: str
) -> float | ParamRef | None:
    """A literal number or a ``$param`` whose unit equals ``unit``."""
    if is_number(node):
        return as_number(node, ctx.sink, target)
    if (
        isinstance(node, ScalarNode)
        and isinstance(node.value, str)
        and looks_like_param(node.value)
    ):
        found = reference(node.value, node.pos, ctx, unit=unit, target=target)
        return found[0] if found else None
    if not isinstance(node, BadNode):
        ctx.sink.error(node.pos, f"{target} must be a number or $parameter, got {describe(node)}")
    return None


def duration(node: Node, ctx: PhaseContext, what: str) -> Duration | ParamRef | None:
    """Seconds as a number, ``"<number> <unit>"`` (s, min, h, d) or a time-unit ``$param``."""
    if is_number(node):
        seconds = as_number(node, ctx.sink, what)
        problem = None if seconds is None else duration_problem(seconds)
        if problem is not None:
            ctx.sink.error(node.pos, f"{what} {problem}")
            return None
        return None if seconds is None else Duration(seconds)
    if not (isinstance(node, ScalarNode) and isinstance(node.value, str)):
        if not isinstance(node, BadNode):
            ctx.sink.error(node.pos, f"{what} must be a duration, got {describe(node)}")
        return None
    text = node.value
    if looks_like_param(text):
        return _duration_param(text, node.pos, ctx, what)
    try:
        return Duration(parse_duration(text))
    except ExpressionError as exc:
        ctx.sink.error(node.pos, f"{what}: {exc.message}")
        return None


def _duration_param(text: str, pos: Pos, ctx: PhaseContext, what: str) -> ParamRef | None:
    found = reference(text, pos, ctx, unit=None, target=what)
    if found is None:
        return None
    ref, param = found
    if param.unit not in TIME_UNITS:
        ctx.sink.error(
            pos,
            f"{what}: parameter '${param.name}' has unit '{param.unit}', "
            f"not a time unit ({', '.join(TIME_UNITS)})",
        )
        return None
    if param.value < 0:
        ctx.sink.error(pos, f"{what}: parameter '${param.name}' is negative")
        return None
    return ParamRef(ref.name, TIME_UNITS[param.unit])


def condition(node: Node, ctx: PhaseContext, what: str) -> Expr | None:
    """A transition condition on the phase's unit (see ``recipes.conditions``)."""
    if not (isinstance(node, ScalarNode) and isinstance(node.value, str)):
        if not isinstance(node, BadNode):
            ctx.sink.error(node.pos, f"{what} must be a condition string, got {describe(node)}")
        return None
    try:
        raw = parse_raw(node.value)
    except ExpressionError as exc:
        ctx.sink.error(node.pos_at(exc.offset), f"{what}: bad condition: {exc.message}")
        return None
    return _build(raw, node, ctx, what)


def _build(raw: RawExpr, node: ScalarNode, ctx: PhaseContext, what: str) -> Expr | None:
    if isinstance(raw, RawComparison):
        return _comparison(raw, node, ctx, what)
    kind, items = raw
    terms = [_build(item, node, ctx, what) for item in items]
    if any(t is None for t in terms):
        return None
    checked = tuple(t for t in terms if t is not None)
    if kind == "not":
        return Not(checked[0])
    return AllOf(checked) if kind == "and" else AnyOf(checked)


def _comparison(
    raw: RawComparison, node: ScalarNode, ctx: PhaseContext, what: str
) -> Condition | None:
    tag, value, unit = raw.tag.text, raw.value, raw.unit
    if tag == ELAPSED:
        return _elapsed(raw, node, ctx, what)
    spec = ctx.symbols.capability(ctx.unit, tag, node.pos_at(raw.tag.offset), ctx.sink)
    expected = spec.unit if spec else None
    operand: float | ParamRef | None
    if value.kind == "param":
        found = reference(value.text, node.pos_at(value.offset), ctx, unit=expected, target=tag)
        operand = found[0] if found else None
    else:
        operand = float(value.text)
        if unit is not None and expected is not None and unit.text != expected:
            ctx.sink.error(
                node.pos_at(unit.offset),
                f"{what}: unit '{unit.text}' does not match unit '{expected}' of {tag}",
            )
            return None
    if operand is None or spec is None:
        return None
    return Condition(tag, raw.op.text, operand)


def _elapsed(
    raw: RawComparison, node: ScalarNode, ctx: PhaseContext, what: str
) -> Condition | None:
    value, unit = raw.value, raw.unit
    pos = node.pos_at(value.offset)
    if value.kind == "param":
        ref = _duration_param(value.text, pos, ctx, what)
        return None if ref is None else Condition(ELAPSED, raw.op.text, ref)
    if unit is None or unit.text not in TIME_UNITS:
        where = node.pos_at(unit.offset) if unit is not None else pos
        ctx.sink.error(
            where,
            f"{what}: elapsed is compared with a duration ('{value.text} d', a time unit "
            f"one of {', '.join(TIME_UNITS)})",
        )
        return None
    return Condition(ELAPSED, raw.op.text, float(value.text) * TIME_UNITS[unit.text])


def setpoint_map(node: Node, ctx: PhaseContext, field: str) -> dict[str, float | ParamRef] | None:
    """A non-empty ``{capability: number | $param}`` mapping of writable capabilities."""
    mapping = as_map(node, ctx.sink, f"phase '{ctx.phase}': field '{field}'")
    if mapping is None:
        return None
    if not mapping.entries:
        ctx.sink.error(node.pos, f"phase '{ctx.phase}': field '{field}' must not be empty")
        return None
    result: dict[str, float | ParamRef] = {}
    ok = True
    for name, entry in mapping.entries.items():
        spec = ctx.symbols.capability(ctx.unit, name, entry.key_pos, ctx.sink, writable=True)
        unit = spec.unit if spec else None
        value = number_or_param(entry.value, ctx, unit=unit, target=name)
        if value is None or spec is None:
            ok = False
        else:
            result[name] = value
    return result if ok else None
