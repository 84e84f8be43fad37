"""Signed checkpoints, and guards that refuse journal rows not extending their chain.

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-03

- `checkpoints(id, batch_id, seq, hash, key_id, signature)`: Ed25519 signatures over
  chain heads (see ebr.record.signing); append-only like the journal.
- A journal row is refused unless it links to the stored row before it (seq 1: the
  genesis value), so an INSERT cannot start a second chain or skip entries.
- A batch head may only move to a journal row that exists with that hash.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

MAX_BATCH_ID = 128
_GENESIS = "0" * 64
_CHECKPOINTS_ONLY = "checkpoints are append-only"
_EXTEND = "a journal entry must extend the chain of its batch"
_HEAD_EXISTS = "a batch head may only name a journal entry of that batch"

_BREAKS_CHAIN = (
    f"(NEW.seq = 1 AND NEW.prev_hash <> '{_GENESIS}') OR (NEW.seq <> 1 AND NOT EXISTS "
    "(SELECT 1 FROM journal WHERE batch_id = NEW.batch_id AND seq = NEW.seq - 1 "
    "AND hash = NEW.prev_hash))"
)
_HEAD_MISSING = (
    "NEW.head_seq <> OLD.head_seq AND NOT EXISTS (SELECT 1 FROM journal WHERE "
    "batch_id = NEW.batch_id AND seq = NEW.head_seq AND hash = NEW.head_hash)"
)

SQLITE_GUARDS = [
    f"CREATE TRIGGER checkpoints_no_update BEFORE UPDATE ON checkpoints "
    f"BEGIN SELECT RAISE(ABORT, '{_CHECKPOINTS_ONLY}'); END",
    f"CREATE TRIGGER checkpoints_no_delete BEFORE DELETE ON checkpoints "
    f"BEGIN SELECT RAISE(ABORT, '{_CHECKPOINTS_ONLY}'); END",
    f"CREATE TRIGGER journal_extends_chain BEFORE INSERT ON journal WHEN {_BREAKS_CHAIN} "
    f"BEGIN SELECT RAISE(ABORT, '{_EXTEND}'); END",
    f"CREATE TRIGGER batches_head_exists BEFORE UPDATE ON batches WHEN {_HEAD_MISSING} "
    f"BEGIN SELECT RAISE(ABORT, '{_HEAD_EXISTS}'); END",
]

POSTGRESQL_GUARDS = [
    *(
        f"CREATE TRIGGER checkpoints_no_{event.lower()} BEFORE {event} ON checkpoints "
        f"FOR EACH {'STATEMENT' if event == 'TRUNCATE' else 'ROW'} "
        f"EXECUTE FUNCTION ebr_refuse('{_CHECKPOINTS_ONLY}')"
        for event in ("UPDATE", "DELETE", "TRUNCATE")
    ),
    "CREATE FUNCTION ebr_journal_extends() RETURNS trigger LANGUAGE plpgsql AS $$\n"
    f"BEGIN\n    IF {_BREAKS_CHAIN} THEN\n"
    f"        RAISE EXCEPTION '{_EXTEND}' USING ERRCODE = 'integrity_constraint_violation';\n"
    "    END IF;\n    RETURN NEW;\nEND\n$$",
    "CREATE TRIGGER journal_extends_chain BEFORE INSERT ON journal "
    "FOR EACH ROW EXECUTE FUNCTION ebr_journal_extends()",
    "CREATE FUNCTION ebr_head_exists() RETURNS trigger LANGUAGE plpgsql AS $$\n"
    f"BEGIN\n    IF {_HEAD_MISSING} THEN\n"
    f"        RAISE EXCEPTION '{_HEAD_EXISTS}' USING ERRCODE = 'integrity_constraint_violation';\n"
    "    END IF;\n    RETURN NEW;\nEND\n$$",
    "CREATE TRIGGER batches_head_exists BEFORE UPDATE ON batches "
    "FOR EACH ROW EXECUTE FUNCTION ebr_head_exists()",
]


def upgrade() -> None:
    """Create the checkpoints table and the new guards."""
    op.create_table(
        "checkpoints",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), primary_key=True),
        sa.Column("batch_id", sa.String(MAX_BATCH_ID), nullable=False),
        sa.Column("seq", sa.BigInteger, nullable=False),
        sa.Column("hash", sa.String(64), nullable=False),
        sa.Column("key_id", sa.String(64), nullable=False),
        sa.Column("signature", sa.String(128), nullable=False),
    )
    op.create_index("ix_checkpoints_batch_seq", "checkpoints", ["batch_id", "seq"])
    dialect = op.get_bind().dialect.name
    guards = {"sqlite": SQLITE_GUARDS, "postgresql": POSTGRESQL_GUARDS}.get(dialect, [])
    for statement in guards:
        op.execute(statement)


def downgrade() -> None:
    """The batch record is never downgraded in place: restore a backup instead."""
    raise NotImplementedError("eBR schema downgrades are not supported")
