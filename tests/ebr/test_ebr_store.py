"""Opening the database: URLs and paths, PRAGMAs, schema, and refusing foreign files."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest
from sqlalchemy import inspect

from ebr import Store, StoreError


@pytest.mark.parametrize("as_url", [True, False])
def test_open_creates_directory_schema_and_pragmas(tmp_path: Path, as_url: bool) -> None:
    path = tmp_path / "deep" / "er" / "record.sqlite"
    with Store.open(f"sqlite:///{path}" if as_url else str(path)) as store:
        assert path.exists()
        assert {"batches", "journal", "sample_blocks"} <= set(
            inspect(store.engine).get_table_names()
        )
        with store.engine.connect() as conn:
            pragma = {
                name: conn.exec_driver_sql(f"PRAGMA {name}").scalar()
                for name in ("journal_mode", "synchronous", "foreign_keys", "busy_timeout")
            }
        assert pragma == {
            "journal_mode": "wal",
            "synchronous": 2,
            "foreign_keys": 1,
            "busy_timeout": 5000,
        }
        assert str(path) in store.url


def test_reopening_keeps_existing_data(tmp_path: Path) -> None:
    path = tmp_path / "x.sqlite"
    Store.open(path).close()
    with Store.open(path, create=False) as store:
        assert store.engine.dialect.name == "sqlite"


def test_missing_file_is_not_created_without_create(tmp_path: Path) -> None:
    path = tmp_path / "nope.sqlite"
    with pytest.raises(StoreError, match="no eBR database at"):
        Store.open(path, create=False)
    assert not path.exists()


def test_garbage_file_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "notes.txt"
    path.write_text("this is not a database\n" * 20)
    with pytest.raises(StoreError, match="is not a database"):
        Store.open(path)
    assert path.read_text().startswith("this is not")


def test_directory_is_refused(tmp_path: Path) -> None:
    with pytest.raises(StoreError, match="directory"):
        Store.open(tmp_path)


def test_foreign_sqlite_database_is_refused_without_create(tmp_path: Path) -> None:
    path = tmp_path / "other.sqlite"
    conn = sqlite3.connect(path)
    conn.execute("CREATE TABLE t (x)")
    conn.commit()
    conn.close()
    with pytest.raises(StoreError, match="not an eBR database"):
        Store.open(path, create=False)


def test_in_memory_and_bad_urls_are_refused() -> None:
    with pytest.raises(StoreError, match="in-memory"):
        Store.open("sqlite:///:memory:")
    with pytest.raises(StoreError):
        Store.open("nosuchdialect://x")


@pytest.mark.sqlite_only  # PostgreSQL: test_ebr_postgres.py
@pytest.mark.parametrize(
    "statement",
    [
        "UPDATE journal SET data = '{}' WHERE seq = 1",
        "DELETE FROM journal WHERE seq = 1",
        "UPDATE sample_blocks SET data = '{}'",
        "DELETE FROM sample_blocks",
        "DELETE FROM batches",
        "UPDATE batches SET coi = 'COI-OTHER'",
        "UPDATE batches SET head_seq = head_seq - 1",
    ],
)
async def test_database_refuses_updates_and_deletes(
    populated: tuple[Store, Path, str, int], statement: str
) -> None:
    _store, path, *_ = populated
    conn = sqlite3.connect(path)
    try:
        with pytest.raises(sqlite3.IntegrityError, match=r"append-only|never deleted|only"):
            conn.execute(statement)
    finally:
        conn.close()
