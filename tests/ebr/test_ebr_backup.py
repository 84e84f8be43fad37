"""Backup and restore: a verified SQLite copy of any store, restored into a new store."""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result

from cellbatch.ebr_cli import ebr
from ebr import Journal, Store, read_batch, read_journal, read_samples, verify_all
from ebr.record.backup import BackupError, backup, restore
from tests.ebr.conftest import T0, OpenBatch, sample_rows

Populated = tuple[Store, Any, str, int]


def run(*args: str) -> Result:
    return CliRunner().invoke(ebr, list(args))


def assert_plain_error(result: Result, fragment: str) -> None:
    assert result.exit_code == 1, result.output
    assert "Traceback" not in result.output
    assert result.stderr.startswith("error: ") and fragment in result.stderr


@pytest.fixture
def target_url(backend: str, tmp_path: Path, request: pytest.FixtureRequest) -> str:
    """A second, empty store location on the same backend (where a restore goes)."""
    if backend == "postgresql":
        return str(request.getfixturevalue("new_pg_url")())
    return f"sqlite:///{tmp_path / 'restored' / 'ebr.sqlite'}"


def same_records(a: Store, b: Store, batch_id: str) -> None:
    assert read_journal(a, batch_id) == read_journal(b, batch_id)
    assert read_samples(a, batch_id) == read_samples(b, batch_id)
    assert read_batch(a, batch_id) == read_batch(b, batch_id)


async def test_backup_and_restore_round_trip(
    populated: Populated, store_url: str, target_url: str, tmp_path: Path
) -> None:
    store, *_ = populated
    file = tmp_path / "backup.sqlite"
    result = run("backup", str(file), "--db", store_url)
    assert result.exit_code == 0, result.output
    assert "B-001: intact — 20 entries, 3 sample blocks checked" in result.stdout
    assert f"{file}: 1 batches (1 intact), 20 entries verified" in result.stdout
    assert [p.name for p in file.parent.iterdir() if p.name.startswith("backup")] == [file.name]

    result = run("restore", str(file), "--db", target_url)
    assert result.exit_code == 0, result.output
    assert "B-001: intact — 20 entries, 3 sample blocks checked" in result.stdout
    with Store.open(target_url, create=False) as restored:
        same_records(store, restored, "B-001")
        async with Journal(restored) as journal:  # the restored store carries on
            await journal.resume_batch("B-001")
            entry = await journal.append("B-001", "batch.state", {"to": "Released"})
            block = await journal.append_samples("B-001", sample_rows(T0, 2))
        assert (entry.seq, block.data["block_no"]) == (21, 4)
        assert all(r.ok for r in verify_all(restored))


async def test_sqlite_backup_while_a_writer_runs(
    store: Store, db_path: Path, tmp_path: Path, open_batch: OpenBatch
) -> None:
    """The online backup copies one consistent snapshot while entries keep coming."""
    async with Journal(store) as journal:
        await open_batch(journal)

        async def writer() -> None:
            for n in range(300):
                await journal.append("B-001", "tick", {"n": n})

        task = asyncio.create_task(writer())
        await asyncio.sleep(0.02)
        report = await asyncio.to_thread(backup, db_path, tmp_path / "hot.sqlite")
        await task
    assert report.ok and report.method == "SQLite online backup"
    assert 1 <= report.entries <= 301


def test_backup_refuses_an_existing_file(populated: Populated, tmp_path: Path) -> None:
    _store, location, *_ = populated
    file = tmp_path / "exists.sqlite"
    file.write_bytes(b"precious")
    assert_plain_error(run("backup", str(file), "--db", str(location)), "never overwrites")
    assert file.read_bytes() == b"precious"


def test_backup_of_a_missing_store_is_a_plain_error(tmp_path: Path) -> None:
    result = run("backup", str(tmp_path / "b.sqlite"), "--db", str(tmp_path / "none.sqlite"))
    assert_plain_error(result, "no eBR database")
    assert not (tmp_path / "b.sqlite").exists()


def test_restore_refuses_a_non_empty_store(
    populated: Populated, store_url: str, tmp_path: Path
) -> None:
    store, *_ = populated
    file = tmp_path / "backup.sqlite"
    backup(store_url, file)
    assert_plain_error(run("restore", str(file), "--db", store_url), "is not empty")
    assert len(read_journal(store, "B-001")) == 20


def test_restore_into_an_empty_store(populated: Populated, tmp_path: Path) -> None:
    store, location, *_ = populated
    file = tmp_path / "backup.sqlite"
    backup(location, file)
    empty = tmp_path / "empty.sqlite"
    Store.open(empty).close()
    report = restore(file, empty)
    assert report.ok and report.entries == 20
    with Store.open(empty, create=False) as restored:
        same_records(store, restored, "B-001")


def test_restore_refuses_a_foreign_file(tmp_path: Path) -> None:
    notes = tmp_path / "notes.txt"
    notes.write_text("hello")
    with pytest.raises(BackupError, match="not an eBR backup"):
        restore(notes, tmp_path / "t.sqlite")
    other = tmp_path / "other.sqlite"
    with sqlite3.connect(other) as conn:
        conn.execute("CREATE TABLE t (x)")
    assert_plain_error(
        run("restore", str(other), "--db", str(tmp_path / "t.sqlite")), "no eBR tables"
    )
    assert_plain_error(run("restore", str(tmp_path / "absent"), "--db", str(other)), "no backup")


def test_tampered_batch_is_copied_and_reported(
    populated: Populated, shell: Callable[..., Any], db_path: Path, tmp_path: Path
) -> None:
    shell("DELETE FROM journal WHERE batch_id = 'B-001' AND seq = 20")
    file = tmp_path / "evidence.sqlite"
    result = run("backup", str(file), "--db", str(db_path))
    assert result.exit_code == 2
    assert "B-001: TAMPERED" in result.stdout and "trailing entries deleted" in result.stderr
    assert file.exists()
    result = run("restore", str(file), "--db", str(tmp_path / "r.sqlite"))
    assert result.exit_code == 2 and "trailing entries deleted" in result.stderr
