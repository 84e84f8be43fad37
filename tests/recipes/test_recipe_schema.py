"""The published JSON Schema accepts every valid recipe and catches shape mistakes."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import jsonschema
import pytest
from ruamel.yaml import YAML

from recipes import PHASE_TYPES, recipe_json_schema

ROOT = Path(__file__).resolve().parents[2]
VALID = sorted(
    [
        *(ROOT / "recipes" / "library").glob("*.yaml"),
        *(ROOT / "tests" / "controller" / "recipes").glob("*.yaml"),
    ]
)


def load(path: Path) -> Any:
    return YAML(typ="safe").load(path.read_text())


def test_schema_is_a_valid_draft_2020_12_schema() -> None:
    jsonschema.Draft202012Validator.check_schema(recipe_json_schema())


@pytest.mark.parametrize("path", VALID, ids=lambda p: p.name)
def test_every_valid_recipe_matches_the_schema(path: Path) -> None:
    jsonschema.validate(load(path), recipe_json_schema())


def test_every_phase_type_is_described() -> None:
    described = {
        p["properties"]["type"]["const"] for p in recipe_json_schema()["$defs"]["phase"]["oneOf"]
    }
    assert described == set(PHASE_TYPES)


@pytest.mark.parametrize(
    "mutate",
    [
        lambda d: d["recipe"].update(status="released"),
        lambda d: d.update(monitor=[]),
        lambda d: d["equipment"]["bioreactor"].update({"class": "rocking_bioreacter"}),
        lambda d: d["procedure"]["unit_procedures"][0]["operations"][0]["phases"][0].update(
            type="centrifugate"
        ),
        lambda d: d["procedure"]["unit_procedures"][0]["operations"][0]["phases"].append(
            {"parallel": {"only": [{"name": "x", "type": "hold_for", "duration": 5}]}}
        ),
    ],
)
def test_shape_mistakes_fail_the_schema(mutate: Any) -> None:
    doc = load(ROOT / "recipes" / "library" / "car-t-expansion.yaml")
    mutate(doc)
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(doc, recipe_json_schema())
