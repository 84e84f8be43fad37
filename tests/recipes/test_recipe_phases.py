"""Phase types, equipment catalog, durations and conditions."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from recipes import (
    EQUIPMENT_CLASSES,
    PHASE_TYPES,
    ArgSpec,
    Condition,
    Duration,
    ParamRef,
    PhaseContext,
    PhaseSpec,
    RecipeError,
    parse_recipe,
    register_phase,
)
from recipes.fields import as_str
from recipes.yamltree import Node

HEAD = """\
recipe: {name: t, version: "1", product: p, status: draft, author: a}
formula:
  wait: {value: 3, unit: h}
  density: {value: 1.0e+6, unit: cells/mL}
equipment:
  br: {class: rocking_bioreactor}
procedure:
  name: p
  unit_procedures:
    - name: up
      unit: br
      operations:
        - name: op
          phases:
"""


def phase_args(*phases: str) -> list[dict[str, object]]:
    text = HEAD + "".join(f"            - {p}\n" for p in phases)
    recipe = parse_recipe(text, "t.yaml")
    return [phase.args for _, _, _, phase in recipe.procedure.walk()]


def test_builtin_phase_types() -> None:
    assert set(PHASE_TYPES) >= {"setpoint", "hold_for", "wait_until", "invoke"}
    assert PHASE_TYPES["wait_until"].required == ("until",)
    assert PHASE_TYPES["wait_until"].optional == ("timeout", "on_timeout", "fallback")
    assert PHASE_TYPES["invoke"].required == ("method",)


def test_rocking_bioreactor_catalog() -> None:
    cls = EQUIPMENT_CLASSES["rocking_bioreactor"]
    writable = {name for name, cap in cls.capabilities.items() if cap.writable}
    assert len(cls.capabilities) == 18
    assert writable == {
        "temperature.sp",
        "ph.sp",
        "do.sp",
        "rocking.rate_sp",
        "rocking.angle_sp",
        "volume.sp",
        "perfusion.rate_sp",
    }
    assert cls.capabilities["perfusion.rate_pv"].unit == "mL/d"
    assert cls.capabilities["culture.viable_density"].unit == "cells/mL"
    assert cls.methods["inoculate"].args == {"volume": "mL", "viable_cells": "cells"}


@pytest.mark.parametrize(
    ("written", "seconds"),
    [
        ("90", 90.0),
        ("1.5", 1.5),
        ("30 s", 30.0),
        ("30 min", 1800.0),
        ("2 h", 7200.0),
        ("5 d", 432000.0),
        ("0.5 h", 1800.0),
        ("10min", 600.0),
    ],
)
def test_durations_are_normalised_to_seconds(written: str, seconds: float) -> None:
    [args] = phase_args(f"{{name: x, type: hold_for, duration: {written}}}")
    assert args["duration"] == Duration(seconds)


def test_duration_parameter_keeps_reference_with_unit_scale() -> None:
    [args] = phase_args("{name: x, type: hold_for, duration: $wait}")
    assert args["duration"] == ParamRef("wait", 3600.0)


def test_wait_until_condition_and_defaults() -> None:
    [plain, timed] = phase_args(
        "{name: a, type: wait_until, until: culture.viability < 70}",
        "{name: b, type: wait_until, until: 'culture.viable_density>=$density', timeout: 1 h,"
        " on_timeout: continue}",
    )
    assert plain == {"until": Condition("culture.viability", "<", 70.0), "on_timeout": "fail"}
    assert timed["until"] == Condition("culture.viable_density", ">=", ParamRef("density"))
    assert timed["timeout"] == Duration(3600.0)
    assert timed["on_timeout"] == "continue"
    condition = timed["until"]
    assert isinstance(condition, Condition)
    assert condition.holds(2.0e6, 1.0e6) and not condition.holds(0.5e6, 1.0e6)


def test_setpoint_accepts_literal_numbers() -> None:
    [args] = phase_args("{name: a, type: setpoint, set: {temperature.sp: 37, do.sp: 50.5}}")
    assert args == {"set": {"temperature.sp": 37.0, "do.sp": 50.5}}


@pytest.mark.parametrize(
    ("phase", "message"),
    [
        (
            "{name: a, type: wait_until, until: culture.viability < 70, on_timeout: continue}",
            "'on_timeout' has no effect without 'timeout'",
        ),
        ("{name: a, type: hold_for, duration: -5}", "must not be negative"),
        ("{name: a, type: hold_for, duration: [1, h]}", "must be a duration, got a list"),
        ("{name: a, type: setpoint, set: {}}", "field 'set' must not be empty"),
        (
            "{name: a, type: hold_for, duration: 1 h, durration: 2 h}",
            "unknown field 'durration' in phase 'a'; did you mean 'duration'?",
        ),
        (
            "{name: a, type: invoke, method: inoculate, args: {volume: 5, viable_cells: $wait}}",
            "parameter '$wait' has unit 'h' but argument 'viable_cells' expects 'cells'",
        ),
        ("{name: a/b, type: hold_for, duration: 1 h}", "must start with a letter or '_'"),
        (
            "{name: a, type: wait_until, until: culture.viability < $nope}",
            "undefined parameter '$nope'",
        ),
    ],
)
def test_phase_argument_errors(phase: str, message: str) -> None:
    with pytest.raises(RecipeError) as raised:
        phase_args(phase)
    [diagnostic] = raised.value.diagnostics
    assert message in diagnostic.message


@pytest.fixture
def prompt_phase() -> Iterator[PhaseSpec]:
    def check_text(node: Node, ctx: PhaseContext) -> object | None:
        return as_str(node, ctx.sink, f"phase '{ctx.phase}': field 'text'")

    spec = register_phase(PhaseSpec("prompt", "Ask the operator.", (ArgSpec("text", check_text),)))
    yield spec
    del PHASE_TYPES["prompt"]


def test_new_phase_type_needs_no_loader_change(prompt_phase: PhaseSpec) -> None:
    [args] = phase_args("{name: ask, type: prompt, text: Check the bag}")
    assert args == {"text": "Check the bag"}
    with pytest.raises(ValueError, match="already registered"):
        register_phase(prompt_phase)
