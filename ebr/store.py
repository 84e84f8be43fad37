"""The eBR database: opening, schema creation, and read/write transactions."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from types import TracebackType
from typing import Any

from sqlalchemy import Connection, Engine, create_engine, event, inspect
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError, SQLAlchemyError

from ebr.errors import StoreError
from ebr.schema import TABLE_NAMES, metadata

_WRITE = "ebr_write"
_SQLITE_MAGIC = b"SQLite format 3\x00"


def _sqlite_on_connect(dbapi_connection: Any, _record: Any) -> None:
    """Configure every new SQLite connection for durability and real transactions."""
    # We emit BEGIN ourselves (see _sqlite_on_begin): the sqlite3 module's legacy
    # transaction control does not begin transactions for SELECT, so reads would not
    # see one consistent snapshot.
    dbapi_connection.isolation_level = None
    cursor = dbapi_connection.cursor()
    try:
        cursor.execute("PRAGMA busy_timeout=5000")
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=FULL")
        cursor.execute("PRAGMA foreign_keys=ON")
    finally:
        cursor.close()


def _sqlite_on_begin(connection: Connection) -> None:
    """Begin a SQLite transaction; writers take the write lock up front."""
    immediate = connection.get_execution_options().get(_WRITE, False)
    connection.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")


def resolve_url(url: str | os.PathLike[str]) -> URL:
    """Turn a SQLAlchemy URL or a bare file path into a URL (a path means SQLite)."""
    text = os.fspath(url)
    if "://" not in text:
        return URL.create("sqlite", database=str(Path(text).expanduser().absolute()))
    try:
        return make_url(text)
    except ArgumentError as exc:
        raise StoreError(f"invalid database URL {text!r}: {exc}") from exc


def _sqlite_path(url: URL, create: bool) -> Path:
    """Check the file behind a SQLite URL; create its directory when `create`."""
    database = url.database or ""
    if database in ("", ":memory:") or url.query.get("mode") == "memory":
        raise StoreError("in-memory SQLite is not supported: the batch record must be durable")
    path = Path(database).expanduser()
    if path.is_dir():
        raise StoreError(f"{path} is a directory, not a database file")
    if path.exists():
        with path.open("rb") as handle:
            magic = handle.read(len(_SQLITE_MAGIC))
        if magic and magic != _SQLITE_MAGIC:
            raise StoreError(f"{path} is not a database (not an SQLite file)")
    elif create:
        path.parent.mkdir(parents=True, exist_ok=True)
    else:
        raise StoreError(f"no eBR database at {path}")
    return path


class Store:
    """An open eBR database (SQLite file or PostgreSQL), accessed with SQLAlchemy Core."""

    def __init__(self, engine: Engine) -> None:
        """Wrap an engine whose schema already exists; prefer `Store.open`."""
        self._engine = engine
        self._sqlite = engine.dialect.name == "sqlite"

    @classmethod
    def open(cls, url: str | os.PathLike[str], *, create: bool = True) -> Store:
        """Open the database at `url` (`sqlite:///path`, a bare file path, or any SQLAlchemy URL).

        With `create` (the default) a missing file, its directory and the schema are
        created; without it a missing or foreign database raises StoreError.
        """
        resolved = resolve_url(url)
        where = resolved.render_as_string(hide_password=True)
        is_sqlite = resolved.get_backend_name() == "sqlite"
        if is_sqlite:
            where = str(_sqlite_path(resolved, create))
        try:
            engine = create_engine(resolved)
        except (ArgumentError, ImportError) as exc:
            raise StoreError(f"cannot use database {where}: {exc}") from exc
        if is_sqlite:
            event.listen(engine, "connect", _sqlite_on_connect)
            event.listen(engine, "begin", _sqlite_on_begin)
        try:
            with engine.connect() as conn:
                missing = TABLE_NAMES - set(inspect(conn).get_table_names())
            if missing and not create:
                raise StoreError(
                    f"{where} is not an eBR database (missing tables: {', '.join(sorted(missing))})"
                )
            if missing:
                metadata.create_all(engine)
        except SQLAlchemyError as exc:
            engine.dispose()
            reason = getattr(exc, "orig", None) or exc
            raise StoreError(f"cannot open database {where}: {reason}") from exc
        except StoreError:
            engine.dispose()
            raise
        return cls(engine)

    @property
    def engine(self) -> Engine:
        """The SQLAlchemy engine (for event listeners and Core queries)."""
        return self._engine

    @property
    def url(self) -> str:
        """The database URL, password hidden."""
        return self._engine.url.render_as_string(hide_password=True)

    @contextmanager
    def snapshot(self) -> Iterator[Connection]:
        """Yield a connection inside a read transaction that sees one consistent snapshot."""
        with self._engine.connect() as conn:
            if not self._sqlite:
                conn.execution_options(isolation_level="REPEATABLE READ")
            with conn.begin():
                yield conn

    @contextmanager
    def transaction(self) -> Iterator[Connection]:
        """Yield a connection inside a write transaction, committed on success."""
        with self._engine.connect() as conn:
            conn.execution_options(**{_WRITE: True})
            with conn.begin():
                yield conn

    def close(self) -> None:
        """Close all pooled connections."""
        self._engine.dispose()

    def __enter__(self) -> Store:
        """Use the store as a context manager that closes it on exit."""
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        """Close the store."""
        self.close()
