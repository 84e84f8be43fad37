"""Unit leases: which process controls which unit, with a fencing token.

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-03

`unit_leases(unit, holder, batch_id, token, acquired_at, expires_at)`: one row per unit
ever leased; `token` only grows (a new holder gets the next one), so a writer whose
lease was taken over is refused on its next commit (ebr.record.leases).
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    """Create the unit_leases table."""
    op.create_table(
        "unit_leases",
        sa.Column("unit", sa.String(200), primary_key=True),
        sa.Column("holder", sa.String(200), nullable=False),
        sa.Column("batch_id", sa.String(128), nullable=False),
        sa.Column("token", sa.BigInteger, nullable=False),
        sa.Column("acquired_at", sa.String(32), nullable=False),
        sa.Column("expires_at", sa.String(32), nullable=False),
    )


def downgrade() -> None:
    """The batch record is never downgraded in place: restore a backup instead."""
    raise NotImplementedError("eBR schema downgrades are not supported")
