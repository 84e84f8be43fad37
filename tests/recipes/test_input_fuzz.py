"""Inputs that cannot hurt (issue 16): a bounded hypothesis fuzz of recipes, plant files
and device profiles. Each generated file is a real file of the library or the demo plant
with one to three values replaced by something hostile (NaN, ±inf, 1e308, negative
times, control and bidi characters, deep nesting, huge strings, wrong types). Loading it
must either succeed with a harmless result or refuse it with the loader's own error
(a positioned diagnostic): never another exception, never NaN/inf or a negative time
accepted. Counts (generated, refused, accepted) are printed for the record."""

from __future__ import annotations

import io
import json
import math
import os
import tomllib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from ruamel.yaml import YAML

from controller.plant import PlantError, load_plant
from drivers.errors import ProfileError
from drivers.profile import PROFILE_DIR, load_profile
from recipes import RecipeError, parse_recipe

ROOT = Path(__file__).resolve().parents[2]
BASE_RECIPE = """
recipe: {name: fuzz, version: "1.0", product: Test, status: draft, author: fuzz}
formula:
  soak: {value: 30, unit: min, min: 1, max: 600}
  temperature: {value: 37.0, unit: degC, min: 20, max: 40}
equipment:
  bioreactor: {class: rocking_bioreactor}
monitors:
  - {name: temperature, unit: bioreactor, tag: temperature.pv, engineering_unit: degC,
     alert: {low: 36.5, high: 37.5}, action: {low: 36.0, high: 38.0}, delay: 10 min,
     on_action: hold, active_from: up/run}
procedure:
  name: fuzz
  unit_procedures:
    - name: up
      unit: bioreactor
      operations:
        - name: run
          phases:
            - {name: warm, type: setpoint, set: {temperature.sp: $temperature}}
            - {name: ramp, type: ramp, capability: temperature.sp, to: 30.0, duration: 50 min,
               steps: 5}
            - {name: settle, type: wait_until, until: "temperature.pv >= 36 and elapsed >= 5 min",
               timeout: 2 h, on_timeout: fail}
            - {name: soak, type: hold_for, duration: $soak}
"""
PLANT = ROOT / "plants" / "demo.toml"
PROFILES = sorted(PROFILE_DIR.glob("*.toml"))
EXAMPLES = int(os.environ.get("CELLBATCH_FUZZ_EXAMPLES", "1000"))
COUNTS: dict[str, dict[str, int]] = {}

HOSTILE_TEXT = st.sampled_from(
    [
        "name\u202eevil",
        "tab\there",
        "del\x7f",
        "nul\x00",
        "",
        " ",
        "1e400 d",
        "-5 d",
        "1e308 s",
        "nan s",
        "inf h",
        "0 s",
        "elapsed >= -5 d",
        "$nosuch",
        "(" * 330 + "true" + ")" * 330,
        "x" * 12_000,
        "fast",
        "\ud7ff\ue000",
    ]
)
HOSTILE_NUMBER = st.sampled_from(
    [math.nan, math.inf, -math.inf, 1e308, -1e308, -4, -0.0, 0, 2**63, -(2**63), 1e-320]
)


def deep(depth: int) -> Any:
    value: Any = 1
    for _ in range(depth):
        value = [value]
    return value


HOSTILE = st.one_of(
    HOSTILE_TEXT,
    HOSTILE_NUMBER,
    st.floats(allow_nan=True, allow_infinity=True),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.booleans(),
    st.none(),
    st.text(max_size=40),
    st.builds(deep, st.integers(min_value=1, max_value=120)),
    st.just({"a": {"b": {"c": None}}}),
    st.just([]),
    st.just({}),
)


def leaves(node: Any, path: tuple[Any, ...] = ()) -> Iterator[tuple[Any, ...]]:
    """Every path to a value of a parsed document (containers included)."""
    if path:
        yield path
    if isinstance(node, dict):
        for key, value in node.items():
            yield from leaves(value, (*path, key))
    elif isinstance(node, list):
        for index, value in enumerate(node):
            yield from leaves(value, (*path, index))


def replaced(doc: Any, path: tuple[Any, ...], value: Any) -> Any:
    if not path:
        return value
    head, rest = path[0], path[1:]
    if isinstance(doc, dict):
        return {**doc, head: replaced(doc[head], rest, value)}
    copy = list(doc)
    copy[head] = replaced(doc[head], rest, value)
    return copy


def no_null(value: Any) -> Any:
    """TOML has no null: None (anywhere inside) becomes ""."""
    if value is None:
        return ""
    if isinstance(value, dict):
        return {k: no_null(v) for k, v in value.items()}
    if isinstance(value, list):
        return [no_null(v) for v in value]
    return value


HOSTILE_TOML = HOSTILE.map(no_null)


def mutate(doc: Any, data: st.DataObject, values: st.SearchStrategy[Any] = HOSTILE) -> Any:
    paths = list(leaves(doc))
    for _ in range(data.draw(st.integers(min_value=1, max_value=3))):
        path = data.draw(st.sampled_from(paths))
        doc = replaced(doc, path, data.draw(values))
        paths = list(leaves(doc))
    return doc


def count(kind: str, outcome: str) -> None:
    tally = COUNTS.setdefault(kind, {"generated": 0, "refused": 0, "accepted": 0})
    tally["generated"] += 1
    tally[outcome] += 1


def no_bad_numbers(value: Any) -> bool:
    if isinstance(value, float):
        return math.isfinite(value)
    if isinstance(value, dict):
        return all(no_bad_numbers(v) for v in value.values())
    if isinstance(value, list | tuple):
        return all(no_bad_numbers(v) for v in value)
    return True


_yaml = YAML(typ="safe", pure=True)
_BASE_RECIPE = _yaml.load(BASE_RECIPE)


def dump_yaml(doc: Any) -> str:
    out = io.StringIO()
    try:
        _yaml.dump(doc, out)
    except RecursionError:
        return "recipe: [" * 400
    return out.getvalue()


FUZZ = settings(
    max_examples=EXAMPLES,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=list(HealthCheck),
)


@pytest.mark.slow
@FUZZ
@given(data=st.data())
def test_generated_recipes_are_refused_cleanly_or_harmless(data: st.DataObject) -> None:
    text = dump_yaml(mutate(_BASE_RECIPE, data))
    try:
        recipe = parse_recipe(text, "fuzz.yaml")
    except RecipeError as exc:
        assert all(str(d).startswith("fuzz.yaml:") for d in exc.diagnostics)
        count("recipes", "refused")
        return
    count("recipes", "accepted")
    assert no_bad_numbers(recipe.document())
    for _path, _up, _op, phase in recipe.procedure.walk():
        for value in phase.args.values():
            seconds = getattr(value, "seconds", None)
            if isinstance(seconds, float):
                assert math.isfinite(seconds) and seconds >= 0


def toml_value(value: Any) -> str:
    """One TOML value, inline (tables as inline tables); TypeError if TOML has none."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return (
            "nan"
            if math.isnan(value)
            else ("inf" if value > 0 else "-inf")
            if math.isinf(value)
            else repr(value)
        )
    if isinstance(value, str):
        return json.dumps(value)
    if isinstance(value, list):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    if isinstance(value, dict):
        return (
            "{"
            + ", ".join(f"{json.dumps(str(k))} = {toml_value(v)}" for k, v in value.items())
            + "}"
        )
    raise TypeError(type(value).__name__)


def toml_text(doc: Any) -> str | None:
    """The document as a TOML file, or None when TOML cannot hold it (null)."""
    if not isinstance(doc, dict):
        return None
    try:
        return "".join(f"{json.dumps(str(k))} = {toml_value(v)}\n" for k, v in doc.items())
    except (TypeError, RecursionError):
        return None


_BASE_PLANT = tomllib.loads(PLANT.read_text())


@pytest.mark.slow
@FUZZ
@given(data=st.data())
def test_generated_plant_files_are_refused_cleanly(
    tmp_path_factory: Any, data: st.DataObject
) -> None:
    text = toml_text(mutate(_BASE_PLANT, data, HOSTILE_TOML))
    if text is None:
        return
    path = tmp_path_factory.mktemp("plant") / "plant.toml"
    path.write_text(text, encoding="utf-8")
    try:
        plant = load_plant(path)
    except PlantError:
        count("plants", "refused")
        return
    count("plants", "accepted")
    assert math.isfinite(plant.time_scale) and plant.time_scale > 0


_BASE_PROFILES = [tomllib.loads(p.read_text()) for p in PROFILES]


@pytest.mark.slow
@FUZZ
@given(data=st.data())
def test_generated_profiles_are_refused_cleanly(tmp_path_factory: Any, data: st.DataObject) -> None:
    base = data.draw(st.sampled_from(_BASE_PROFILES))
    text = toml_text(mutate(base, data, HOSTILE_TOML))
    if text is None:
        return
    path = tmp_path_factory.mktemp("profile") / "fuzz.toml"
    path.write_text(text, encoding="utf-8")
    try:
        load_profile(path)
    except ProfileError:
        count("profiles", "refused")
        return
    count("profiles", "accepted")


def test_print_counts() -> None:
    """Runs last in this module: the counts of the fuzz runs above (for the notes)."""
    for kind, tally in sorted(COUNTS.items()):
        print(f"fuzz {kind}: {tally}")
