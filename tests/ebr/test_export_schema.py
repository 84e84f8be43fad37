"""JSON Schema of the JSON export: exports validate, broken exports do not, and
`ebr schema` prints it.

`jsonschema` is not a dependency, so a small validator below covers exactly the
keywords the schema uses (and fails loudly on any other)."""

from __future__ import annotations

import copy
import json
import re
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from cellbatch.ebr_cli import ebr
from ebr import Store, ebr_json_schema, export_json
from tests.ebr.records import GMP, SIM

_KNOWN = {
    "$schema",
    "$id",
    "$defs",
    "$ref",
    "title",
    "description",
    "type",
    "properties",
    "required",
    "additionalProperties",
    "items",
    "prefixItems",
    "minItems",
    "const",
    "pattern",
    "minimum",
    "minLength",
    "maxLength",
    "allOf",
    "if",
    "then",
}
_TYPES = {
    "object": lambda v: isinstance(v, dict),
    "array": lambda v: isinstance(v, list),
    "string": lambda v: isinstance(v, str),
    "boolean": lambda v: isinstance(v, bool),
    "null": lambda v: v is None,
    "integer": lambda v: (
        (isinstance(v, int) and not isinstance(v, bool))
        or (isinstance(v, float) and v.is_integer())
    ),
    "number": lambda v: isinstance(v, int | float) and not isinstance(v, bool),
}


def _errors(value: Any, schema: Any, root: dict[str, Any], where: str = "$") -> list[str]:
    """Validation errors of `value` against a draft 2020-12 `schema` (subset)."""
    if schema is True:
        return []
    if schema is False:
        return [f"{where}: not allowed"]
    unknown = set(schema) - _KNOWN
    assert not unknown, f"validator does not implement {unknown}"
    errors: list[str] = []
    if "$ref" in schema:
        target: Any = root
        for part in schema["$ref"].removeprefix("#/").split("/"):
            target = target[part]
        errors += _errors(value, target, root, where)
    if "type" in schema:
        types = schema["type"] if isinstance(schema["type"], list) else [schema["type"]]
        if not any(_TYPES[t](value) for t in types):
            return [*errors, f"{where}: {value!r:.60} is not {types}"]
    if "const" in schema and value != schema["const"]:
        errors.append(f"{where}: {value!r} != {schema['const']!r}")
    if isinstance(value, str):
        if "pattern" in schema and not re.search(schema["pattern"], value):
            errors.append(f"{where}: {value!r} does not match {schema['pattern']}")
        if len(value) < schema.get("minLength", 0) or len(value) > schema.get("maxLength", 1e9):
            errors.append(f"{where}: length of {value!r}")
    if (
        isinstance(value, int | float)
        and not isinstance(value, bool)
        and "minimum" in schema
        and value < schema["minimum"]
    ):
        errors.append(f"{where}: {value} < {schema['minimum']}")
    if isinstance(value, dict):
        props = schema.get("properties", {})
        errors += [f"{where}: missing {k}" for k in schema.get("required", []) if k not in value]
        for key, item in value.items():
            if key in props:
                errors += _errors(item, props[key], root, f"{where}.{key}")
            elif schema.get("additionalProperties", True) is False:
                errors.append(f"{where}: unexpected key {key}")
    if isinstance(value, list):
        if len(value) < schema.get("minItems", 0):
            errors.append(f"{where}: fewer than {schema['minItems']} items")
        prefix = schema.get("prefixItems", [])
        for i, item in enumerate(value):
            sub = prefix[i] if i < len(prefix) else schema.get("items", True)
            errors += _errors(item, sub, root, f"{where}[{i}]")
    for sub in schema.get("allOf", []):
        if "if" in sub:
            if not _errors(value, sub["if"], root, where):
                errors += _errors(value, sub["then"], root, where)
        else:
            errors += _errors(value, sub, root, where)
    return errors


def validate(doc: Any) -> list[str]:
    schema = ebr_json_schema()
    return _errors(doc, schema, schema)


@pytest.fixture(scope="module")
def gmp_doc(record_db: tuple[Store, Path]) -> Any:
    return _doc(record_db[0], GMP)


def _doc(store: Store, batch_id: str) -> Any:
    """The export as another system reads it: serialised and parsed back."""
    return json.loads(json.dumps(export_json(store, batch_id)))


def test_schema_is_draft_2020_12() -> None:
    schema = ebr_json_schema()
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    assert set(schema["required"]) == {
        "format",
        "exported_at",
        "batch",
        "journal",
        "sample_blocks",
        "samples",
        "verification",
        "signed_head",
    }
    json.dumps(schema)  # JSON-ready


@pytest.mark.parametrize("batch_id", [SIM, GMP])
def test_synthetic_exports_validate(record_db: tuple[Store, Path], batch_id: str) -> None:
    assert validate(_doc(record_db[0], batch_id)) == []


def test_small_export_validates(populated: tuple[Store, Path, str, int]) -> None:
    store, _path, batch_id, _last = populated
    assert validate(_doc(store, batch_id)) == []


@pytest.mark.parametrize(
    ("edit", "fragment"),
    [
        (lambda d: d.update(format="cellbatch-ebr/2"), "$.format"),
        (lambda d: d["batch"].pop("head_hash"), "missing head_hash"),
        (lambda d: d["journal"][3].update(ts="2026-03-01 08:00:00"), "$.journal[3].ts"),
        (lambda d: d["journal"][0]["data"].pop("header"), "missing header"),
        (lambda d: d["sample_blocks"][0]["rows"][0].append("extra"), "not allowed"),
        (lambda d: d["samples"][0].update(value="37"), "$.samples[0].value"),
        (lambda d: d["verification"].update(extra=1), "unexpected key extra"),
    ],
)
def test_broken_exports_do_not_validate(gmp_doc: Any, edit: Any, fragment: str) -> None:
    assert validate(gmp_doc) == []
    doc = copy.deepcopy(gmp_doc)
    edit(doc)
    errors = validate(doc)
    assert errors and any(fragment in e for e in errors), errors


def test_cli_prints_schema() -> None:
    result = CliRunner().invoke(ebr, ["schema"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout) == ebr_json_schema()
