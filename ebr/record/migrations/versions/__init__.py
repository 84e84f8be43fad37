"""Alembic revisions of the eBR schema, oldest first (`0001_initial.py`, ...)."""
