"""Alembic migrations of the eBR database (run by `ebr.store.Store.open`, no alembic.ini)."""
