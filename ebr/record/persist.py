"""The journal's database work: group-commit transactions, and reading a batch's tip.

Called on the journal's worker thread; nothing here touches the event loop.
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import bindparam, func, insert, select, update
from sqlalchemy.engine import Dialect
from sqlalchemy.pool import PoolProxiedConnection
from sqlalchemy.sql import ClauseElement
from sqlalchemy.sql.compiler import SQLCompiler

from ebr.record.canonical import parse_json
from ebr.record.errors import FencedError, JournalStateError, StoreError, UnknownBatchError
from ebr.record.model import Entry
from ebr.record.schema import batches, checkpoints, journal, sample_blocks, unit_leases
from ebr.record.signing import Signer
from ebr.record.store import Store

ENTRY_COLUMNS = ("batch_id", "seq", "ts", "kind", "data", "prev_hash", "hash")
"""Order of the values of a journal row as `GroupWriter.write` takes it."""

EntryRow = tuple[str, int, str, str, str, str, str]
"""One journal row, values in `ENTRY_COLUMNS` order."""

_BATCH_COLUMNS = tuple(column.name for column in batches.columns)
_BLOCK_COLUMNS = tuple(column.name for column in sample_blocks.columns if column.name != "id")
_CHECKPOINT_COLUMNS = ("batch_id", "seq", "hash", "key_id", "signature")

_ADVANCE_HEAD = (
    update(batches)
    .where(
        batches.c.batch_id == bindparam("batch_id"),
        batches.c.head_seq == bindparam("old_seq"),
        batches.c.head_hash == bindparam("old_hash"),
    )
    .values(head_seq=bindparam("new_seq"), head_hash=bindparam("new_hash"))
)


@dataclass(frozen=True, slots=True)
class HeadMove:
    """How one commit moves a batch head: the stored tip it expects, and the new tip."""

    batch_id: str
    old_seq: int
    old_hash: str
    new_seq: int
    new_hash: str


@dataclass(frozen=True, slots=True)
class Group:
    """The rows of one group commit, in insertion order."""

    new_batches: list[dict[str, Any]]
    entries: list[EntryRow]
    blocks: list[dict[str, Any]]
    moves: list[HeadMove]
    fences: list[tuple[str, str, int]] = field(default_factory=list)
    """(batch ID, unit, token) of the leases the group's batches hold: checked first."""


@dataclass(frozen=True, slots=True)
class Statement:
    """A Core statement compiled once to its driver's SQL, with positional parameters."""

    sql: str
    order: tuple[str, ...]
    """Parameter names in placeholder order."""

    @classmethod
    def compile(
        cls, statement: ClauseElement, dialect: Dialect, keys: Sequence[str] | None = None
    ) -> Statement:
        """Compile `statement` (an INSERT of the columns `keys`, or any statement)."""
        compiled = statement.compile(
            dialect=_positional(dialect),
            column_keys=None if keys is None else list(keys),
            for_executemany=keys is not None,
        )
        assert isinstance(compiled, SQLCompiler)
        return cls(compiled.string, tuple(compiled.positiontup or ()))

    def values(self, params: Mapping[str, Any]) -> tuple[Any, ...]:
        """The parameter values in placeholder order."""
        return tuple(params[key] for key in self.order)


@functools.cache
def _positional(dialect: Dialect) -> Dialect:
    """`dialect`, or a copy of it that renders positional placeholders."""
    if dialect.positional:
        return dialect
    if dialect.paramstyle == "pyformat":  # psycopg: %(name)s → %s
        return type(dialect)(paramstyle="format")  # type: ignore[call-arg]
    raise StoreError(f"database driver {dialect.driver}: unsupported parameter style")


class GroupWriter:
    """Writes group commits of one journal (see `write`), on one thread only.

    The hot path runs Core statements compiled once for the database's driver on the
    DBAPI connection of a pooled SQLAlchemy connection the writer keeps: BEGIN
    (`BEGIN IMMEDIATE` on SQLite, as `Store.transaction` does), one executemany for the
    group's entries, one conditional update per batch head, with a `signer` one signed
    checkpoint per batch head (ebr.record.signing), COMMIT.
    """

    def __init__(self, store: Store, signer: Signer | None = None) -> None:
        """Compile the statements for `store`'s database; connect on the first write."""
        self._signer = signer
        self._engine = store.engine
        self._sqlite = self._engine.dialect.name == "sqlite"
        dialect = self._engine.dialect
        self._insert_entries = Statement.compile(insert(journal), dialect, ENTRY_COLUMNS)
        if self._insert_entries.order != ENTRY_COLUMNS:
            raise StoreError(f"unexpected journal insert order {self._insert_entries.order}")
        self._insert_batches = Statement.compile(insert(batches), dialect, _BATCH_COLUMNS)
        self._insert_blocks = Statement.compile(insert(sample_blocks), dialect, _BLOCK_COLUMNS)
        self._advance_head = Statement.compile(_ADVANCE_HEAD, dialect)
        token = select(unit_leases.c.token).where(unit_leases.c.unit == bindparam("unit"))
        if not self._sqlite:
            # PostgreSQL: FOR SHARE holds the lease row until COMMIT, so a takeover (its
            # SELECT … FOR UPDATE in `leases.acquire`) waits for this commit, or this
            # check waits for the takeover and reads its new token: never both.
            token = token.with_for_update(read=True)
        self._lease_token = Statement.compile(token, dialect)
        self._insert_checkpoints = Statement.compile(
            insert(checkpoints), dialect, _CHECKPOINT_COLUMNS
        )
        self._conn: PoolProxiedConnection | None = None

    def write(self, group: Group) -> None:
        """Insert the group's rows and advance the batch heads in ONE transaction.

        A head that is not where this writer last left it (another writer, or an edit)
        raises JournalStateError and nothing of the group is written. After any failure
        the connection is dropped (it may be broken) and the next write opens a new one.
        """
        conn = self._conn
        if conn is None:
            conn = self._conn = self._engine.raw_connection()
        try:
            cursor = conn.cursor()
            try:
                if self._sqlite:
                    # The write lock up front; the pool's connections are in autocommit
                    # mode (see ebr.record.store), psycopg begins by itself.
                    cursor.execute("BEGIN IMMEDIATE")
                self._check_fences(cursor, group.fences)
                if group.new_batches:
                    cursor.executemany(
                        self._insert_batches.sql, _ordered(self._insert_batches, group.new_batches)
                    )
                cursor.executemany(self._insert_entries.sql, group.entries)
                if group.blocks:
                    cursor.executemany(
                        self._insert_blocks.sql, _ordered(self._insert_blocks, group.blocks)
                    )
                advance = self._advance_head
                for move in group.moves:
                    values = {
                        "batch_id": move.batch_id,
                        "old_seq": move.old_seq,
                        "old_hash": move.old_hash,
                        "new_seq": move.new_seq,
                        "new_hash": move.new_hash,
                    }
                    cursor.execute(advance.sql, advance.values(values))
                    if cursor.rowcount != 1:
                        raise JournalStateError(
                            f"batch {move.batch_id}: the stored head is no longer seq "
                            f"{move.old_seq}; another writer changed this batch"
                        )
                if self._signer is not None:
                    sign = self._signer.checkpoint
                    signed = [
                        sign(m.batch_id, m.new_seq, m.new_hash).to_dict() for m in group.moves
                    ]
                    cursor.executemany(
                        self._insert_checkpoints.sql, _ordered(self._insert_checkpoints, signed)
                    )
            finally:
                cursor.close()
            conn.commit()
        except BaseException:
            self._discard()
            raise

    def _check_fences(self, cursor: Any, fences: list[tuple[str, str, int]]) -> None:
        """Raise FencedError naming every batch whose lease token is no longer current."""
        stale: dict[str, str] = {}
        for batch_id, unit, token in fences:
            cursor.execute(self._lease_token.sql, self._lease_token.values({"unit": unit}))
            found = cursor.fetchone()
            if (found is None or int(found[0]) != token) and batch_id not in stale:
                stale[batch_id] = (
                    f"unit {unit}: this process's lease (token {token}) was taken over; "
                    f"it no longer controls the unit and records nothing for it ({batch_id})"
                )
        if stale:
            raise FencedError("; ".join(stale.values()), frozenset(stale))

    def _discard(self) -> None:
        """Roll back and drop the connection after a failure (it may be broken)."""
        conn, self._conn = self._conn, None
        if conn is None:
            return
        with contextlib.suppress(Exception):  # a broken connection: invalidated below
            conn.rollback()
        conn.invalidate()

    def close(self) -> None:
        """Give the connection back to the pool; idempotent."""
        conn, self._conn = self._conn, None
        if conn is not None:
            conn.close()


def _ordered(statement: Statement, rows: list[dict[str, Any]]) -> list[tuple[Any, ...]]:
    return [statement.values(row) for row in rows]


def batch_exists(store: Store, batch_id: str) -> bool:
    """Whether a batches row with this id exists."""
    with store.snapshot() as conn:
        query = select(batches.c.batch_id).where(batches.c.batch_id == batch_id)
        return conn.execute(query).first() is not None


def load_tip(store: Store, batch_id: str) -> tuple[Entry, int]:
    """Return the last journal entry and the last sample block number of a batch.

    Raises UnknownBatchError for an unknown batch, and JournalStateError when the
    journal does not end exactly at the batch head.
    """
    with store.snapshot() as conn:
        head = conn.execute(
            select(batches.c.head_seq, batches.c.head_hash).where(batches.c.batch_id == batch_id)
        ).first()
        if head is None:
            raise UnknownBatchError(f"unknown batch {batch_id}")
        last = conn.execute(
            select(
                journal.c.seq,
                journal.c.ts,
                journal.c.kind,
                journal.c.data,
                journal.c.prev_hash,
                journal.c.hash,
            )
            .where(journal.c.batch_id == batch_id)
            .order_by(journal.c.seq.desc())
            .limit(1)
        ).first()
        block_no = conn.execute(
            select(func.coalesce(func.max(sample_blocks.c.block_no), 0)).where(
                sample_blocks.c.batch_id == batch_id
            )
        ).scalar_one()
    if last is None or last.seq != head.head_seq or last.hash != head.head_hash:
        found = "no entries" if last is None else f"seq {last.seq}"
        raise JournalStateError(
            f"batch {batch_id}: journal ends at {found} but the batch head records seq "
            f"{head.head_seq}; verify the batch before continuing it"
        )
    data: dict[str, Any] = parse_json(last.data)
    entry = Entry(batch_id, last.seq, last.ts, last.kind, data, last.prev_hash, last.hash)
    return entry, int(block_no)
