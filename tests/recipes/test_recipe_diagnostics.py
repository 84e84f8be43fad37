"""Diagnostics: every error is collected and sorted, formatted FILE:LINE:COL, never a traceback."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from recipes import Diagnostic, RecipeError, load_recipe, parse_recipe

LIBRARY = Path(__file__).parents[2] / "recipes" / "library" / "car-t-expansion.yaml"

SEVERAL_ERRORS = """\
recipe: {name: x, version: 2, product: p, status: active, author: a}
formula:
  t: {value: 40, unit: degC, max: 38}
  rate: {value: 6, unit: rpm}
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
            - {name: a, type: setpoint, set: {do.pv: $rate}}
            - {name: a, type: hold_for, duration: soon}
"""


def errors(text: str) -> list[Diagnostic]:
    with pytest.raises(RecipeError) as raised:
        parse_recipe(text, "r.yaml")
    return raised.value.diagnostics


def test_all_errors_are_reported_sorted_by_position() -> None:
    found = errors(SEVERAL_ERRORS)
    assert [(d.line, d.col) for d in found] == [
        (1, 28),
        (1, 51),
        (3, 14),
        (15, 47),
        (16, 22),
        (16, 51),
    ]
    assert found == sorted(found)
    messages = [d.message for d in found]
    assert "version must be a string" in messages[0]
    assert "must be one of draft, approved, retired, got 'active'" in messages[1]
    assert "value 40 is above its max 38" in messages[2]
    assert "capability 'do.pv' of unit 'br' is read-only" in messages[3]
    assert "duplicate phase name 'a'" in messages[4]
    assert "bad duration 'soon'" in messages[5]


def test_error_text_is_one_line_per_diagnostic() -> None:
    with pytest.raises(RecipeError) as raised:
        parse_recipe(SEVERAL_ERRORS, "r.yaml")
    lines = str(raised.value).splitlines()
    assert lines == [str(d) for d in raised.value.diagnostics]
    assert lines[0].startswith("r.yaml:1:28: ")


def test_diagnostic_format() -> None:
    assert str(Diagnostic("a.yaml", 7, 12, "unknown phase type 'x'")) == (
        "a.yaml:7:12: unknown phase type 'x'"
    )


@pytest.mark.parametrize("text", ["", "   \n", "# nothing\n", "42\n", "just text\n", "[1, 2]\n"])
def test_empty_or_non_mapping_document_is_an_error_at_1_1(text: str) -> None:
    found = errors(text)
    assert [(d.line, d.col) for d in found] == [(1, 1)]


def test_missing_file_is_a_recipe_error(tmp_path: Path) -> None:
    with pytest.raises(RecipeError) as raised:
        load_recipe(tmp_path / "absent.yaml")
    assert "cannot read recipe" in str(raised.value)


def test_undecodable_file_is_a_recipe_error(tmp_path: Path) -> None:
    path = tmp_path / "latin1.yaml"
    path.write_bytes("recipe: {name: caf\xe9}\n".encode("latin-1"))
    with pytest.raises(RecipeError):
        load_recipe(path)


def test_every_duplicate_key_is_reported() -> None:
    found = errors("recipe: {}\nrecipe: {}\nformula: {}\nformula: {}\n")
    duplicates = [d for d in found if "duplicate key" in d.message]
    assert [(d.line, d.col) for d in duplicates] == [(2, 1), (4, 1)]


@pytest.mark.parametrize(
    "snippet",
    [
        "a: &x [*x]\n",  # recursive alias
        "? [a, {b: [1]}]\n: 1\n",  # complex key
        "k: !custom 1\n",  # unknown tag
        "v: .nan\n",
        "\x07",
        "a: *undefined\n",
        "---\na: 1\n---\nb: 2\n",
    ],
)
def test_odd_yaml_is_reported_not_raised(snippet: str) -> None:
    assert errors(snippet)


LIBRARY_LINES = LIBRARY.read_text(encoding="utf-8").splitlines(keepends=True)


@pytest.mark.slow
@settings(max_examples=60, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.integers(0, len(LIBRARY_LINES) - 1),
            st.integers(0, 80),
            st.sampled_from(["", " ", ":", "- ", "{", "]", "$", "'", "\t", "&a ", "*a", "1e400"]),
        ),
        min_size=1,
        max_size=4,
    )
)
def test_mutated_library_recipe_never_raises_anything_else(
    edits: list[tuple[int, int, str]],
) -> None:
    lines = list(LIBRARY_LINES)
    for index, col, insert in edits:
        lines[index] = lines[index][:col] + insert + lines[index][col + len(insert) :]
    try:
        parse_recipe("".join(lines), "mutated.yaml")
    except RecipeError as exc:
        assert exc.diagnostics
        assert all(d.line >= 1 and d.col >= 1 for d in exc.diagnostics)
