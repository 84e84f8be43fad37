"""The library recipe: it loads, its hash pins content not formatting, its timeline is 12 days."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest
from ruamel.yaml import YAML

from recipes import (
    ELAPSED,
    AnyOf,
    Condition,
    Duration,
    ParamRef,
    Recipe,
    load_recipe,
    parse_recipe,
    tags_of,
)
from recipes.loader import content_hash

LIBRARY = Path(__file__).parents[2] / "recipes" / "library" / "car-t-expansion.yaml"
DAY = 86400.0


@pytest.fixture(scope="module")
def recipe() -> Recipe:
    return load_recipe(LIBRARY)


def test_library_recipe_loads(recipe: Recipe) -> None:
    assert recipe.header.name == "car-t-expansion"
    assert recipe.header.version == "1.0.0"
    assert recipe.header.status == "draft"
    assert recipe.source == str(LIBRARY)
    assert recipe.equipment["bioreactor"].equipment_class == "rocking_bioreactor"
    assert recipe.formula["temperature"].value == 37.0
    assert recipe.formula["temperature"].unit == "degC"
    assert len(recipe.content_hash) == 64


def test_document_round_trips_to_the_same_hash(recipe: Recipe) -> None:
    document = recipe.document()
    assert document["recipe"]["version"] == "1.0.0"
    assert content_hash(document) == recipe.content_hash
    document["recipe"]["name"] = "changed"  # a copy: the recipe is not affected
    assert recipe.document()["recipe"]["name"] == "car-t-expansion"


def _redump(text: str) -> str:
    """Same content, different indentation, flow style, quoting and comments."""
    yaml = YAML(typ="rt")
    yaml.indent(mapping=4, sequence=6, offset=4)
    data = yaml.load(text)
    data.yaml_set_start_comment("re-dumped with other formatting")
    data["formula"].yaml_add_eol_comment("a new comment", "temperature")
    out = io.StringIO()
    yaml.dump(data, out)
    return out.getvalue()


def test_hash_ignores_formatting_and_comments(recipe: Recipe) -> None:
    text = LIBRARY.read_text(encoding="utf-8")
    redumped = _redump(text)
    assert redumped != text
    assert parse_recipe(redumped, "redumped.yaml").content_hash == recipe.content_hash
    as_json = json.dumps(recipe.document(), indent=1)  # JSON is YAML too
    assert parse_recipe(as_json, "as.json").content_hash == recipe.content_hash


def test_hash_changes_when_a_value_changes(recipe: Recipe) -> None:
    text = LIBRARY.read_text(encoding="utf-8")
    changed = text.replace("temperature: {value: 37.0,", "temperature: {value: 37.1,")
    assert changed != text
    assert parse_recipe(changed, "changed.yaml").content_hash != recipe.content_hash


def test_walk_yields_paths_in_execution_order(recipe: Recipe) -> None:
    paths = [path for path, _, _, _ in recipe.procedure.walk()]
    assert paths[:6] == [
        "expansion/setup/install_bag",
        "expansion/setup/set_culture_conditions",
        "expansion/setup/fill_medium",
        "expansion/setup/equilibrate",
        "expansion/inoculation/scan_cell_bag",
        "expansion/inoculation/inoculate",
    ]
    assert paths[-2:] == [
        "expansion/harvest_readiness/wait_for_harvest_density",
        "expansion/end_culture/harvest_state",
    ]
    operations = list(dict.fromkeys(path.split("/")[1] for path in paths))
    days = [f"day_{n}" for n in range(11)]
    assert operations == ["setup", "inoculation", *days, "harvest_readiness", "end_culture"]
    assert len(paths) == len(set(paths))
    for path, up, op, phase in recipe.procedure.walk():
        assert path == f"{up.name}/{op.name}/{phase.name}"
        assert up.unit == "bioreactor"
        assert phase.line > 0


def test_timeline_never_exceeds_12_days(recipe: Recipe) -> None:
    holds = [
        (op.name, recipe.resolve(phase.args["duration"]))
        for _, _, op, phase in recipe.procedure.walk()
        if phase.type == "hold_for"
    ]
    total = sum(seconds for _, seconds in holds)
    culture = sum(seconds for name, seconds in holds if name.startswith("day_"))
    wait = next(p for _, _, _, p in recipe.procedure.walk() if p.type == "wait_until")
    until = wait.args["until"]
    assert isinstance(until, AnyOf)
    (limit,) = [t for t in until.terms if isinstance(t, Condition) and t.tag == ELAPSED]
    timeout = recipe.resolve(limit.operand)
    assert total == pytest.approx(11 * DAY + 2 * 3600)  # 2 h equilibration + days 0-10
    assert culture + timeout == pytest.approx(12 * DAY)  # inoculation to harvest, worst case
    assert total + timeout == pytest.approx(12 * DAY, abs=3 * 3600)
    longest = recipe.formula["harvest_window"].max
    assert longest is not None
    assert culture + recipe.resolve(limit.operand, {"harvest_window": longest}) <= 12 * DAY
    assert tags_of(until) == {"culture.viable_density"}


def test_setpoints_and_arguments_are_formula_parameters(recipe: Recipe) -> None:
    for _, _, _, phase in recipe.procedure.walk():
        if phase.type == "setpoint":
            set_map = phase.args["set"]
            assert isinstance(set_map, dict)
            assert all(isinstance(v, ParamRef) for v in set_map.values()), phase.name
        if phase.type == "invoke":
            args = phase.args["args"]
            assert isinstance(args, dict)
            assert all(isinstance(v, ParamRef) for v in args.values())
    for param in recipe.formula.values():
        assert param.min is not None and param.max is not None, param.name
        assert param.allows(param.value)


def test_resolve_parameters_durations_and_overrides(recipe: Recipe) -> None:
    assert recipe.resolve(ParamRef("temperature")) == 37.0
    assert recipe.resolve(ParamRef("temperature"), {"temperature": 36.8}) == 36.8
    assert recipe.resolve(Duration(90.0)) == 90.0
    assert recipe.resolve(3) == 3.0
    equilibrate = next(p for _, _, _, p in recipe.procedure.walk() if p.name == "equilibrate")
    assert equilibrate.args["duration"] == ParamRef("equilibration_time", 3600.0)
    assert recipe.resolve(equilibrate.args["duration"]) == 2 * 3600
    assert recipe.resolve(equilibrate.args["duration"], {"equilibration_time": 3}) == 3 * 3600
    with pytest.raises(KeyError):
        recipe.resolve(ParamRef("nope"))
    with pytest.raises(TypeError):
        recipe.resolve("37")


def test_monitors(recipe: Recipe) -> None:
    monitors = {m.name: m for m in recipe.monitors}
    assert list(monitors) == ["temperature", "ph", "dissolved_oxygen", "viability"]
    ph = monitors["ph"]
    assert (ph.alert_low, ph.alert_high, ph.action_low, ph.action_high) == (7.0, 7.4, 6.8, 7.6)
    do = monitors["dissolved_oxygen"]
    assert (do.tag, do.alert_low, do.action_low, do.alert_high) == ("do.pv", 40, 30, None)
    viability = monitors["viability"]
    assert (viability.alert_low, viability.action_low, viability.action) == (80, 70, "alarm")
    assert monitors["temperature"].delay_s == 300
    assert monitors["temperature"].action == "hold"
