"""JSON Schema (draft 2020-12) of the JSON export `cellbatch-ebr/1` (`export_json`).

`cellbatch ebr schema` prints it. The schema describes the layout exactly (no extra
keys anywhere except inside an entry's free-form `data`); what it cannot express — the
hash chain, the head, the block digests — is checked by `verify_export`.
"""

from __future__ import annotations

from typing import Any

from ebr.record.kinds import Kind
from ebr.record.validation import MAX_BATCH_ID, MAX_KIND, MAX_LABEL
from ebr.record.verify import EXPORT_FORMAT

SCHEMA_ID = "https://cellbatch.org/schemas/cellbatch-ebr-1.json"
TS_PATTERN = r"^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}\.[0-9]{6}Z$"
HASH_PATTERN = r"^[0-9a-f]{64}$"
KIND_PATTERN = r"^[a-z][a-z0-9_]*(\.[a-z][a-z0-9_]*)*$"


def _object(properties: dict[str, Any], description: str = "") -> dict[str, Any]:
    """A closed object: every listed property required, nothing else allowed."""
    schema: dict[str, Any] = {
        "type": "object",
        "properties": properties,
        "required": list(properties),
        "additionalProperties": False,
    }
    if description:
        schema["description"] = description
    return schema


def _nullable(properties: dict[str, Any], description: str) -> dict[str, Any]:
    """A closed object (see `_object`), or null."""
    return {**_object(properties, description), "type": ["object", "null"]}


def ebr_json_schema() -> dict[str, Any]:
    """Return the JSON Schema of a `cellbatch-ebr/1` export as a JSON-ready dict."""
    label = {"type": "string", "maxLength": MAX_LABEL, "pattern": r"^[^\u0000-\u001f\u007f]*$"}
    header_properties = {
        "batch_id": {"$ref": "#/$defs/batch_id"},
        "recipe_name": label,
        "recipe_version": label,
        "recipe_hash": label,
        "product": label,
        "coi": label,
        "simulation": {"type": "boolean"},
    }
    nullable_int = {"type": ["integer", "null"], "minimum": 0}
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": SCHEMA_ID,
        "title": "cellbatch electronic batch record export (cellbatch-ebr/1)",
        "description": (
            "Complete record of one batch as written by ebr.exports.json: batch row, "
            "hash-chained journal, sample blocks, flattened samples and the verification "
            "result at export time. Integrity (hash chain, head, digests) is checked by "
            "ebr.verify_export; see ebr/README.md for the rules."
        ),
        **_object(
            {
                "format": {"const": EXPORT_FORMAT},
                "exported_at": {"$ref": "#/$defs/ts"},
                "batch": {"$ref": "#/$defs/batch"},
                "journal": {"type": "array", "items": {"$ref": "#/$defs/entry"}},
                "sample_blocks": {"type": "array", "items": {"$ref": "#/$defs/sample_block"}},
                "samples": {
                    "type": "array",
                    "description": "The rows of every sample block, flattened, in block order.",
                    "items": {"$ref": "#/$defs/sample"},
                },
                "verification": {"$ref": "#/$defs/verification"},
                "signed_head": {"$ref": "#/$defs/signed_head"},
            }
        ),
        "$defs": {
            "ts": {
                "type": "string",
                "pattern": TS_PATTERN,
                "description": "UTC, ISO 8601, exactly six fractional digits and Z.",
            },
            "hash": {"type": "string", "pattern": HASH_PATTERN, "description": "SHA-256, hex."},
            "batch_id": {
                "type": "string",
                "minLength": 1,
                "maxLength": MAX_BATCH_ID,
                "pattern": r"^(?!\s)[^\u0000-\u001f\u007f]*(?<!\s)$",
            },
            "header": _object(
                header_properties, "Batch identity, journaled in the batch.created entry."
            ),
            "batch": _object(
                {
                    **header_properties,
                    "created_at": {"$ref": "#/$defs/ts"},
                    "head_seq": {"type": "integer", "minimum": 0},
                    "head_hash": {"$ref": "#/$defs/hash"},
                },
                "The batches row; head_seq/head_hash anchor the end of the chain.",
            ),
            "entry": {
                **_object(
                    {
                        "seq": {"type": "integer", "minimum": 1},
                        "ts": {"$ref": "#/$defs/ts"},
                        "kind": {"type": "string", "maxLength": MAX_KIND, "pattern": KIND_PATTERN},
                        "data": {"type": "object"},
                        "prev_hash": {"$ref": "#/$defs/hash"},
                        "hash": {"$ref": "#/$defs/hash"},
                    },
                    "One journal entry; data is the parsed RFC 8785 canonical JSON object.",
                ),
                "allOf": [
                    {
                        "if": {"properties": {"kind": {"const": Kind.BATCH_CREATED}}},
                        "then": {
                            "properties": {
                                "data": {
                                    "type": "object",
                                    "properties": {"header": {"$ref": "#/$defs/header"}},
                                    "required": ["header"],
                                }
                            }
                        },
                    },
                    {
                        "if": {"properties": {"kind": {"const": Kind.SAMPLES_BLOCK}}},
                        "then": {"properties": {"data": {"$ref": "#/$defs/block_entry_data"}}},
                    },
                ],
            },
            "block_entry_data": _object(
                {
                    "block_no": {"type": "integer", "minimum": 1},
                    "count": {"type": "integer", "minimum": 1},
                    "tags": {"type": "array", "items": {"type": "string"}},
                    "first": {"$ref": "#/$defs/ts"},
                    "last": {"$ref": "#/$defs/ts"},
                    "sha256": {"$ref": "#/$defs/hash"},
                },
                "Data of a samples.block entry: puts the block digest into the chain.",
            ),
            "value": {"type": ["number", "null"]},
            "sample_block": _object(
                {
                    "block_no": {"type": "integer", "minimum": 1},
                    "sha256": {"$ref": "#/$defs/hash"},
                    "rows": {
                        "type": "array",
                        "minItems": 1,
                        "items": {
                            "type": "array",
                            "prefixItems": [
                                {"type": "string"},
                                {"$ref": "#/$defs/ts"},
                                {"$ref": "#/$defs/value"},
                                {"type": "string"},
                                {"type": "string"},
                            ],
                            "items": False,
                            "minItems": 5,
                            "description": "[tag, time, value, unit, quality]",
                        },
                    },
                },
                'sha256 = SHA-256 of the canonical JSON of {"rows": rows}.',
            ),
            "sample": _object(
                {
                    "tag": {"type": "string"},
                    "time": {"$ref": "#/$defs/ts"},
                    "value": {"$ref": "#/$defs/value"},
                    "unit": {"type": "string"},
                    "quality": {"type": "string"},
                }
            ),
            "verification": _object(
                {
                    "batch_id": {"type": "string"},
                    "ok": {"type": "boolean"},
                    "entries_checked": {"type": "integer", "minimum": 0},
                    "blocks_checked": {"type": "integer", "minimum": 0},
                    "problems": {
                        "type": "array",
                        "items": _object(
                            {
                                "seq": nullable_int,
                                "block_no": nullable_int,
                                "message": {"type": "string"},
                            }
                        ),
                    },
                },
                "Result of verify at export time (ignored by verify_export).",
            ),
            "signed_head": _nullable(
                {
                    "batch_id": {"type": "string"},
                    "seq": {"type": "integer", "minimum": 1},
                    "hash": {"type": "string", "pattern": HASH_PATTERN},
                    "key_id": {"type": "string"},
                    "signature": {"type": "string", "pattern": "^[0-9a-f]{128}$"},
                    "public_key": {"type": "string", "pattern": HASH_PATTERN},
                },
                "The batch head signed by a key the store trusts (checked by verify_export; "
                "null for an unsigned record): Ed25519 signature (hex) over "
                "'cellbatch-checkpoint/1\\n' + batch_id + '\\n' + seq + '\\n' + hash, by the "
                "32-byte public key (hex).",
            ),
        },
    }
