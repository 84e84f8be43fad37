"""Recipe declarations that review judges: hold-time limits between named steps
(``hold_times:``) and which branch of an ``or`` condition is the fallback (issue 12)."""

from __future__ import annotations

from pathlib import Path

import pytest

from recipes import RecipeError, parse_recipe

ROOT = Path(__file__).resolve().parents[2]

BASE = """\
recipe: {name: mini, version: "1.0", product: P, status: draft, author: QA}
equipment:
  bioreactor: {class: rocking_bioreactor}
procedure:
  name: mini
  unit_procedures:
    - name: harvest
      unit: bioreactor
      operations:
        - name: collect
          phases:
            - {name: drain, type: hold_for, duration: 1 min}
    - name: freeze
      unit: bioreactor
      operations:
        - name: cool
          phases:
            - {name: ramp, type: hold_for, duration: 1 min}
%s"""


def _errors(text: str) -> list[str]:
    with pytest.raises(RecipeError) as err:
        parse_recipe(text, "mini.yaml")
    return [str(d) for d in err.value.diagnostics]


def test_hold_times_are_read_with_paths_and_durations() -> None:
    text = BASE % (
        "hold_times:\n"
        "  - {name: harvest-to-freeze, from: harvest/collect, to: freeze/cool/ramp, max: 2 h}\n"
        "  - {name: whole, from: harvest, to: freeze, max: 600}\n"
    )
    recipe = parse_recipe(text, "mini.yaml")
    first, second = recipe.hold_times
    assert (first.name, first.start, first.end, first.max_s) == (
        "harvest-to-freeze",
        "harvest/collect",
        "freeze/cool/ramp",
        7200.0,
    )
    assert second.max_s == 600.0
    assert recipe.document()["hold_times"][0]["max"] == "2 h"  # journaled with the batch


def test_hold_time_mistakes_name_file_line_and_column() -> None:
    errors = _errors(
        BASE
        % (
            "hold_times:\n"
            "  - {name: a, from: harvest/colect, to: freeze/cool, max: 2 h}\n"
            "  - {name: a, from: harvest, to: freeze, max: $t}\n"
            "  - {name: c, from: harvest, to: freeze, max: -1}\n"
            "  - {name: d, from: harvest, to: freeze, maximum: 1 h}\n"
        )
    )
    assert errors[0] == (
        "mini.yaml:20:21: hold time 'a': from 'harvest/colect' is not an element of the "
        "procedure (write unit_procedure, unit_procedure/operation or .../phase)"
    )
    assert any(e.startswith("mini.yaml:21:12: duplicate hold time name 'a'") for e in errors)
    assert "mini.yaml:21:47: hold time 'a': max must be a literal duration, not a $parameter" in (
        errors
    )
    assert "mini.yaml:22:47: hold time 'c': max must be positive" in errors
    assert any(e.startswith("mini.yaml:23:42: unknown field 'maximum'") for e in errors)


WAIT = """\
recipe: {name: mini, version: "1.0", product: P, status: draft, author: QA}
equipment:
  bioreactor: {class: rocking_bioreactor}
procedure:
  name: mini
  unit_procedures:
    - name: up
      unit: bioreactor
      operations:
        - name: op
          phases:
            - name: harvest
              type: wait_until
              until: %s
              fallback: %s
"""


def test_a_wait_names_the_fallback_branch_of_its_until() -> None:
    until = "culture.viable_density >= 1e7 cells/mL or elapsed >= 1 d"
    recipe = parse_recipe(WAIT % (until, "elapsed"), "mini.yaml")
    (_path, _up, _op, phase) = next(recipe.procedure.walk())
    assert phase.args["fallback"] == ["elapsed"]
    assert (
        recipe.document()["procedure"]["unit_procedures"][0]["operations"][0]["phases"][0][
            "fallback"
        ]
        == "elapsed"
    )
    library = parse_recipe(
        (ROOT / "recipes" / "library" / "car-t-expansion.yaml").read_text(), "lib.yaml"
    )
    waits = [p for path, _u, _o, p in library.procedure.walk() if "harvest_density" in path]
    assert waits[0].args["fallback"] == ["elapsed"]


def test_a_fallback_that_is_not_a_branch_is_reported_where_written() -> None:
    until = "culture.viable_density >= 1e7 cells/mL or elapsed >= 1 d"
    assert _errors(WAIT % (until, "elapsd")) == [
        "mini.yaml:15:25: phase 'harvest': fallback 'elapsd' is not a branch of until; "
        "did you mean 'elapsed'? (branches: culture.viable_density, elapsed)"
    ]
    assert _errors(WAIT % (until, "[elapsed, culture.viable_density]")) == [
        "mini.yaml:15:25: phase 'harvest': fallback: every branch is a fallback; "
        "one must be the criterion"
    ]
    assert _errors(WAIT % ("elapsed >= 1 d", "elapsed")) == [
        "mini.yaml:15:25: phase 'harvest': fallback needs an 'until' of the form "
        "'CRITERION or FALLBACK'"
    ]
