"""Table definitions of the eBR database (portable: SQLite and PostgreSQL).

`metadata` is the source of truth for queries. The database schema itself is made and
changed only by the Alembic revisions in `ebr/record/migrations/versions/` (which also create
the append-only guard triggers); a test checks that the migrated schema equals `metadata`.
"""

from __future__ import annotations

from sqlalchemy import (
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
)

from ebr.record.validation import MAX_BATCH_ID, MAX_KIND, MAX_LABEL

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

checkpoints = Table(
    "checkpoints",
    metadata,
    Column("id", _RowId, primary_key=True, autoincrement=True),
    Column("batch_id", String(MAX_BATCH_ID), nullable=False),
    Column("seq", BigInteger, nullable=False),
    Column("hash", String(64), nullable=False),
    Column("key_id", String(64), nullable=False),
    Column("signature", String(128), nullable=False),
    Index("ix_checkpoints_batch_seq", "batch_id", "seq"),
)
"""Signed chain heads (ebr.record.signing): append-only; no foreign key, so the
signatures of a deleted batch outlive its rows."""

unit_leases = Table(
    "unit_leases",
    metadata,
    Column("unit", String(MAX_LABEL), primary_key=True),
    Column("holder", String(MAX_LABEL), nullable=False),
    Column("batch_id", String(MAX_BATCH_ID), nullable=False),
    Column("token", BigInteger, nullable=False),
    Column("acquired_at", String(32), nullable=False),
    Column("expires_at", String(32), nullable=False),
)
"""Which process controls which unit (ebr.record.leases); `token` only grows. Not part
of the record: runtime state, never verified."""

TABLE_NAMES = frozenset(metadata.tables)

INITIAL_TABLE_NAMES = frozenset({"batches", "journal", "sample_blocks"})
"""The tables of revision 0001 (what a store made before migrations holds)."""

VERSION_TABLE = "ebr_alembic_version"
"""Alembic's version table of the eBR schema (named so it cannot clash with another
application's Alembic history in the same database or schema)."""
