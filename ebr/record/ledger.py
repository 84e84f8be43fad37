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
from ebr.record.chain import GENESIS_HASH, clock_step_back, entry_hash, step
from ebr.record.clock import Clock, format_ts, parse_ts, utc_now
from ebr.record.errors import JournalStateError, UnknownBatchError
from ebr.record.kinds import Kind
from ebr.record.model import (
    BATCH_CREATED,
    CLOCK_STEPPED_BACK,
    HEADER_KEY,
    SITE_CHAIN,
    BatchHeader,
    Entry,
)
from ebr.record.schema import batches, checkpoints, journal
from ebr.record.signing import Checkpoint, Signer, configured_signer
from ebr.record.store import Store
from ebr.record.validation import check_batch_id, check_kind
from ebr.record.witness import witness_configured

Append = tuple[str, Mapping[str, Any]]
"""One entry to append: (kind, data)."""


def append_entries(
    store: Store,
    batch_id: str,
    items: Sequence[Append],
    *,
    clock: Clock = utc_now,
    signer: Signer | None = None,
) -> list[Entry]:
    """Append `items` to the chain of `batch_id` atomically; return the recorded entries.

    With a signer (`signer`, else the one `$CELLBATCH_SIGNING_KEY` names) the new head is
    signed in the same transaction, and a batch's new head is also sealed on the site
    chain (`batch.sealed`): QA appends to ended batches, so that is their final head.
    Raises UnknownBatchError for an unknown chain and JournalStateError when the chain's
    stored tip does not match its head (verify the record first).
    """
    check_batch_id(batch_id)
    signer = signer or configured_signer()
    staged = [(check_kind(kind), *canonical_object(dict(data))) for kind, data in items]
    with store.transaction() as conn:
        tip = _locked_tip(conn, store, batch_id)
        if tip is None:
            raise UnknownBatchError(f"unknown batch {batch_id}")
        now = clock()
        entries = _chain(conn, batch_id, tip, staged, now)
        signed: list[Checkpoint] = []
        if signer is not None and entries:
            head = entries[-1]
            signed.append(signer.checkpoint(batch_id, head.seq, head.hash))
            if batch_id != SITE_CHAIN:
                seal = _seal_data(signed[0])
                signed.append(_site_append(conn, store, signer, [(Kind.BATCH_SEALED, seal)], now))
            conn.execute(insert(checkpoints), [c.to_dict() for c in signed])
    witness_configured(signed)
    return entries


def append_site(
    store: Store, items: Sequence[Append], *, clock: Clock = utc_now, signer: Signer | None = None
) -> list[Entry]:
    """Append `items` to the site chain, starting that chain if the store has none yet."""
    try:
        return append_entries(store, SITE_CHAIN, items, clock=clock, signer=signer)
    except UnknownBatchError:  # the store's first site entry: start the site chain
        ensure_site_chain(store, clock, signer=signer)
        return append_entries(store, SITE_CHAIN, items, clock=clock, signer=signer)


def ensure_site_chain(
    store: Store, clock: Clock = utc_now, *, signer: Signer | None = None
) -> None:
    """Create the site audit chain if this store has none yet."""
    header = BatchHeader(SITE_CHAIN, "cellbatch.site", "1", "", "", "", False)
    create_chain(store, header, {"purpose": "site audit trail"}, clock=clock, signer=signer)


def register_batch(store: Store, first: Entry, signer: Signer) -> None:
    """Record a new batch in the site chain's batch index (`batch.registered`)."""
    data = {"batch_id": first.batch_id, "first_hash": first.hash}
    append_site(store, [(Kind.BATCH_REGISTERED, data)], signer=signer)


def seal_batch(store: Store, checkpoint: Checkpoint, signer: Signer) -> None:
    """Record a batch's signed final head on the site chain (`batch.sealed`)."""
    append_site(store, [(Kind.BATCH_SEALED, _seal_data(checkpoint))], signer=signer)


def _seal_data(checkpoint: Checkpoint) -> dict[str, Any]:
    return {
        "batch_id": checkpoint.batch_id,
        "head_seq": checkpoint.seq,
        "head_hash": checkpoint.hash,
        "key_id": checkpoint.key_id,
        "signature": checkpoint.signature,
    }


def _site_append(
    conn: Connection, store: Store, signer: Signer, items: Sequence[Append], now: Any
) -> Checkpoint:
    """Inside a transaction: append to the existing site chain and sign its new head."""
    tip = _locked_tip(conn, store, SITE_CHAIN)
    if tip is None:
        tip = _create_site(conn, now)
    staged = [(kind, *canonical_object(dict(data))) for kind, data in items]
    entries = _chain(conn, SITE_CHAIN, tip, staged, now)
    return signer.checkpoint(SITE_CHAIN, entries[-1].seq, entries[-1].hash)


def _create_site(conn: Connection, now: Any) -> _Tip:
    header = BatchHeader(SITE_CHAIN, "cellbatch.site", "1", "", "", "", False)
    first = _insert_first(conn, header, {"purpose": "site audit trail"}, now)
    return _Tip(first.seq, first.hash, first.ts)


def create_chain(
    store: Store,
    header: BatchHeader,
    data: Mapping[str, Any],
    *,
    clock: Clock = utc_now,
    signer: Signer | None = None,
) -> Entry | None:
    """Create a chain with its `batch.created` entry unless it exists; return that entry.

    Returns None when the chain already exists (so concurrent creators are harmless).
    With a signer its head is signed (and a batch is registered on the site chain).
    """
    check_batch_id(header.batch_id)
    signer = signer or configured_signer()
    with store.transaction() as conn:
        if _locked_tip(conn, store, header.batch_id) is not None:
            return None
        now = clock()
        first = _insert_first(conn, header, data, now)
        signed: list[Checkpoint] = []
        if signer is not None:
            signed.append(signer.checkpoint(first.batch_id, first.seq, first.hash))
            if first.batch_id != SITE_CHAIN:
                registered = {"batch_id": first.batch_id, "first_hash": first.hash}
                items = [(Kind.BATCH_REGISTERED, registered)]
                signed.append(_site_append(conn, store, signer, items, now))
            conn.execute(insert(checkpoints), [c.to_dict() for c in signed])
    witness_configured(signed)
    return first


def _insert_first(
    conn: Connection, header: BatchHeader, data: Mapping[str, Any], now: Any
) -> Entry:
    text, parsed = canonical_object({**data, HEADER_KEY: header.to_dict()})
    ts = format_ts(now)
    digest = entry_hash(GENESIS_HASH, header.batch_id, 1, ts, BATCH_CREATED, text)
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
    previous = parse_ts(tip.ts)
    # The ledger knows only the stored chain: its last stamp stands for the last wall clock.
    stepped = clock_step_back(now, previous, previous)
    if stepped is not None:
        staged = [(CLOCK_STEPPED_BACK, *canonical_object(stepped)), *staged]
    rows: list[dict[str, Any]] = []
    entries: list[Entry] = []
    seq, prev_hash = tip.seq, tip.hash
    now_text = format_ts(now)
    for kind, text, parsed in staged:
        seq, previous, ts, digest = step(
            batch_id, seq, prev_hash, previous, now, now_text, kind, text
        )
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
        prev_hash = digest
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
        .values(head_seq=seq, head_hash=prev_hash)
    )
    if moved.rowcount != 1:
        raise JournalStateError(f"batch {batch_id}: another writer moved the head")
    return entries
