"""Reusable checks for phase arguments: numbers, ``$param`` references, durations, conditions."""

from __future__ import annotations

from recipes.diagnostics import Pos
from recipes.expressions import (
    TIME_UNITS,
    ExpressionError,
    looks_like_param,
    param_name,
    parse_condition,
    parse_duration,
    parse_number,
)
from recipes.fields import as_number, describe, is_number, suggest
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
        if seconds is not None and seconds < 0:
            ctx.sink.error(node.pos, f"{what} must not be negative")
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


def condition(node: Node, ctx: PhaseContext, what: str) -> Condition | None:
    """``CAPABILITY OP OPERAND`` on the phase's unit; OPERAND a number or ``$param``."""
    if not (isinstance(node, ScalarNode) and isinstance(node.value, str)):
        if not isinstance(node, BadNode):
            ctx.sink.error(node.pos, f"{what} must be a condition string, got {describe(node)}")
        return None
    try:
        parsed = parse_condition(node.value)
    except ExpressionError as exc:
        ctx.sink.error(node.pos, f"{what}: {exc.message}")
        return None
    spec = ctx.symbols.capability(ctx.unit, parsed.tag, node.pos_at(parsed.tag_offset), ctx.sink)
    operand_pos = node.pos_at(parsed.operand_offset)
    operand: float | ParamRef | None
    if looks_like_param(parsed.operand):
        unit = spec.unit if spec else None
        found = reference(parsed.operand, operand_pos, ctx, unit=unit, target=parsed.tag)
        operand = found[0] if found else None
    else:
        operand = parse_number(parsed.operand)
        if operand is None:
            ctx.sink.error(
                operand_pos,
                f"{what}: operand '{parsed.operand}' must be a number or $parameter",
            )
    if operand is None or spec is None:
        return None
    return Condition(parsed.tag, parsed.op, operand)
