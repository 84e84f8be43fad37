"""The journal's database work: one group-commit transaction, and reading a batch's tip.

Called on the journal's worker thread; nothing here touches the event loop.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import bindparam, func, insert, select, update

from ebr.canonical import parse_json
from ebr.errors import JournalStateError, UnknownBatchError
from ebr.model import Entry
from ebr.schema import batches, journal, sample_blocks
from ebr.store import Store

_ADVANCE_HEAD = (
    update(batches)
    .where(
        batches.c.batch_id == bindparam("b_id"),
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
    entries: list[dict[str, Any]]
    blocks: list[dict[str, Any]]
    moves: list[HeadMove]


def write_group(store: Store, group: Group) -> None:
    """Insert the group's rows and advance the batch heads in ONE transaction.

    A head that is not where this writer last left it (another writer, or an edit)
    raises JournalStateError and nothing of the group is written.
    """
    with store.transaction() as conn:
        if group.new_batches:
            conn.execute(insert(batches), group.new_batches)
        conn.execute(insert(journal), group.entries)
        if group.blocks:
            conn.execute(insert(sample_blocks), group.blocks)
        for move in group.moves:
            result = conn.execute(
                _ADVANCE_HEAD,
                {
                    "b_id": move.batch_id,
                    "old_seq": move.old_seq,
                    "old_hash": move.old_hash,
                    "new_seq": move.new_seq,
                    "new_hash": move.new_hash,
                },
            )
            if result.rowcount != 1:
                raise JournalStateError(
                    f"batch {move.batch_id}: the stored head is no longer seq "
                    f"{move.old_seq}; another writer changed this batch"
                )


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
