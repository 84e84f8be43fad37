"""Backup and restore of an eBR store, with every chain verified in the copy.

A backup is always ONE SQLite file holding an eBR store (schema made by the same
migrations, rows in their original id order), whatever the source database:

- SQLite source: the SQLite online backup API (`sqlite3.Connection.backup`) copies one
  consistent snapshot while controllers keep writing.
- PostgreSQL source: the rows of `batches`, `journal` and `sample_blocks` are copied in
  id order from one REPEATABLE READ snapshot into a new SQLite store. (Not pg_dump: a
  dump is tied to its schema name and server version, and cannot be verified or read
  without a server; the SQLite file can be checked with `cellbatch ebr verify --db FILE`
  or the sqlite3 shell anywhere.)

The backup is written as FILE.partial, verified (every batch), and only then renamed
to FILE; an existing FILE is never overwritten. Restore copies a backup into a new or
empty target store (SQLite: online backup API; PostgreSQL: rows in id order with the
same ids, in one transaction), upgrades its schema if the backup is older, and verifies
every batch in the target. A tampered batch is copied as it is (a backup is evidence)
and reported as not ok.
"""

from __future__ import annotations

import os
import sqlite3
import tempfile
from collections.abc import Iterator
from contextlib import closing, contextmanager
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import func, insert, literal, select, text

from ebr.record.checks import VerifyResult
from ebr.record.errors import EbrError
from ebr.record.schema import (
    INITIAL_TABLE_NAMES,
    TABLE_NAMES,
    VERSION_TABLE,
    batches,
    checkpoints,
    journal,
    sample_blocks,
)
from ebr.record.store import Store, resolve_url
from ebr.record.verify import verify_all

_CHUNK = 1000
_TABLES = (batches, journal, sample_blocks, checkpoints)  # foreign keys: batches first
_SQLITE_MAGIC = b"SQLite format 3\x00"
_SQLITE_INTERNAL = {"sqlite_sequence", VERSION_TABLE}


class BackupError(EbrError):
    """A backup or restore cannot be made (target exists or is not empty, bad file, ...)."""


@dataclass(frozen=True, slots=True)
class BackupReport:
    """What a backup or restore copied, and the verification of every batch in the copy."""

    source: str
    target: str
    method: str
    results: list[VerifyResult]

    @property
    def ok(self) -> bool:
        """Whether every batch in the copy verified intact."""
        return all(result.ok for result in self.results)

    @property
    def entries(self) -> int:
        """Journal entries verified in the copy."""
        return sum(result.entries_checked for result in self.results)

    def summary(self) -> str:
        """One line: what was copied where, and how many batches verified intact."""
        intact = sum(result.ok for result in self.results)
        return (
            f"{self.target}: {len(self.results)} batches ({intact} intact), "
            f"{self.entries} entries verified ({self.method})"
        )


def backup(source_url: str | os.PathLike[str], file: str | os.PathLike[str]) -> BackupReport:
    """Copy the store at `source_url` into the new SQLite file `file`; verify the copy."""
    target = Path(file).expanduser().absolute()
    if target.exists():
        raise BackupError(f"{target} exists; a backup never overwrites a file")
    if not target.parent.is_dir():
        raise BackupError(f"{target.parent} is not a directory")
    partial = target.with_name(target.name + ".partial")
    _remove_sqlite(partial)
    try:
        with Store.open(source_url, create=False) as source:
            where = source.url
            if source.engine.dialect.name == "sqlite":
                method = "SQLite online backup"
                _sqlite_backup(_sqlite_file(source), partial)
            else:
                method = f"row copy from {source.engine.dialect.name}"
                with Store.open(partial) as copy:
                    _copy_rows(source, copy)
        results = _verify_file(partial)
        _finish_sqlite_file(partial)
        partial.replace(target)
    finally:
        _remove_sqlite(partial)
    return BackupReport(where, str(target), method, results)


def restore(file: str | os.PathLike[str], target_url: str | os.PathLike[str]) -> BackupReport:
    """Copy the backup `file` into the new or empty store at `target_url`; verify it."""
    source = Path(file).expanduser().absolute()
    _check_backup_file(source)
    url = resolve_url(target_url)
    if url.get_backend_name() == "sqlite":
        path = Path(url.database or "").expanduser()
        if str(path) in ("", ":memory:"):
            raise BackupError("restore needs a durable target database, not in-memory SQLite")
        _refuse_non_empty_sqlite(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        _sqlite_backup(source, path)
        results = _verify_file(path)  # Store.open upgrades an older backup's schema
        return BackupReport(str(source), str(path), "SQLite online backup", results)
    with tempfile.TemporaryDirectory(prefix="ebr-restore-") as scratch:
        staged = Path(scratch) / "staged.sqlite"
        _sqlite_backup(source, staged)  # never modify the backup file itself
        with Store.open(staged, create=False) as copy, Store.open(target_url) as target:
            _refuse_non_empty_store(target)
            _copy_rows(copy, target)
            results = verify_all(target)
            where = target.url
    return BackupReport(str(source), where, "row copy into postgresql", results)


# -- SQLite files --------------------------------------------------------------------


def _sqlite_file(store: Store) -> Path:
    # absolute: a relative store path (the default ./cellbatch.sqlite) has no file URI
    return Path(store.engine.url.database or "").resolve()


def _sqlite_backup(source: Path, target: Path) -> None:
    """Copy one consistent snapshot of the SQLite database `source` into `target`."""
    try:
        with (
            closing(sqlite3.connect(f"{source.as_uri()}?mode=ro", uri=True)) as src,
            closing(sqlite3.connect(target)) as dst,
        ):
            src.backup(dst)
    except sqlite3.Error as exc:
        raise BackupError(f"cannot copy {source} to {target}: {exc}") from exc


def _finish_sqlite_file(path: Path) -> None:
    """Make the backup one self-contained file (rollback journal, no -wal/-shm)."""
    try:
        with closing(sqlite3.connect(path)) as conn:
            conn.execute("PRAGMA journal_mode=DELETE")
    except sqlite3.Error as exc:
        raise BackupError(f"cannot finish {path}: {exc}") from exc


def _remove_sqlite(path: Path) -> None:
    for suffix in ("", "-wal", "-shm", "-journal"):
        path.with_name(path.name + suffix).unlink(missing_ok=True)


def _verify_file(path: Path) -> list[VerifyResult]:
    with Store.open(path, create=False) as copy:
        return verify_all(copy)


def _check_backup_file(path: Path) -> None:
    if not path.is_file():
        raise BackupError(f"no backup file at {path}")
    with path.open("rb") as handle:
        if handle.read(len(_SQLITE_MAGIC)) != _SQLITE_MAGIC:
            raise BackupError(f"{path} is not an eBR backup (not an SQLite file)")
    try:
        with closing(sqlite3.connect(f"{path.as_uri()}?mode=ro", uri=True)) as conn:
            names = {row[0] for row in conn.execute("SELECT name FROM sqlite_master")}
    except sqlite3.Error as exc:
        raise BackupError(f"{path} is not a readable eBR backup: {exc}") from exc
    if not names >= INITIAL_TABLE_NAMES:
        raise BackupError(f"{path} is not an eBR backup (no eBR tables)")


def _refuse_non_empty_sqlite(path: Path) -> None:
    """Allow a missing or zero-length file, or an eBR store without any rows."""
    if not path.exists() or (path.is_file() and path.stat().st_size == 0):
        return
    if not path.is_file():
        raise BackupError(f"{path} is not a file")
    with path.open("rb") as handle:
        if handle.read(len(_SQLITE_MAGIC)) != _SQLITE_MAGIC:
            raise BackupError(f"{path} exists and is not an SQLite database; not overwritten")
    try:
        with closing(sqlite3.connect(f"{path.as_uri()}?mode=ro", uri=True)) as conn:
            tables = {
                row[0]
                for row in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")
            }
            foreign = tables - TABLE_NAMES - _SQLITE_INTERNAL
            if foreign:
                raise BackupError(
                    f"{path} holds other tables ({', '.join(sorted(foreign))}); not overwritten"
                )
            for name in sorted(tables & TABLE_NAMES):
                if conn.execute(f'SELECT 1 FROM "{name}" LIMIT 1').fetchone():
                    raise BackupError(
                        f"{path} is not empty (table {name} has rows); restore only into a "
                        "new or empty store"
                    )
    except sqlite3.Error as exc:
        raise BackupError(f"cannot read {path}: {exc}") from exc


# -- row copy (PostgreSQL) -----------------------------------------------------------


def _refuse_non_empty_store(store: Store) -> None:
    with store.snapshot() as conn:
        for table in _TABLES:
            if conn.execute(select(literal(1)).select_from(table).limit(1)).first():
                raise BackupError(
                    f"{store.url} is not empty (table {table.name} has rows); restore only "
                    "into a new or empty store"
                )


@contextmanager
def _rows(store: Store) -> Iterator[Iterator[tuple[str, list[dict[str, object]]]]]:
    """Yield chunks (table name, rows) of every table in id order, from one snapshot."""
    with store.snapshot() as conn:

        def chunks() -> Iterator[tuple[str, list[dict[str, object]]]]:
            for table in _TABLES:
                query = select(table).order_by(*table.primary_key.columns)
                result = conn.execution_options(stream_results=True, yield_per=_CHUNK).execute(
                    query
                )
                for part in result.mappings().partitions():
                    yield table.name, [dict(row) for row in part]

        yield chunks()


def _copy_rows(source: Store, target: Store) -> None:
    """Copy every row, same ids, same order, in ONE transaction of the target."""
    tables = {table.name: table for table in _TABLES}
    with _rows(source) as chunks, target.transaction() as conn:
        for name, rows in chunks:
            conn.execute(insert(tables[name]), rows)
        if target.engine.dialect.name == "postgresql":
            for table in (journal, sample_blocks, checkpoints):
                top = conn.execute(select(func.max(table.c.id))).scalar()
                if top is not None:
                    conn.execute(
                        text("SELECT setval(pg_get_serial_sequence(:table, 'id'), :top)"),
                        {"table": table.name, "top": top},
                    )
