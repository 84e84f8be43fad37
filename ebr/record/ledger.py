"""Appending to a chain from short-lived processes: one locked, synchronous transaction.

The `Journal` is the controller's writer: it keeps each open batch's head in memory
and group-commits. People act on a record outside the controller too — QA signs off
exceptions and releases a finished batch, an admin adds a user — from a command
that runs for a moment. `append_entries` serves them: in ONE transaction it locks the
chain's head (SQLite: the write lock of BEGIN IMMEDIATE; PostgreSQL: SELECT … FOR
UPDATE on the batches row), reads the tip, chains the new entries exactly as the
journal does (same hash rule, same strictly increasing stamps, a `clock.stepped_back`
entry when the wall clock is behind the tip) and moves the head. Two such writers on
one chain therefore serialise instead of forking it.

Do not use it on a batch a running controller has open: the controller's in-memory
head would then be stale and its next commit refused (JournalStateError), which is
why QA actions are allowed on ended batches only (see ebr.review.release).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from sqlalchemy import Connection, insert, select, update

from ebr.record.canonical import canonical_object
from ebr.record.chain import GENESIS_HASH, Link, chain_step, clock_step_back
from ebr.record.clock import Clock, parse_ts, utc_now
from ebr.record.errors import JournalStateError, UnknownBatchError
from ebr.record.model import BATCH_CREATED, CLOCK_STEPPED_BACK, HEADER_KEY, BatchHeader, Entry
from ebr.record.schema import batches, journal
from ebr.record.store import Store
from ebr.record.validation import check_batch_id, check_kind

Append = tuple[str, Mapping[str, Any]]
"""One entry to append: (kind, data)."""


def append_entries(
    store: Store, batch_id: str, items: Sequence[Append], *, clock: Clock = utc_now
) -> list[Entry]:
    """Append `items` to the chain of `batch_id` atomically; return the recorded entries.

    Raises UnknownBatchError for an unknown chain and JournalStateError when the chain's
    stored tip does not match its head (verify the record first).
    """
    check_batch_id(batch_id)
    staged = [(check_kind(kind), *canonical_object(dict(data))) for kind, data in items]
    with store.transaction() as conn:
        tip = _locked_tip(conn, store, batch_id)
        if tip is None:
            raise UnknownBatchError(f"unknown batch {batch_id}")
        return _chain(conn, batch_id, tip, staged, clock())


def create_chain(
    store: Store, header: BatchHeader, data: Mapping[str, Any], *, clock: Clock = utc_now
) -> Entry | None:
    """Create a chain with its `batch.created` entry unless it exists; return that entry.

    Returns None when the chain already exists (so concurrent creators are harmless).
    """
    check_batch_id(header.batch_id)
    text, parsed = canonical_object({**data, HEADER_KEY: header.to_dict()})
    with store.transaction() as conn:
        if _locked_tip(conn, store, header.batch_id) is not None:
            return None
        step = chain_step(header.batch_id, None, clock(), BATCH_CREATED, text)
        ts, digest = step.ts, step.hash
        conn.execute(
            insert(batches).values(**header.to_dict(), created_at=ts, head_seq=1, head_hash=digest)
        )
        conn.execute(
            insert(journal).values(
                batch_id=header.batch_id,
                seq=1,
                ts=ts,
                kind=BATCH_CREATED,
                data=text,
                prev_hash=GENESIS_HASH,
                hash=digest,
            )
        )
        return Entry(header.batch_id, 1, ts, BATCH_CREATED, parsed, GENESIS_HASH, digest)


class _Tip:
    __slots__ = ("hash", "seq", "ts")

    def __init__(self, seq: int, digest: str, ts: str) -> None:
        self.seq = seq
        self.hash = digest
        self.ts = ts


def _locked_tip(conn: Connection, store: Store, batch_id: str) -> _Tip | None:
    query = select(batches.c.head_seq, batches.c.head_hash).where(batches.c.batch_id == batch_id)
    if store.engine.dialect.name == "postgresql":
        query = query.with_for_update()
    head = conn.execute(query).first()
    if head is None:
        return None
    last = conn.execute(
        select(journal.c.seq, journal.c.hash, journal.c.ts)
        .where(journal.c.batch_id == batch_id)
        .order_by(journal.c.seq.desc())
        .limit(1)
    ).first()
    if last is None or last.seq != head.head_seq or last.hash != head.head_hash:
        raise JournalStateError(
            f"batch {batch_id}: the journal does not end at the batch head "
            f"(seq {head.head_seq}); verify the record before appending to it"
        )
    return _Tip(int(last.seq), str(last.hash), str(last.ts))


def _chain(
    conn: Connection,
    batch_id: str,
    tip: _Tip,
    staged: list[tuple[str, str, dict[str, Any]]],
    now: Any,
) -> list[Entry]:
    link = Link(tip.seq, tip.hash, parse_ts(tip.ts))
    # The ledger knows only the stored chain: its last stamp stands for the last wall clock.
    stepped_back = clock_step_back(now, link.stamp, link.stamp)
    if stepped_back is not None:
        staged = [(CLOCK_STEPPED_BACK, *canonical_object(stepped_back)), *staged]
    rows: list[dict[str, Any]] = []
    entries: list[Entry] = []
    for kind, text, parsed in staged:
        step = chain_step(batch_id, link, now, kind, text)
        seq, ts, prev_hash, digest = step.seq, step.ts, step.prev_hash, step.hash
        link = step.link
        rows.append(
            {
                "batch_id": batch_id,
                "seq": seq,
                "ts": ts,
                "kind": kind,
                "data": text,
                "prev_hash": prev_hash,
                "hash": digest,
            }
        )
        entries.append(Entry(batch_id, seq, ts, kind, parsed, prev_hash, digest))
    if not rows:
        return []
    conn.execute(insert(journal), rows)
    moved = conn.execute(
        update(batches)
        .where(
            batches.c.batch_id == batch_id,
            batches.c.head_seq == tip.seq,
            batches.c.head_hash == tip.hash,
        )
        .values(head_seq=link.seq, head_hash=link.hash)
    )
    if moved.rowcount != 1:
        raise JournalStateError(f"batch {batch_id}: another writer moved the head")
    return entries
