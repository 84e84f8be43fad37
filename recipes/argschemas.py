"""JSON Schema fragments of phase arguments, for editors (``cellbatch recipe schema``)."""

from __future__ import annotations

PARAM_REF: dict[str, object] = {"type": "string", "pattern": r"^\$[A-Za-z_][A-Za-z0-9_]*$"}
NUMBER_OR_PARAM: dict[str, object] = {"anyOf": [{"type": "number"}, PARAM_REF]}
DURATION: dict[str, object] = {
    "anyOf": [
        {"type": "number", "minimum": 0},
        {"type": "string", "description": "'12 d', '90 min'"},
    ]
}
SETPOINTS: dict[str, object] = {"type": "object", "additionalProperties": NUMBER_OR_PARAM}
ENTRY: dict[str, object] = {
    "type": "object",
    "required": ["type", "example"],
    "properties": {
        "type": {"enum": ["number", "text", "choice"]},
        "unit": {"type": "string"},
        "min": {"type": "number"},
        "max": {"type": "number"},
        "choices": {"type": "array", "items": {"type": "string"}, "minItems": 1},
        "example": {"description": "what the simulated operator answers"},
    },
    "additionalProperties": False,
}
TEXT: dict[str, object] = {"type": "string"}

ARG_SCHEMAS: dict[str, dict[str, object]] = {
    "set": SETPOINTS,
    "on_hold": SETPOINTS,
    "args": SETPOINTS,
    "duration": DURATION,
    "timeout": DURATION,
    "until": {
        "type": "string",
        "description": "e.g. 'culture.viable_density >= 1e7 cells/mL or elapsed >= 12 d'",
    },
    "on_timeout": {"enum": ["fail", "continue"]},
    "fallback": {
        "anyOf": [{"type": "string"}, {"type": "array", "items": {"type": "string"}}],
        "description": "e.g. 'elapsed': that branch of an 'A or B' until is the fallback",
    },
    "method": TEXT,
    "capability": TEXT,
    "to": NUMBER_OR_PARAM,
    "steps": {"type": "integer", "minimum": 1, "maximum": 1000},
    "text": TEXT,
    "entries": {"type": "object", "additionalProperties": ENTRY, "minProperties": 1},
    "verify": {"type": "boolean"},
    "expect": {"enum": ["coi"]},
}
"""Schema of each phase argument by name (an argument name means the same in every phase)."""
