"""Reading the batch record: batch list, journal entries, samples."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, func, select

from ebr.record.canonical import parse_json
from ebr.record.errors import StoreError, UnknownBatchError
from ebr.record.model import (
    BATCH_STATE,
    SYSTEM_CHAINS,
    BatchHeader,
    BatchRecord,
    Entry,
    Sample,
    SampleBlock,
)
from ebr.record.schema import batches, journal, sample_blocks
from ebr.record.store import Store

IDLE = "Idle"
"""State of a batch that has no `batch.state` entry yet."""


@dataclass(frozen=True, slots=True)
class BatchSummary:
    """One line of the batch list."""

    batch_id: str
    created_at: str
    recipe_name: str
    recipe_version: str
    product: str
    coi: str
    simulation: bool
    state: str
    entries: int

    def to_dict(self) -> dict[str, Any]:
        """Return the summary as a JSON-ready dict (the batch id under `id`)."""
        return {
            "id": self.batch_id,
            "state": self.state,
            "created_at": self.created_at,
            "recipe_name": self.recipe_name,
            "recipe_version": self.recipe_version,
            "product": self.product,
            "coi": self.coi,
            "simulation": self.simulation,
            "entries": self.entries,
        }


def list_batches(store: Store) -> list[BatchSummary]:
    """Return every batch, oldest first, with its current state and entry count."""
    with store.snapshot() as conn:
        counts: dict[str, int] = {
            batch_id: count
            for batch_id, count in conn.execute(
                select(journal.c.batch_id, func.count()).group_by(journal.c.batch_id)
            )
        }
        latest = (
            select(journal.c.batch_id, func.max(journal.c.seq).label("seq"))
            .where(journal.c.kind == BATCH_STATE)
            .group_by(journal.c.batch_id)
            .subquery()
        )
        states = {
            batch_id: _state_of(data)
            for batch_id, data in conn.execute(
                select(journal.c.batch_id, journal.c.data).join(
                    latest,
                    (journal.c.batch_id == latest.c.batch_id) & (journal.c.seq == latest.c.seq),
                )
            )
        }
        rows = conn.execute(
            select(batches)
            .where(batches.c.batch_id.notin_(SYSTEM_CHAINS))
            .order_by(batches.c.created_at, batches.c.batch_id)
        ).all()
    return [
        BatchSummary(
            batch_id=row.batch_id,
            created_at=row.created_at,
            recipe_name=row.recipe_name,
            recipe_version=row.recipe_version,
            product=row.product,
            coi=row.coi,
            simulation=bool(row.simulation),
            state=states.get(row.batch_id, IDLE),
            entries=counts.get(row.batch_id, 0),
        )
        for row in rows
    ]


def _state_of(data: str) -> str:
    """Return the `to` field of a `batch.state` entry's data."""
    try:
        to = parse_json(data).get("to")
    except (ValueError, AttributeError):
        return "?"
    return IDLE if to is None else str(to)


def read_batch(store: Store, batch_id: str) -> BatchRecord:
    """Return the batches row of `batch_id`; raise UnknownBatchError if there is none."""
    with store.snapshot() as conn:
        return batch_record(conn, batch_id)


def read_journal(store: Store, batch_id: str) -> list[Entry]:
    """Return the journal of `batch_id` in seq order."""
    with store.snapshot() as conn:
        batch_record(conn, batch_id)
        return journal_entries(conn, batch_id)


def read_sample_blocks(store: Store, batch_id: str) -> list[SampleBlock]:
    """Return the sample blocks of `batch_id` in block order."""
    with store.snapshot() as conn:
        batch_record(conn, batch_id)
        return blocks_of(conn, batch_id)


def read_samples(store: Store, batch_id: str) -> list[Sample]:
    """Return every sample of `batch_id`, block by block in recorded order."""
    return [sample for block in read_sample_blocks(store, batch_id) for sample in block.samples]


def batch_record(conn: Connection, batch_id: str) -> BatchRecord:
    """Read one batches row inside an open transaction."""
    row = conn.execute(select(batches).where(batches.c.batch_id == batch_id)).first()
    if row is None:
        raise UnknownBatchError(f"unknown batch {batch_id}")
    header = BatchHeader(
        batch_id=row.batch_id,
        recipe_name=row.recipe_name,
        recipe_version=row.recipe_version,
        recipe_hash=row.recipe_hash,
        product=row.product,
        coi=row.coi,
        simulation=bool(row.simulation),
    )
    return BatchRecord(header, row.created_at, int(row.head_seq), row.head_hash)


def journal_entries(conn: Connection, batch_id: str) -> list[Entry]:
    """Read the journal of one batch in seq order inside an open transaction."""
    result = conn.execute(
        select(
            journal.c.seq,
            journal.c.ts,
            journal.c.kind,
            journal.c.data,
            journal.c.prev_hash,
            journal.c.hash,
        )
        .where(journal.c.batch_id == batch_id)
        .order_by(journal.c.seq, journal.c.id)
    )
    entries = []
    for seq, ts, kind, data, prev_hash, digest in result:
        try:
            parsed = parse_json(data)
        except ValueError as exc:
            raise StoreError(
                f"journal entry seq {seq} of batch {batch_id} is unreadable; run verify"
            ) from exc
        entries.append(Entry(batch_id, seq, ts, kind, parsed, prev_hash, digest))
    return entries


def blocks_of(conn: Connection, batch_id: str) -> list[SampleBlock]:
    """Read the sample blocks of one batch in block order inside an open transaction."""
    result = conn.execute(
        select(sample_blocks.c.block_no, sample_blocks.c.data, sample_blocks.c.sha256)
        .where(sample_blocks.c.batch_id == batch_id)
        .order_by(sample_blocks.c.block_no, sample_blocks.c.id)
    )
    blocks = []
    for block_no, data, digest in result:
        try:
            samples = tuple(Sample(*row) for row in parse_json(data)["rows"])
        except (ValueError, KeyError, TypeError) as exc:
            raise StoreError(
                f"sample block {block_no} of batch {batch_id} is unreadable; run verify"
            ) from exc
        blocks.append(SampleBlock(int(block_no), digest, samples))
    return blocks
