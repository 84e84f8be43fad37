"""Alembic environment of the eBR database.

Run only through `ebr.record.store` (`Store.open` upgrades a store on first use): it passes the
connection, already inside the transaction that holds the migration lock, as
`config.attributes["connection"]`. There is no alembic.ini and no offline mode.
"""

from __future__ import annotations

from alembic import context
from sqlalchemy import Connection

from ebr.record.schema import VERSION_TABLE, metadata

connection = context.config.attributes.get("connection")
if not isinstance(connection, Connection):
    raise RuntimeError("ebr migrations run through ebr.record.store.Store.open, with a connection")

context.configure(
    connection=connection,
    target_metadata=metadata,
    version_table=VERSION_TABLE,
    render_as_batch=connection.dialect.name == "sqlite",
    compare_type=True,
)
with context.begin_transaction():
    context.run_migrations()
