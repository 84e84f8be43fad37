"""Checks on identifiers that enter the hash chain or the batch header."""

from __future__ import annotations

import re

MAX_BATCH_ID = 128
MAX_KIND = 64
MAX_LABEL = 200

_KIND = re.compile(r"[a-z][a-z0-9_]*(\.[a-z][a-z0-9_]*)*")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def check_batch_id(batch_id: object) -> str:
    """Return `batch_id` if it is a valid batch id, else raise ValueError.

    1-128 characters, no control characters, no surrounding whitespace: the id is
    hashed as a newline-separated field, so it must never contain a newline.
    """
    if not isinstance(batch_id, str):
        raise TypeError(f"batch id must be a str, not {type(batch_id).__name__}")
    if not 1 <= len(batch_id) <= MAX_BATCH_ID:
        raise ValueError(f"batch id must have 1 to {MAX_BATCH_ID} characters: {batch_id!r}")
    if _CONTROL.search(batch_id) or batch_id != batch_id.strip():
        raise ValueError(f"batch id has control characters or surrounding spaces: {batch_id!r}")
    return batch_id


def check_kind(kind: object) -> str:
    """Return `kind` if it is a valid entry kind (e.g. `element.state`), else raise ValueError."""
    if not isinstance(kind, str):
        raise TypeError(f"entry kind must be a str, not {type(kind).__name__}")
    if len(kind) > MAX_KIND or not _KIND.fullmatch(kind):
        raise ValueError(
            f"invalid entry kind {kind!r}: use lower-case dotted words such as 'element.state'"
        )
    return kind


def check_label(name: str, value: object) -> str:
    """Return a header text field if it is a str of at most 200 characters without controls."""
    if not isinstance(value, str):
        raise TypeError(f"{name} must be a str, not {type(value).__name__}")
    if len(value) > MAX_LABEL or _CONTROL.search(value):
        raise ValueError(f"{name} must be at most {MAX_LABEL} characters without controls")
    return value
