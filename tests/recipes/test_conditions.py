"""Transition conditions: the expression language of ``until:`` and its evaluation."""

from __future__ import annotations

import pytest

from recipes import (
    ELAPSED,
    AllOf,
    AnyOf,
    Condition,
    Not,
    ParamRef,
    RecipeError,
    evaluate,
    parse_recipe,
    tags_of,
)

TEMPLATE = """\
recipe: {{name: c, version: "1", product: p, status: draft, author: a}}
formula:
  density: {{value: 1.0e+7, unit: cells/mL}}
  window: {{value: 12, unit: d}}
equipment:
  br: {{class: rocking_bioreactor}}
procedure:
  name: p
  unit_procedures:
    - name: up
      unit: br
      operations:
        - name: op
          phases:
            - name: w
              type: wait_until
              until: "{until}"
"""


def parse(until: str) -> object:
    recipe = parse_recipe(TEMPLATE.format(until=until), "c.yaml")
    (phase,) = recipe.procedure.unit_procedures[0].operations[0].phases
    return phase.args["until"]


def test_or_with_units_and_elapsed() -> None:
    expr = parse("culture.viable_density >= 1e7 cells/mL or elapsed >= 12 d")
    assert expr == AnyOf(
        (Condition("culture.viable_density", ">=", 1e7), Condition(ELAPSED, ">=", 12 * 86400.0))
    )
    assert tags_of(expr) == {"culture.viable_density"}  # type: ignore[arg-type]


def test_precedence_parentheses_not_and_parameters() -> None:
    expr = parse("(ph.pv < 7.0 or ph.pv > 7.4) and not elapsed < $window")
    assert isinstance(expr, AllOf)
    first, second = expr.terms
    assert first == AnyOf((Condition("ph.pv", "<", 7.0), Condition("ph.pv", ">", 7.4)))
    assert second == Not(Condition(ELAPSED, "<", ParamRef("window", 86400.0)))
    assert str(expr) == "(ph.pv < 7.0 or ph.pv > 7.4) and not elapsed < $window"


@pytest.mark.parametrize(
    ("values", "elapsed_s", "expected"),
    [
        ({"culture.viable_density": 2e6}, 3 * 86400, False),
        ({"culture.viable_density": 1.2e7}, 3 * 86400, True),
        ({}, 12 * 86400, True),  # an unknown value never satisfies its comparison
        ({}, 11 * 86400, False),
    ],
)
def test_evaluation(values: dict[str, float], elapsed_s: float, expected: bool) -> None:
    expr = parse("culture.viable_density >= $density or elapsed >= $window")

    def value_of(tag: str) -> float | None:
        return float(elapsed_s) if tag == ELAPSED else values.get(tag)

    def resolve(operand: object) -> float:
        if isinstance(operand, ParamRef):
            return {"density": 1e7, "window": 12.0}[operand.name] * operand.scale
        assert isinstance(operand, float)
        return operand

    assert evaluate(expr, value_of, resolve) is expected  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("until", "message"),
    [
        ("", "the condition is empty"),
        ("ph.pv >= 7 and", "ends too early"),
        ("ph.pv ! 7", "unexpected character '!'"),
        ("and ph.pv >= 7", "expected a capability or 'elapsed', found 'and'"),
        ("ph.pv >= 7 pH or elapsed >= 1 week", "elapsed is compared with a duration"),
        ("ph.pv >= $density", "has unit 'cells/mL' but ph.pv expects 'pH'"),
        ("ph.pv >= 7 degC", "unit 'degC' does not match unit 'pH' of ph.pv"),
        ("weight.pv >= 7", "has no capability 'weight.pv'"),
        ("(ph.pv >= 7))", "unexpected ')'"),
    ],
)
def test_errors_name_the_problem(until: str, message: str) -> None:
    with pytest.raises(RecipeError) as info:
        parse(until)
    assert message in str(info.value)
    assert all(d.line == 17 for d in info.value.diagnostics), str(info.value)
