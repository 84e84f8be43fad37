"""The eBR database: opening, schema migrations, and read/write transactions.

The schema is made and upgraded only by Alembic (`ebr/record/migrations`, configured here
programmatically: no alembic.ini). `Store.open` upgrades an older or empty store to the
newest revision this code knows, inside one transaction that holds a lock (SQLite:
BEGIN IMMEDIATE; PostgreSQL: an advisory lock), so processes opening a fresh database
at the same time create it once. A store at a revision this code does not know (made by
a newer cellbatch) is refused.
"""

from __future__ import annotations

import functools
import os
import sqlite3
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from types import TracebackType
from typing import Any

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from alembic.util import CommandError
from sqlalchemy import Connection, Engine, create_engine, event, inspect, text
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError, SQLAlchemyError

from ebr.record.errors import StoreError
from ebr.record.schema import INITIAL_TABLE_NAMES, TABLE_NAMES, VERSION_TABLE

_WRITE = "ebr_write"
_BUSY_TIMEOUT_MS = 5000
_SQLITE_MAGIC = b"SQLite format 3\x00"
MIGRATIONS = Path(__file__).with_name("migrations")
INITIAL_REVISION = "0001"
"""The schema stores made before migrations existed already have (they are stamped)."""
_ALEMBIC = threading.Lock()
"""Alembic's `context`/`op` proxies are process-wide: one migration run at a time."""


def _sqlite_on_connect(dbapi_connection: Any, _record: Any) -> None:
    """Configure every new SQLite connection for durability and real transactions."""
    # We emit BEGIN ourselves (see _sqlite_on_begin): the sqlite3 module's legacy
    # transaction control does not begin transactions for SELECT, so reads would not
    # see one consistent snapshot.
    dbapi_connection.isolation_level = None
    cursor = dbapi_connection.cursor()
    try:
        cursor.execute(f"PRAGMA busy_timeout={_BUSY_TIMEOUT_MS}")
        _sqlite_wal(cursor)
        cursor.execute("PRAGMA synchronous=FULL")
        cursor.execute("PRAGMA foreign_keys=ON")
    finally:
        cursor.close()


def _postgresql_on_connect(dbapi_connection: Any, _record: Any) -> None:
    """Commits are durable (WAL flushed to disk) whatever the server's default says."""
    cursor = dbapi_connection.cursor()
    try:
        cursor.execute("SET synchronous_commit TO on")
    finally:
        cursor.close()
    dbapi_connection.commit()


def _sqlite_wal(cursor: Any) -> None:
    """Switch to WAL mode (persistent; a no-op once done).

    Switching needs a moment with no other connection in the file, and SQLite answers
    "database is locked" at once instead of waiting (busy_timeout does not apply), so
    processes opening a brand-new file together retry here for up to the busy timeout.
    """
    deadline = time.monotonic() + _BUSY_TIMEOUT_MS / 1000
    while True:
        try:
            mode = cursor.execute("PRAGMA journal_mode=WAL").fetchone()
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or time.monotonic() > deadline:
                raise
            time.sleep(0.01)
            continue
        if mode is not None and str(mode[0]).lower() == "wal":
            return
        raise sqlite3.OperationalError(f"cannot switch to WAL journal mode (got {mode})")


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


def alembic_config(connection: Connection | None = None) -> Config:
    """An Alembic configuration of the eBR migrations (optionally bound to `connection`)."""
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.set_main_option("version_table", VERSION_TABLE)
    if connection is not None:
        config.attributes["connection"] = connection
    return config


@functools.cache
def _scripts() -> ScriptDirectory:
    return ScriptDirectory.from_config(alembic_config())


def head_revision() -> str:
    """The newest schema revision this code knows."""
    head = _scripts().get_current_head()
    assert head is not None
    return head


def schema_revision(conn: Connection) -> str | None:
    """The store's schema revision (None when it has no version table or an empty one)."""
    heads = MigrationContext.configure(conn, opts={"version_table": VERSION_TABLE})
    current = heads.get_current_heads()
    if len(current) > 1:
        raise StoreError(f"store has several schema revisions ({', '.join(current)})")
    return current[0] if current else None


def _plan(conn: Connection, where: str, create: bool) -> str | None:
    """Decide what opening needs: None (up to date), 'create', 'adopt' or 'upgrade'."""
    revision = schema_revision(conn)
    if revision is not None:
        try:
            known = _scripts().get_revision(revision)
        except CommandError:
            known = None
        if known is None:
            raise StoreError(
                f"{where}: store schema rev {revision} is newer than this cellbatch; "
                f"upgrade cellbatch (this one knows revisions up to {head_revision()})"
            )
        return None if revision == head_revision() else "upgrade"
    present = TABLE_NAMES & set(inspect(conn).get_table_names())
    if present == INITIAL_TABLE_NAMES:
        return "adopt"  # made by create_all before migrations existed
    if present or not create:
        missing = ", ".join(sorted(TABLE_NAMES - present))
        raise StoreError(f"{where} is not an eBR database (missing tables: {missing})")
    return "create"


def _migrate(engine: Engine, where: str, create: bool) -> None:
    """Bring the store's schema to the head revision (see the module docstring)."""
    with engine.connect() as conn:
        plan = _plan(conn, where, create)
    if plan is None:
        return
    with engine.connect() as conn:
        conn.execution_options(**{_WRITE: True})  # SQLite: BEGIN IMMEDIATE, the write lock
        with conn.begin():
            if engine.dialect.name == "postgresql":
                conn.execute(
                    text("SELECT pg_advisory_xact_lock(hashtext(:key || current_schema()))"),
                    {"key": "cellbatch-ebr-migrate:"},
                )
            plan = _plan(conn, where, create)  # again, under the lock
            if plan is None:
                return
            config = alembic_config(conn)
            with _ALEMBIC:
                if plan == "adopt":
                    command.stamp(config, INITIAL_REVISION)
                command.upgrade(config, "head")


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
        created; without it a missing or foreign database raises StoreError. Either way
        an eBR store of an older schema revision is upgraded, and one of a revision this
        code does not know (a newer cellbatch) is refused with StoreError.
        """
        resolved = resolve_url(url)
        where = resolved.render_as_string(hide_password=True)
        is_sqlite = resolved.get_backend_name() == "sqlite"
        if is_sqlite:
            where = str(_sqlite_path(resolved, create))
        try:
            engine = create_engine(resolved)
        except ImportError as exc:
            hint = ""
            if resolved.get_backend_name() == "postgresql":
                hint = " (PostgreSQL support: pip install 'cellbatch[postgres]')"
            raise StoreError(f"cannot use database {where}: {exc}{hint}") from exc
        except ArgumentError as exc:
            raise StoreError(f"cannot use database {where}: {exc}") from exc
        if is_sqlite:
            event.listen(engine, "connect", _sqlite_on_connect)
            event.listen(engine, "begin", _sqlite_on_begin)
        elif engine.dialect.name == "postgresql":
            event.listen(engine, "connect", _postgresql_on_connect)
        try:
            _migrate(engine, where, create)
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
