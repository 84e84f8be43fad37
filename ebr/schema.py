"""Table definitions of the eBR database (portable: SQLite and PostgreSQL)."""

from __future__ import annotations

from sqlalchemy import (
    DDL,
    BigInteger,
    Boolean,
    Column,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
    event,
)

from ebr.validation import MAX_BATCH_ID, MAX_KIND, MAX_LABEL

metadata = MetaData()

# BIGINT on PostgreSQL; INTEGER on SQLite so the column is the autoincrementing rowid.
_RowId = BigInteger().with_variant(Integer(), "sqlite")

batches = Table(
    "batches",
    metadata,
    Column("batch_id", String(MAX_BATCH_ID), primary_key=True),
    Column("created_at", String(32), nullable=False),
    Column("recipe_name", String(MAX_LABEL), nullable=False),
    Column("recipe_version", String(MAX_LABEL), nullable=False),
    Column("recipe_hash", String(MAX_LABEL), nullable=False),
    Column("product", String(MAX_LABEL), nullable=False),
    Column("coi", String(MAX_LABEL), nullable=False),
    Column("simulation", Boolean, nullable=False),
    Column("head_seq", BigInteger, nullable=False),
    Column("head_hash", String(64), nullable=False),
)
"""One row per batch; head_seq/head_hash anchor the end of its journal."""

journal = Table(
    "journal",
    metadata,
    Column("id", _RowId, primary_key=True, autoincrement=True),
    Column("batch_id", String(MAX_BATCH_ID), ForeignKey("batches.batch_id"), nullable=False),
    Column("seq", BigInteger, nullable=False),
    Column("ts", String(32), nullable=False),
    Column("kind", String(MAX_KIND), nullable=False),
    Column("data", Text, nullable=False),
    Column("prev_hash", String(64), nullable=False),
    Column("hash", String(64), nullable=False),
    UniqueConstraint("batch_id", "seq", name="uq_journal_batch_seq"),
    Index("ix_journal_kind_batch_seq", "kind", "batch_id", "seq"),
)
"""The append-only, hash-chained audit journal of every batch."""

sample_blocks = Table(
    "sample_blocks",
    metadata,
    Column("id", _RowId, primary_key=True, autoincrement=True),
    Column("batch_id", String(MAX_BATCH_ID), ForeignKey("batches.batch_id"), nullable=False),
    Column("block_no", BigInteger, nullable=False),
    Column("data", Text, nullable=False),
    Column("sha256", String(64), nullable=False),
    UniqueConstraint("batch_id", "block_no", name="uq_sample_blocks_batch_block"),
)
"""Blocks of process-data samples; each block's digest is journaled as `samples.block`."""

TABLE_NAMES = frozenset(metadata.tables)

_HEADER_COLUMNS = (
    "batch_id",
    "created_at",
    "recipe_name",
    "recipe_version",
    "recipe_hash",
    "product",
    "coi",
    "simulation",
)

SQLITE_GUARDS = {
    "journal": [
        "CREATE TRIGGER journal_no_update BEFORE UPDATE ON journal "
        "BEGIN SELECT RAISE(ABORT, 'the journal is append-only'); END",
        "CREATE TRIGGER journal_no_delete BEFORE DELETE ON journal "
        "BEGIN SELECT RAISE(ABORT, 'the journal is append-only'); END",
    ],
    "sample_blocks": [
        "CREATE TRIGGER sample_blocks_no_update BEFORE UPDATE ON sample_blocks "
        "BEGIN SELECT RAISE(ABORT, 'sample blocks are append-only'); END",
        "CREATE TRIGGER sample_blocks_no_delete BEFORE DELETE ON sample_blocks "
        "BEGIN SELECT RAISE(ABORT, 'sample blocks are append-only'); END",
    ],
    "batches": [
        "CREATE TRIGGER batches_no_delete BEFORE DELETE ON batches "
        "BEGIN SELECT RAISE(ABORT, 'batches are never deleted'); END",
        "CREATE TRIGGER batches_head_only BEFORE UPDATE ON batches WHEN "
        + " OR ".join(f"NEW.{name} IS NOT OLD.{name}" for name in _HEADER_COLUMNS)
        + " OR NEW.head_seq <= OLD.head_seq BEGIN SELECT RAISE(ABORT, "
        "'only the journal head of a batch may change, and only forward'); END",
    ],
}
"""Database-level refusal of updates and deletes on SQLite (defence in depth: the eBR API
has no update or delete at all, and the hash chain detects what gets past these)."""

for _name, _statements in SQLITE_GUARDS.items():
    for _statement in _statements:
        event.listen(
            metadata.tables[_name], "after_create", DDL(_statement).execute_if(dialect="sqlite")
        )
