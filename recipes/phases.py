"""The built-in phase types: ``setpoint``, ``hold_for``, ``wait_until`` and ``invoke``."""

from __future__ import annotations

from recipes.argschemas import ARG_SCHEMAS
from recipes.conditions import AnyOf
from recipes.fields import as_choice, as_map, as_number, as_seq, as_str, suggest
from recipes.model import Condition, ParamRef
from recipes.phaseargs import condition, duration, number_or_param, setpoint_map
from recipes.phasespec import PHASE_TYPES, ArgSpec, PhaseContext, PhaseSpec, register_phase
from recipes.yamltree import Node, ScalarNode

__all__ = ["PHASE_TYPES"]

ON_TIMEOUT = ("fail", "continue")


def _setpoints(node: Node, ctx: PhaseContext) -> dict[str, float | ParamRef] | None:
    """``{capability: number | $param}``; capabilities must be writable, units must match."""
    return setpoint_map(node, ctx, "set")


def _duration(node: Node, ctx: PhaseContext) -> object | None:
    return duration(node, ctx, f"phase '{ctx.phase}': duration")


def _timeout(node: Node, ctx: PhaseContext) -> object | None:
    return duration(node, ctx, f"phase '{ctx.phase}': timeout")


def _until(node: Node, ctx: PhaseContext) -> object | None:
    return condition(node, ctx, f"phase '{ctx.phase}': until")


def _on_timeout(node: Node, ctx: PhaseContext) -> str | None:
    return as_choice(node, ctx.sink, f"phase '{ctx.phase}': field 'on_timeout'", ON_TIMEOUT)


def _fallback(node: Node, ctx: PhaseContext) -> list[str] | None:
    """``fallback: TAG`` or ``[TAG, …]``: the branches of an ``until: A or B`` that are the
    fallback (e.g. ``elapsed``); the others are the acceptance criterion. Review reports a
    condition met on its fallback while the criterion was false."""
    what = f"phase '{ctx.phase}': field 'fallback'"
    if isinstance(node, ScalarNode) and isinstance(node.value, str):
        text = as_str(node, ctx.sink, what)
        return None if text is None else [text]
    seq = as_seq(node, ctx.sink, what, non_empty=True)
    if seq is None:
        return None
    names = [as_str(item, ctx.sink, what) for item in seq.items]
    return None if any(n is None for n in names) else [n for n in names if n is not None]


def _check_fallback(ctx: PhaseContext) -> None:
    """Each fallback names a comparison of the top-level ``or``; one branch stays the
    criterion."""
    fallback, until = ctx.args.get("fallback"), ctx.args.get("until")
    if not isinstance(fallback, list) or until is None:
        return  # absent or already reported
    pos = ctx.node.entries["fallback"].value.pos
    what = f"phase '{ctx.phase}': fallback"
    branches = (
        [t.tag for t in until.terms if isinstance(t, Condition)] if isinstance(until, AnyOf) else []
    )
    if not branches:
        ctx.sink.error(pos, f"{what} needs an 'until' of the form 'CRITERION or FALLBACK'")
        return
    for name in fallback:
        if name not in branches:
            ctx.sink.error(
                pos,
                f"{what} '{name}' is not a branch of until{suggest(name, branches)} "
                f"(branches: {', '.join(branches)})",
            )
    if set(branches) <= set(fallback):
        ctx.sink.error(pos, f"{what}: every branch is a fallback; one must be the criterion")


def _wait_until_rules(ctx: PhaseContext) -> None:
    if ctx.present("on_timeout") and not ctx.present("timeout"):
        ctx.sink.error(
            ctx.node.entries["on_timeout"].key_pos,
            f"phase '{ctx.phase}': 'on_timeout' has no effect without 'timeout'",
        )
    _check_fallback(ctx)


def _method(node: Node, ctx: PhaseContext) -> str | None:
    name = as_str(node, ctx.sink, f"phase '{ctx.phase}': field 'method'")
    cls = ctx.equipment_class
    if name is None or cls is None:
        return None
    if name not in cls.methods:
        ctx.sink.error(
            node.pos,
            f"unit '{ctx.unit}' ({cls.name}) has no method '{name}'{suggest(name, cls.methods)}",
        )
        return None
    return name


def _method_args(node: Node, ctx: PhaseContext) -> dict[str, float | ParamRef] | None:
    """``{argument: number | $param}`` for the method checked before; units must match."""
    mapping = as_map(node, ctx.sink, f"phase '{ctx.phase}': field 'args'")
    if mapping is None:
        return None
    cls = ctx.equipment_class
    method = cls.methods.get(str(ctx.args.get("method"))) if cls else None
    result: dict[str, float | ParamRef] = {}
    ok = True
    for name, entry in mapping.entries.items():
        unit: str | None = None
        if method is not None:
            if name not in method.args:
                ctx.sink.error(
                    entry.key_pos,
                    f"method '{method.name}' has no argument '{name}'"
                    f"{suggest(name, method.args)} (arguments: {', '.join(method.args)})",
                )
                ok = False
                continue
            unit = method.args[name]
        value = number_or_param(entry.value, ctx, unit=unit, target=f"argument '{name}'")
        if value is None:
            ok = False
        else:
            result[name] = value
    return result if ok and method is not None else None


def _invoke_rules(ctx: PhaseContext) -> None:
    cls = ctx.equipment_class
    method = cls.methods.get(str(ctx.args.get("method"))) if cls else None
    if method is None or (ctx.present("args") and "args" not in ctx.args):
        return  # already reported
    given = ctx.args.get("args", {})
    assert isinstance(given, dict)
    pos = ctx.node.entries["args"].key_pos if ctx.present("args") else ctx.node.label_pos
    for name in method.args:
        if name not in given:
            ctx.sink.error(
                pos, f"phase '{ctx.phase}': missing argument '{name}' for method '{method.name}'"
            )
    if not ctx.present("args"):
        ctx.args["args"] = {}


register_phase(
    PhaseSpec(
        name="setpoint",
        description="Write setpoints of the unit, then complete.",
        args=(
            ArgSpec(
                "set",
                _setpoints,
                schema=ARG_SCHEMAS["set"],
                description="capability → number or $param",
            ),
        ),
    )
)
register_phase(
    PhaseSpec(
        name="hold_for",
        description="Keep the current state for a duration.",
        args=(
            ArgSpec("duration", _duration, schema=ARG_SCHEMAS["duration"], description="duration"),
        ),
    )
)
register_phase(
    PhaseSpec(
        name="wait_until",
        description="Wait until a condition on a unit capability holds, optionally with timeout.",
        args=(
            ArgSpec(
                "until", _until, schema=ARG_SCHEMAS["until"], description="'CAPABILITY OP OPERAND'"
            ),
            ArgSpec(
                "timeout",
                _timeout,
                schema=ARG_SCHEMAS["timeout"],
                required=False,
                description="duration",
            ),
            ArgSpec(
                "on_timeout",
                _on_timeout,
                schema=ARG_SCHEMAS["on_timeout"],
                required=False,
                default="fail",
                description="fail | continue (default fail)",
            ),
            ArgSpec(
                "fallback",
                _fallback,
                schema=ARG_SCHEMAS["fallback"],
                required=False,
                description="the until branch(es) that are the fallback, e.g. elapsed",
            ),
        ),
        finish=_wait_until_rules,
    )
)
register_phase(
    PhaseSpec(
        name="invoke",
        description="Run a method of the unit with arguments.",
        args=(
            ArgSpec(
                "method",
                _method,
                schema=ARG_SCHEMAS["method"],
                description="method name of the unit's class",
            ),
            ArgSpec(
                "args",
                _method_args,
                schema=ARG_SCHEMAS["args"],
                required=False,
                description="name → number or $param",
            ),
        ),
        finish=_invoke_rules,
        idempotent=False,
    )
)


def _ramp_capability(node: Node, ctx: PhaseContext) -> str | None:
    name = as_str(node, ctx.sink, f"phase '{ctx.phase}': field 'capability'")
    if name is None:
        return None
    spec = ctx.symbols.capability(ctx.unit, name, node.pos, ctx.sink, writable=True)
    return name if spec is not None else None


def _ramp_target(node: Node, ctx: PhaseContext) -> float | ParamRef | None:
    capability = ctx.args.get("capability")
    cls = ctx.equipment_class
    spec = cls.capabilities.get(str(capability)) if cls and capability else None
    unit = spec.unit if spec else None
    return number_or_param(node, ctx, unit=unit, target=str(capability or "ramp target"))


def _ramp_steps(node: Node, ctx: PhaseContext) -> float | None:
    steps = as_number(node, ctx.sink, f"phase '{ctx.phase}': field 'steps'")
    if steps is not None and (steps < 1 or steps != int(steps) or steps > 1000):
        ctx.sink.error(node.pos, f"phase '{ctx.phase}': steps must be a whole number 1-1000")
        return None
    return steps


register_phase(
    PhaseSpec(
        name="ramp",
        description="Move a setpoint linearly from its current value to a target over a duration.",
        args=(
            ArgSpec(
                "capability",
                _ramp_capability,
                schema=ARG_SCHEMAS["capability"],
                description="a writable capability",
            ),
            ArgSpec(
                "to", _ramp_target, schema=ARG_SCHEMAS["to"], description="target: number or $param"
            ),
            ArgSpec("duration", _duration, schema=ARG_SCHEMAS["duration"], description="duration"),
            ArgSpec(
                "steps",
                _ramp_steps,
                schema=ARG_SCHEMAS["steps"],
                required=False,
                default=20.0,
                description="setpoint writes along the ramp (default 20)",
            ),
        ),
    )
)

# The phases where a person acts, and those driving instrument programs, register
# themselves on import.
from recipes import instrument_phases as _instrument_phases  # noqa: E402
from recipes import operator_phases as _operator_phases  # noqa: E402

del _operator_phases, _instrument_phases
