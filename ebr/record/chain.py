"""The hash chain of a batch journal (see ebr/README.md for the exact definition)."""

from __future__ import annotations

import hashlib

GENESIS_HASH = "0" * 64
"""prev_hash of the first entry (seq 1) of every batch."""


def entry_hash(prev_hash: str, batch_id: str, seq: int, ts: str, kind: str, data: str) -> str:
    """Return the SHA-256 hex digest chaining one entry to its predecessor.

    `data` is the entry's RFC 8785 canonical JSON text, exactly as stored.
    """
    text = f"{prev_hash}\n{batch_id}\n{seq}\n{ts}\n{kind}\n{data}"
    return hashlib.sha256(text.encode("utf-8")).hexdigest()
