"""A JSON Schema (draft 2020-12) of the recipe format, for editors that complete and
check YAML (``cellbatch recipe schema``). Built from the phase registry and the
equipment catalog, so it follows them. The loader's checks remain the authority
(units, limits, references, positions); the schema catches shape early."""

from __future__ import annotations

from typing import Any

from recipes.argschemas import DURATION, NUMBER_OR_PARAM, SETPOINTS
from recipes.catalog import EQUIPMENT_CLASSES
from recipes.phases import PHASE_TYPES

NAME: dict[str, Any] = {"type": "string", "pattern": "^[A-Za-z_][A-Za-z0-9_-]*$"}


def _phase_schema(type_name: str) -> dict[str, Any]:
    spec = PHASE_TYPES[type_name]
    properties: dict[str, Any] = {
        "name": NAME,
        "type": {"const": type_name, "description": spec.description},
        "on_hold": {**SETPOINTS, "description": "holding logic: setpoints while held"},
        "repeatable": {
            "type": "boolean",
            "description": "a supervisor may repeat this phase although its type is not idempotent",
        },
    }
    for arg in spec.args:
        properties[arg.name] = {**arg.schema, "description": arg.description}
    return {
        "type": "object",
        "required": ["name", "type", *spec.required],
        "properties": properties,
        "additionalProperties": False,
    }


def _steps(item: str) -> dict[str, Any]:
    """A list of ``item`` elements or parallel blocks of such lists."""
    return {
        "type": "array",
        "minItems": 1,
        "items": {
            "anyOf": [
                {"$ref": f"#/$defs/{item}"},
                {
                    "type": "object",
                    "required": ["parallel"],
                    "properties": {
                        "parallel": {
                            "type": "object",
                            "minProperties": 2,
                            "additionalProperties": {"$ref": f"#/$defs/{item}_steps"},
                        }
                    },
                    "additionalProperties": False,
                },
            ]
        },
    }


def recipe_json_schema() -> dict[str, Any]:
    """The schema of a master recipe file."""
    band = {
        "type": "object",
        "properties": {"low": {"type": "number"}, "high": {"type": "number"}},
        "additionalProperties": False,
    }
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": "https://cellbatch.example/schemas/recipe.json",
        "title": "cellbatch ISA-88 master recipe",
        "type": "object",
        "required": ["recipe", "equipment", "procedure"],
        "additionalProperties": False,
        "properties": {
            "recipe": {
                "type": "object",
                "required": ["name", "version", "product", "status", "author"],
                "properties": {
                    "name": NAME,
                    "version": {"type": "string"},
                    "product": {"type": "string"},
                    "status": {"enum": ["draft", "approved", "retired"]},
                    "author": {"type": "string"},
                    "description": {"type": "string"},
                    "site": {"type": "string"},
                    "master_sha256": {"type": "string"},
                },
                "additionalProperties": False,
            },
            "hold_times": {
                "type": "array",
                "items": {
                    "type": "object",
                    "required": ["name", "from", "to", "max"],
                    "properties": {
                        "name": NAME,
                        "from": {"type": "string"},
                        "to": {"type": "string"},
                        "max": DURATION,
                        "description": {"type": "string"},
                    },
                    "additionalProperties": False,
                },
            },
            "cqas": {
                "type": "array",
                "items": {
                    "type": "object",
                    "required": ["name", "method", "specification"],
                    "properties": {
                        "name": NAME,
                        "unit": {"type": "string"},
                        "method": {"type": "string"},
                        "description": {"type": "string"},
                        "specification": {
                            "type": "object",
                            "properties": {
                                "low": {"type": "number"},
                                "high": {"type": "number"},
                                "expect": {"type": "string"},
                            },
                            "additionalProperties": False,
                        },
                    },
                    "additionalProperties": False,
                },
            },
            "formula": {
                "type": "object",
                "additionalProperties": {
                    "type": "object",
                    "required": ["value", "unit"],
                    "properties": {
                        "value": {"type": "number"},
                        "unit": {"type": "string"},
                        "min": {"type": "number"},
                        "max": {"type": "number"},
                        "description": {"type": "string"},
                    },
                    "additionalProperties": False,
                },
            },
            "equipment": {
                "type": "object",
                "minProperties": 1,
                "additionalProperties": {
                    "type": "object",
                    "required": ["class"],
                    "properties": {"class": {"enum": sorted(EQUIPMENT_CLASSES)}},
                    "additionalProperties": False,
                },
            },
            "monitors": {
                "type": "array",
                "items": {
                    "type": "object",
                    "required": ["name", "unit", "tag", "engineering_unit", "on_action"],
                    "properties": {
                        "name": NAME,
                        "unit": NAME,
                        "tag": {"type": "string"},
                        "engineering_unit": {"type": "string"},
                        "alert": band,
                        "action": band,
                        "delay": {"anyOf": [{"type": "number"}, {"type": "string"}]},
                        "on_action": {"enum": ["alarm", "hold", "abort"]},
                        "hysteresis": {"type": "number", "minimum": 0},
                        "active_from": {"type": "string"},
                        "criticality": {"enum": ["critical", "key", "non-critical"]},
                        "nor": band,
                        "par": band,
                        "rationale": {"type": "string"},
                    },
                    "additionalProperties": False,
                },
            },
            "procedure": {
                "type": "object",
                "required": ["name", "unit_procedures"],
                "properties": {
                    "name": NAME,
                    "unit_procedures": {"$ref": "#/$defs/unit_procedure_steps"},
                },
                "additionalProperties": False,
            },
        },
        "$defs": {
            "unit_procedure": {
                "type": "object",
                "required": ["name", "unit", "operations"],
                "properties": {
                    "name": NAME,
                    "unit": NAME,
                    "operations": {"$ref": "#/$defs/operation_steps"},
                },
                "additionalProperties": False,
            },
            "operation": {
                "type": "object",
                "required": ["name", "phases"],
                "properties": {"name": NAME, "phases": {"$ref": "#/$defs/phase_steps"}},
                "additionalProperties": False,
            },
            "phase": {"oneOf": [_phase_schema(t) for t in sorted(PHASE_TYPES)]},
            "unit_procedure_steps": _steps("unit_procedure"),
            "operation_steps": _steps("operation"),
            "phase_steps": _steps("phase"),
            "number_or_param": NUMBER_OR_PARAM,
        },
    }
