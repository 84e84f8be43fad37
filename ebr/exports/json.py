"""Machine-readable JSON export of a batch record, verifiable offline (`verify_export`)."""

from __future__ import annotations

from typing import Any

from ebr.record.anchors import signed_head
from ebr.record.clock import format_ts, utc_now
from ebr.record.query import batch_record, blocks_of, journal_entries
from ebr.record.store import Store
from ebr.record.verify import EXPORT_FORMAT, verify_connection


def export_json(store: Store, batch_id: str) -> dict[str, Any]:
    """Return the complete record of `batch_id` as a JSON-ready dict.

    Everything (batch row, journal, sample blocks, verification) is read from one
    consistent snapshot. Layout: format, exported_at, batch, journal, sample_blocks,
    samples (the blocks' rows flattened, for convenience), verification, signed_head (the
    latest signed checkpoint and its public key; null for an unsigned record).
    """
    with store.snapshot() as conn:
        record = batch_record(conn, batch_id)
        verification = verify_connection(conn, batch_id)
        entries = journal_entries(conn, batch_id)
        blocks = blocks_of(conn, batch_id)
        signed = signed_head(conn, batch_id)
    return {
        "format": EXPORT_FORMAT,
        "exported_at": format_ts(utc_now()),
        "batch": record.to_dict(),
        "journal": [entry.to_dict() for entry in entries],
        "sample_blocks": [
            {
                "block_no": block.block_no,
                "sha256": block.sha256,
                "rows": [sample.to_row() for sample in block.samples],
            }
            for block in blocks
        ],
        "samples": [sample.to_dict() for block in blocks for sample in block.samples],
        "verification": verification.to_dict(),
        "signed_head": signed,
    }
