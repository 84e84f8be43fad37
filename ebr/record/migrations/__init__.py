"""Alembic migrations of the eBR database (run by `ebr.record.store.Store.open`, no alembic.ini)."""
