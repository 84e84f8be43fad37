"""Schema migrations: Alembic makes the schema, upgrades old stores, refuses newer ones."""

from __future__ import annotations

import shutil
import sqlite3
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from click.testing import CliRunner
from sqlalchemy import Column, Integer, MetaData, Table, Text, create_engine, inspect, text

from cellbatch.ebr_cli import ebr
from ebr import Store, StoreError, verify_batch
from ebr.record import store as ebr_store
from ebr.record.schema import TABLE_NAMES, VERSION_TABLE, metadata
from ebr.record.store import INITIAL_REVISION, head_revision, schema_revision


def test_migrated_schema_matches_metadata(store: Store) -> None:
    """Autogenerate finds nothing to do: the migrations make exactly `metadata`."""
    with store.engine.connect() as conn:
        context = MigrationContext.configure(
            conn, opts={"version_table": VERSION_TABLE, "compare_type": True}
        )
        assert compare_metadata(context, metadata) == []
        assert schema_revision(conn) == head_revision()


def test_guards_are_created_by_the_migration(store: Store) -> None:
    with store.engine.connect() as conn:
        if store.engine.dialect.name == "sqlite":
            query = "SELECT name FROM sqlite_master WHERE type = 'trigger'"
        else:
            query = (
                "SELECT tgname FROM pg_trigger t JOIN pg_class c ON c.oid = t.tgrelid "
                "WHERE NOT t.tgisinternal AND c.relnamespace = current_schema()::regnamespace"
            )
        names = set(conn.execute(text(query)).scalars())
    expected = {
        "journal_no_update",
        "journal_no_delete",
        "sample_blocks_no_update",
        "sample_blocks_no_delete",
        "batches_no_delete",
        "batches_head_only",
        "checkpoints_no_update",
        "checkpoints_no_delete",
        "journal_extends_chain",
        "batches_head_exists",
    }
    if store.engine.dialect.name == "postgresql":
        expected |= {"journal_no_truncate", "sample_blocks_no_truncate", "batches_no_truncate"}
        expected |= {"checkpoints_no_truncate"}
    assert names == expected


def test_reopening_an_up_to_date_store_changes_nothing(store: Store, store_url: str) -> None:
    with Store.open(store_url, create=False) as again, again.engine.connect() as conn:
        assert schema_revision(conn) == head_revision()
        assert set(inspect(conn).get_table_names()) >= TABLE_NAMES


def test_store_newer_than_this_code_is_refused(store: Store, store_url: str) -> None:
    with store.engine.begin() as conn:
        conn.execute(text(f"UPDATE {VERSION_TABLE} SET version_num = '9999'"))
    for create in (True, False):
        with pytest.raises(StoreError, match=r"store schema rev 9999 is newer than this cellbatch"):
            Store.open(store_url, create=create)


def test_store_made_before_migrations_is_adopted(tmp_path: Path) -> None:
    """A store made by the old create_all path (no version table) is stamped, kept."""
    path = tmp_path / "legacy.sqlite"
    with Store.open(path) as store, store.engine.begin() as conn:
        conn.execute(text(f"DROP TABLE {VERSION_TABLE}"))
        # revision 0001's schema: no checkpoints table, none of the later guards
        conn.execute(text("DROP TABLE checkpoints"))
        conn.execute(text("DROP TABLE unit_leases"))
        conn.execute(text("DROP TRIGGER journal_extends_chain"))
        conn.execute(text("DROP TRIGGER batches_head_exists"))
    with Store.open(path, create=False) as store, store.engine.connect() as conn:
        assert schema_revision(conn) == head_revision()
        assert INITIAL_REVISION == "0001"


def test_partial_schema_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "half.sqlite"
    conn = sqlite3.connect(path)
    conn.execute("CREATE TABLE batches (batch_id TEXT PRIMARY KEY)")
    conn.commit()
    conn.close()
    with pytest.raises(StoreError, match="not an eBR database"):
        Store.open(path)


def test_concurrent_first_opens_create_the_schema_once(store_url: str) -> None:
    """Eight openers of one fresh database at once: one creates, the others wait and see it."""

    def open_and_close(_n: int) -> str:
        with Store.open(store_url) as store, store.engine.connect() as conn:
            revision = schema_revision(conn)
        assert revision is not None
        return revision

    with ThreadPoolExecutor(8) as pool:
        assert set(pool.map(open_and_close, range(8))) == {head_revision()}
    engine = create_engine(store_url if "://" in store_url else f"sqlite:///{store_url}")
    try:
        with engine.connect() as conn:
            rows = conn.execute(text(f"SELECT version_num FROM {VERSION_TABLE}")).all()
    finally:
        engine.dispose()
    assert rows == [(head_revision(),)]


def test_the_schema_comparison_would_see_a_difference(store: Store) -> None:
    """The comparison above is not vacuous: a drifted schema shows up as diffs."""
    drifted = MetaData()
    for table in metadata.tables.values():
        table.to_metadata(drifted)
    Table("extra", drifted, Column("x", Integer, primary_key=True))
    drifted.tables["journal"].append_column(Column("note", Text))
    with store.engine.connect() as conn:
        context = MigrationContext.configure(conn, opts={"version_table": VERSION_TABLE})
        kinds = {diff[0] for diff in compare_metadata(context, drifted) if isinstance(diff, tuple)}
    assert {"add_table", "add_column"} <= kinds


def test_cli_refuses_a_newer_store_with_a_plain_error(tmp_path: Path) -> None:
    path = tmp_path / "future.sqlite"
    with Store.open(path) as store, store.engine.begin() as conn:
        conn.execute(text(f"UPDATE {VERSION_TABLE} SET version_num = 'f00d'"))
    result = CliRunner().invoke(ebr, ["list", "--db", str(path)])
    assert result.exit_code == 1 and "Traceback" not in result.output
    assert "store schema rev f00d is newer than this cellbatch; upgrade cellbatch" in result.stderr


REVISION_0099 = '''"""Test-only revision: a nullable column on batches."""

import sqlalchemy as sa
from alembic import op

revision = "0099"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("batches") as batch:
        batch.add_column(sa.Column("site", sa.String(64), nullable=True))


def downgrade() -> None:
    raise NotImplementedError
'''


def test_an_older_store_is_upgraded_on_first_use(
    populated: tuple[Store, object, str, int],
    store_url: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A newer cellbatch (here: the migrations plus a revision 0099) upgrades the store
    when it first opens it, keeping the data and the guards."""
    populated[0].close()
    newer = tmp_path / "migrations"
    shutil.copytree(ebr_store.MIGRATIONS, newer, ignore=shutil.ignore_patterns("__pycache__"))
    (newer / "versions" / "0099_site.py").write_text(REVISION_0099)
    monkeypatch.setattr(ebr_store, "MIGRATIONS", newer)
    ebr_store._scripts.cache_clear()
    try:
        with Store.open(store_url, create=False) as upgraded, upgraded.engine.connect() as conn:
            assert schema_revision(conn) == "0099" == head_revision()
            columns = {c["name"] for c in inspect(conn).get_columns("batches")}
            assert "site" in columns
            assert verify_batch(upgraded, "B-001").ok
    finally:
        monkeypatch.undo()
        ebr_store._scripts.cache_clear()
    with pytest.raises(StoreError, match="store schema rev 0099 is newer than this cellbatch"):
        Store.open(store_url)
