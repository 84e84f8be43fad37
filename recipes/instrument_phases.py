"""Phase types that drive instruments with their own logic: ``transfer`` (move a mass
with a pump, closed-loop on a balance) and ``run_program`` (start an instrument program
such as a centrifuge wash or a freezer profile, and wait for it)."""

from __future__ import annotations

from recipes.argschemas import ARG_SCHEMAS, NUMBER_OR_PARAM, TEXT
from recipes.fields import as_str, describe
from recipes.phaseargs import duration, number_or_param, setpoint_map
from recipes.phasespec import ArgSpec, PhaseContext, PhaseSpec, register_phase
from recipes.yamltree import Node

PROGRAM_NEEDS = ("run.complete", "alarm.active")
"""Capabilities a unit must offer (with method ``start_program``) to run programs."""


def _unit_of_class(node: Node, ctx: PhaseContext, field: str, cls_name: str) -> str | None:
    alias = as_str(node, ctx.sink, f"phase '{ctx.phase}': field '{field}'")
    if alias is None:
        return None
    cls = ctx.symbols.unit_class(alias, node.pos, ctx.sink)
    if cls is None:
        return None
    if cls.name != cls_name:
        ctx.sink.error(
            node.pos,
            f"phase '{ctx.phase}': {field} '{alias}' is a {cls.name}, expected a {cls_name}",
        )
        return None
    return alias


def _pump(node: Node, ctx: PhaseContext) -> str | None:
    return _unit_of_class(node, ctx, "pump", "peristaltic_pump")


def _balance(node: Node, ctx: PhaseContext) -> str | None:
    return _unit_of_class(node, ctx, "balance", "balance")


def _grams(node: Node, ctx: PhaseContext) -> object | None:
    return number_or_param(node, ctx, unit="g", target=f"phase '{ctx.phase}': mass")


def _tolerance(node: Node, ctx: PhaseContext) -> object | None:
    return number_or_param(node, ctx, unit="g", target=f"phase '{ctx.phase}': tolerance")


def _rpm(node: Node, ctx: PhaseContext) -> object | None:
    return number_or_param(node, ctx, unit="rpm", target=f"phase '{ctx.phase}': rate")


def _timeout(node: Node, ctx: PhaseContext) -> object | None:
    return duration(node, ctx, f"phase '{ctx.phase}': timeout")


def _program(node: Node, ctx: PhaseContext) -> object | None:
    value = number_or_param(node, ctx, unit=None, target=f"phase '{ctx.phase}': program")
    if isinstance(value, float) and (value < 1 or value != int(value)):
        ctx.sink.error(
            node.pos,
            f"phase '{ctx.phase}': program must be a whole number ≥ 1, got {describe(node)}",
        )
        return None
    return value


def _program_set(node: Node, ctx: PhaseContext) -> object | None:
    return setpoint_map(node, ctx, "set")


def _program_rules(ctx: PhaseContext) -> None:
    cls = ctx.equipment_class
    if cls is None:
        return
    missing = [c for c in PROGRAM_NEEDS if c not in cls.capabilities]
    if "start_program" not in cls.methods or missing:
        ctx.sink.error(
            ctx.node.label_pos,
            f"phase '{ctx.phase}': unit '{ctx.unit}' ({cls.name}) cannot run programs "
            f"(needs method start_program and {', '.join(PROGRAM_NEEDS)})",
        )


register_phase(
    PhaseSpec(
        name="transfer",
        description="Pump a mass of liquid, closed-loop on a balance (slows near the target).",
        args=(
            ArgSpec("pump", _pump, schema=TEXT, description="equipment alias of the pump"),
            ArgSpec("balance", _balance, schema=TEXT, description="equipment alias of the balance"),
            ArgSpec("mass", _grams, schema=NUMBER_OR_PARAM, description="target mass, g"),
            ArgSpec("rate", _rpm, schema=NUMBER_OR_PARAM, description="pump speed, rpm"),
            ArgSpec(
                "tolerance",
                _tolerance,
                required=False,
                default=0.5,
                schema=NUMBER_OR_PARAM,
                description="accepted error, g (default 0.5)",
            ),
            ArgSpec(
                "timeout",
                _timeout,
                required=False,
                schema=ARG_SCHEMAS["timeout"],
                description="duration",
            ),
        ),
        idempotent=False,
    )
)
register_phase(
    PhaseSpec(
        name="run_program",
        description="Set up and start an instrument program, wait until it completes.",
        args=(
            ArgSpec("program", _program, schema=NUMBER_OR_PARAM, description="program number"),
            ArgSpec(
                "set",
                _program_set,
                required=False,
                schema=ARG_SCHEMAS["set"],
                description="setpoints written before the start",
            ),
            ArgSpec(
                "timeout",
                _timeout,
                required=False,
                schema=ARG_SCHEMAS["timeout"],
                description="duration",
            ),
        ),
        finish=_program_rules,
        idempotent=False,
    )
)
