"""The initial eBR schema: batches, journal, sample_blocks and their append-only guards.

Revision ID: 0001
Revises:
Create Date: 2026-11-22

Frozen copy of the schema as it was when migrations were introduced (do not import
`ebr.record.schema` here: later revisions change it). A store made before migrations existed
(by `metadata.create_all`) holds exactly this schema; `Store.open` stamps it 0001.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

MAX_BATCH_ID = 128
MAX_KIND = 64
MAX_LABEL = 200

_RowId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")

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
_JOURNAL_ONLY = "the journal is append-only"
_BLOCKS_ONLY = "sample blocks are append-only"
_NEVER_DELETED = "batches are never deleted"
_HEAD_ONLY = "only the journal head of a batch may change, and only forward"

SQLITE_GUARDS = [
    f"CREATE TRIGGER journal_no_update BEFORE UPDATE ON journal "
    f"BEGIN SELECT RAISE(ABORT, '{_JOURNAL_ONLY}'); END",
    f"CREATE TRIGGER journal_no_delete BEFORE DELETE ON journal "
    f"BEGIN SELECT RAISE(ABORT, '{_JOURNAL_ONLY}'); END",
    f"CREATE TRIGGER sample_blocks_no_update BEFORE UPDATE ON sample_blocks "
    f"BEGIN SELECT RAISE(ABORT, '{_BLOCKS_ONLY}'); END",
    f"CREATE TRIGGER sample_blocks_no_delete BEFORE DELETE ON sample_blocks "
    f"BEGIN SELECT RAISE(ABORT, '{_BLOCKS_ONLY}'); END",
    f"CREATE TRIGGER batches_no_delete BEFORE DELETE ON batches "
    f"BEGIN SELECT RAISE(ABORT, '{_NEVER_DELETED}'); END",
    "CREATE TRIGGER batches_head_only BEFORE UPDATE ON batches WHEN "
    + " OR ".join(f"NEW.{name} IS NOT OLD.{name}" for name in _HEADER_COLUMNS)
    + f" OR NEW.head_seq <= OLD.head_seq BEGIN SELECT RAISE(ABORT, '{_HEAD_ONLY}'); END",
]
"""SQLite: refuse UPDATE/DELETE on journal and sample_blocks, DELETE on batches, and any
change to a batches row other than moving its head forward (RAISE(ABORT) → IntegrityError)."""

POSTGRESQL_GUARDS = [
    # Statement- and row-level refusal; the message is the trigger's argument. SQLSTATE
    # 23000 so drivers report an integrity error, as SQLite's RAISE(ABORT) does.
    """CREATE FUNCTION ebr_refuse() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION '%', TG_ARGV[0] USING ERRCODE = 'integrity_constraint_violation';
END
$$""",
    "CREATE FUNCTION ebr_batches_head_only() RETURNS trigger LANGUAGE plpgsql AS $$\n"
    "BEGIN\n    IF "
    + " OR ".join(f"NEW.{name} IS DISTINCT FROM OLD.{name}" for name in _HEADER_COLUMNS)
    + f" OR NEW.head_seq <= OLD.head_seq THEN\n"
    f"        RAISE EXCEPTION '{_HEAD_ONLY}' USING ERRCODE = 'integrity_constraint_violation';\n"
    "    END IF;\n    RETURN NEW;\nEND\n$$",
    *(
        f"CREATE TRIGGER {table}_no_{event.lower()} BEFORE {event} ON {table} "
        f"FOR EACH {'STATEMENT' if event == 'TRUNCATE' else 'ROW'} "
        f"EXECUTE FUNCTION ebr_refuse('{message}')"
        for table, events, message in (
            ("journal", ("UPDATE", "DELETE", "TRUNCATE"), _JOURNAL_ONLY),
            ("sample_blocks", ("UPDATE", "DELETE", "TRUNCATE"), _BLOCKS_ONLY),
            ("batches", ("DELETE", "TRUNCATE"), _NEVER_DELETED),
        )
        for event in events
    ),
    "CREATE TRIGGER batches_head_only BEFORE UPDATE ON batches "
    "FOR EACH ROW EXECUTE FUNCTION ebr_batches_head_only()",
]
"""PostgreSQL: the same refusals as SQLite, plus TRUNCATE (which skips row triggers)."""


def upgrade() -> None:
    """Create the three tables, their indexes and the append-only guards."""
    op.create_table(
        "batches",
        sa.Column("batch_id", sa.String(MAX_BATCH_ID), primary_key=True),
        sa.Column("created_at", sa.String(32), nullable=False),
        sa.Column("recipe_name", sa.String(MAX_LABEL), nullable=False),
        sa.Column("recipe_version", sa.String(MAX_LABEL), nullable=False),
        sa.Column("recipe_hash", sa.String(MAX_LABEL), nullable=False),
        sa.Column("product", sa.String(MAX_LABEL), nullable=False),
        sa.Column("coi", sa.String(MAX_LABEL), nullable=False),
        sa.Column("simulation", sa.Boolean, nullable=False),
        sa.Column("head_seq", sa.BigInteger, nullable=False),
        sa.Column("head_hash", sa.String(64), nullable=False),
    )
    op.create_table(
        "journal",
        sa.Column("id", _RowId, primary_key=True, autoincrement=True),
        sa.Column(
            "batch_id", sa.String(MAX_BATCH_ID), sa.ForeignKey("batches.batch_id"), nullable=False
        ),
        sa.Column("seq", sa.BigInteger, nullable=False),
        sa.Column("ts", sa.String(32), nullable=False),
        sa.Column("kind", sa.String(MAX_KIND), nullable=False),
        sa.Column("data", sa.Text, nullable=False),
        sa.Column("prev_hash", sa.String(64), nullable=False),
        sa.Column("hash", sa.String(64), nullable=False),
        sa.UniqueConstraint("batch_id", "seq", name="uq_journal_batch_seq"),
    )
    op.create_index("ix_journal_kind_batch_seq", "journal", ["kind", "batch_id", "seq"])
    op.create_table(
        "sample_blocks",
        sa.Column("id", _RowId, primary_key=True, autoincrement=True),
        sa.Column(
            "batch_id", sa.String(MAX_BATCH_ID), sa.ForeignKey("batches.batch_id"), nullable=False
        ),
        sa.Column("block_no", sa.BigInteger, nullable=False),
        sa.Column("data", sa.Text, nullable=False),
        sa.Column("sha256", sa.String(64), nullable=False),
        sa.UniqueConstraint("batch_id", "block_no", name="uq_sample_blocks_batch_block"),
    )
    dialect = op.get_bind().dialect.name
    guards = {"sqlite": SQLITE_GUARDS, "postgresql": POSTGRESQL_GUARDS}.get(dialect, [])
    for statement in guards:
        op.execute(statement)


def downgrade() -> None:
    """The batch record is never downgraded in place: restore a backup instead."""
    raise NotImplementedError("eBR schema downgrades are not supported")
