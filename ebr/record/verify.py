"""Verification of batch records: in the database, and offline from a JSON export."""

from __future__ import annotations

import contextlib
import functools
import multiprocessing
import threading
from collections.abc import Collection, Iterator, Mapping
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, bindparam, select, union
from sqlalchemy.engine import Dialect

from ebr.record.anchors import SiteIndex, check_anchors, check_signed_head, load_index
from ebr.record.canonical import as_json_numbers, canonical_json
from ebr.record.checks import (
    BlockRow,
    ChainReport,
    ChainWalker,
    JournalRow,
    Problem,
    VerifyResult,
    assemble,
    check_blocks,
    check_chain,
    check_head,
    check_header,
)
from ebr.record.errors import UnknownBatchError
from ebr.record.gcpause import gc_paused
from ebr.record.model import SITE_CHAIN
from ebr.record.persist import Statement
from ebr.record.schema import batches, journal, sample_blocks
from ebr.record.store import Store

EXPORT_FORMAT = "cellbatch-ebr/1"

_JOURNAL_COLUMNS = (
    journal.c.seq,
    journal.c.ts,
    journal.c.kind,
    journal.c.data,
    journal.c.prev_hash,
    journal.c.hash,
)
_OF_BATCH = journal.c.batch_id == bindparam("batch_id")
_IN_STORED_ORDER = select(*_JOURNAL_COLUMNS).where(_OF_BATCH).order_by(journal.c.id)
_IN_SEQ_ORDER = select(journal.c.id, *_JOURNAL_COLUMNS).where(_OF_BATCH).order_by(journal.c.seq)
_BLOCK_ROWS = select(sample_blocks.c.block_no, sample_blocks.c.data, sample_blocks.c.sha256)
_FETCH = 4096


@functools.cache
def _journal_queries(dialect: Dialect) -> tuple[Statement, Statement]:
    """(in seq order with ids, in stored order), compiled for `dialect`'s driver."""
    return Statement.compile(_IN_SEQ_ORDER, dialect), Statement.compile(_IN_STORED_ORDER, dialect)


def _check_journal(conn: Connection, batch_id: str) -> ChainReport:
    """Walk a batch's journal in stored (insertion) order: rows that were swapped or
    re-inserted are then seen out of sequence.

    Reading in seq order is much cheaper (the unique index's order: no sort) and it is
    the stored order as long as the ids increase along it; should they not, the journal
    is read again in stored order, as it is when a problem is found (the first one in
    stored order is the one to name). The DBAPI cursor is used directly and rows are
    checked as columns, chunk by chunk (`ChainWalker`): no result-row object per entry.
    """
    by_seq, by_id = _journal_queries(conn.dialect)
    params = by_seq.values({"batch_id": batch_id})
    cursor = conn.connection.cursor()
    try:
        cursor.execute(by_seq.sql, params)
        walker = ChainWalker(batch_id)
        last_id = None
        while chunk := cursor.fetchmany(_FETCH):
            ids, *columns = zip(*chunk, strict=True)
            if (last_id is not None and not ids[0] > last_id) or list(ids) != sorted(set(ids)):
                break  # not the stored order
            last_id = ids[-1]
            if not walker.feed(tuple(columns)):
                break  # a problem: which one comes first is for the stored order to say
        else:
            return walker.finish()  # intact, and seq order was the stored order
        cursor.execute(by_id.sql, params)
        return check_chain(batch_id, cursor.fetchall())
    finally:
        cursor.close()


def verify_batch(store: Store, batch_id: str) -> VerifyResult:
    """Verify one batch from its stored columns, in one consistent snapshot.

    Raises UnknownBatchError when the database holds nothing at all for `batch_id`.
    """
    with store.snapshot() as conn:
        return verify_connection(conn, batch_id)


PARALLEL_MIN_ENTRIES = 50_000
"""Below this many journal entries in the store, one process verifies faster than several."""


@dataclass(frozen=True)
class StoreVerification:
    """The outcome of verifying a whole store."""

    results: list[VerifyResult]
    """One per batch, in batch id order."""
    processes: int
    """How many processes did the work (1: this one)."""


def verify_all(store: Store) -> list[VerifyResult]:
    """Verify every batch found in any table (a batch row may itself have been deleted)."""
    return verify_store(store).results


def verify_store(
    store: Store, *, jobs: int = 1, min_parallel_entries: int = PARALLEL_MIN_ENTRIES
) -> StoreVerification:
    """Verify every batch of the store, each in its own snapshot.

    With `jobs` > 1, a store of at least `min_parallel_entries` entries and more than one
    batch, batches are verified by up to `jobs` forked worker processes, each with its
    own connection; that happens only where `fork` exists and the calling process runs
    no other thread (a fork copies locks held by other threads).
    """
    with store.snapshot() as conn:
        found = set(
            conn.execute(
                union(
                    select(batches.c.batch_id),
                    select(journal.c.batch_id),
                    select(sample_blocks.c.batch_id),
                )
            ).scalars()
        )
        ids = sorted(found | set(load_index(conn).registered))  # deleted batches too
        sizes = {
            row.batch_id: int(row.head_seq)
            for row in conn.execute(select(batches.c.batch_id, batches.c.head_seq))
        }
    processes = min(jobs, len(ids))
    if processes > 1 and sum(sizes.values()) >= min_parallel_entries and can_fork(store):
        with contextlib.suppress(BrokenProcessPool):  # a worker died (killed, out of memory)
            return StoreVerification(_verify_in_processes(store, ids, sizes, processes), processes)
    return StoreVerification([verify_batch(store, batch_id) for batch_id in ids], 1)


def can_fork(store: Store) -> bool:
    """Whether worker processes can be forked safely and reach the same database."""
    database = store.engine.url.database
    in_memory = store.engine.dialect.name == "sqlite" and database in (None, "", ":memory:")
    return (
        not in_memory
        and "fork" in multiprocessing.get_all_start_methods()
        and threading.active_count() == 1
    )


def _verify_in_processes(
    store: Store, ids: list[str], sizes: Mapping[str, int], processes: int
) -> list[VerifyResult]:
    """Verify `ids` in forked worker processes, biggest batches first (they finish last)."""
    url = store.engine.url.render_as_string(hide_password=False)
    # The children must not inherit open connections: SQLite forbids using one across
    # fork, and a PostgreSQL socket must have one owner.
    store.engine.dispose()
    order = sorted(ids, key=lambda batch_id: -sizes.get(batch_id, 0))
    with ProcessPoolExecutor(
        max_workers=processes,
        mp_context=multiprocessing.get_context("fork"),
        initializer=_open_worker_store,
        initargs=(url,),
    ) as pool:
        found = {result.batch_id: result for result in pool.map(_verify_in_worker, order)}
    return [found[batch_id] for batch_id in ids]


_worker_store: Store | None = None
"""The store of a verify worker process (see `_verify_in_processes`)."""


def _open_worker_store(url: str) -> None:
    global _worker_store
    _worker_store = Store.open(url, create=False)


def _verify_in_worker(batch_id: str) -> VerifyResult:
    assert _worker_store is not None
    return verify_batch(_worker_store, batch_id)


def verify_connection(
    conn: Connection, batch_id: str, index: SiteIndex | None = None
) -> VerifyResult:
    """Verify one batch inside an open read transaction (see `verify_batch`).

    `index` is the site chain's keys and batch index (read here when not given).
    """
    index = load_index(conn) if index is None else index
    batch = conn.execute(select(batches).where(batches.c.batch_id == batch_id)).first()
    with gc_paused():
        report = _check_journal(conn, batch_id)
    blocks = conn.execute(
        _BLOCK_ROWS.where(sample_blocks.c.batch_id == batch_id).order_by(
            sample_blocks.c.block_no, sample_blocks.c.id
        )
    )
    blocks_checked, block_problems = check_blocks(blocks, report)
    registered = index.registered.get(batch_id)
    if batch is None:
        if report.entries == 0 and report.problem is None and blocks_checked == 0:
            if registered is None:
                raise UnknownBatchError(f"unknown batch {batch_id}")
            return VerifyResult(
                batch_id,
                0,
                0,
                (
                    Problem(
                        f"batch {batch_id}: deleted — the site chain records its creation at "
                        f"site seq {registered[0]}, the store holds none of it"
                    ),
                ),
            )
        missing = Problem("batch record: missing — the batches row was deleted")
        return assemble(batch_id, report, blocks_checked, missing, block_problems)
    record = {name: getattr(batch, name) for name in batch._fields}
    record["simulation"] = bool(record["simulation"])
    return assemble(
        batch_id,
        report,
        blocks_checked,
        check_header(report, record),
        check_head(report, int(batch.head_seq), batch.head_hash),
        check_anchors(conn, batch_id, report, index),
        index.problems if batch_id == SITE_CHAIN else None,
        block_problems,
    )


class _MalformedExport(ValueError):
    """An export entry or block that cannot even be read."""

    def __init__(self, problem: Problem) -> None:
        super().__init__(problem.message)
        self.problem = problem


def verify_export(doc: Mapping[str, Any], trusted: Collection[str] | None = None) -> VerifyResult:
    """Verify a JSON export offline: re-canonicalise every data object with RFC 8785 and
    recompute the hash chain, the head, the batch header and the sample block digests,
    and check the signed head (by one of the `trusted` public keys, hex, when given).

    The export's own "verification" section is ignored: it is a claim, not evidence.
    """
    batch = doc.get("batch") if isinstance(doc, Mapping) else None
    batch_id = batch.get("batch_id") if isinstance(batch, Mapping) else None
    if not isinstance(batch, Mapping) or not isinstance(batch_id, str):
        return _broken("?", "export: no batch section with a batch_id")
    if doc.get("format") != EXPORT_FORMAT:
        return _broken(batch_id, f"export: format is {doc.get('format')!r}, not {EXPORT_FORMAT!r}")
    journal_doc, blocks_doc = doc.get("journal"), doc.get("sample_blocks")
    if not isinstance(journal_doc, list) or not isinstance(blocks_doc, list):
        return _broken(batch_id, "export: journal or sample_blocks is missing")

    rows: list[JournalRow] = []
    malformed: Problem | None = None
    try:
        rows.extend(_journal_rows(journal_doc))
    except _MalformedExport as exc:
        malformed = exc.problem
    report = check_chain(batch_id, rows)
    if report.problem is None and malformed is not None:
        report.problem = malformed

    try:
        block_rows = list(_block_rows(blocks_doc))
    except _MalformedExport as exc:
        return assemble(batch_id, report, 0, exc.problem)
    blocks_checked, block_problems = check_blocks(block_rows, report)
    head_seq, head_hash = batch.get("head_seq"), batch.get("head_hash")
    if not isinstance(head_seq, int) or not isinstance(head_hash, str):
        head: Problem | None = Problem("export: the batch head is missing")
    else:
        head = check_head(report, head_seq, head_hash)
    return assemble(
        batch_id,
        report,
        blocks_checked,
        check_header(report, batch),
        head,
        block_problems,
        _check_flat_samples(doc.get("samples"), blocks_doc),
        check_signed_head(doc.get("signed_head"), head_seq, head_hash, trusted),
    )


def _broken(batch_id: str, message: str) -> VerifyResult:
    return VerifyResult(batch_id, 0, 0, (Problem(message),))


def _journal_rows(entries: list[Any]) -> Iterator[JournalRow]:
    """Turn exported entries into stored-form rows, re-canonicalising each data object."""
    for index, entry in enumerate(entries):
        where = f"journal entry {index + 1}"
        if not isinstance(entry, Mapping):
            raise _MalformedExport(Problem(f"{where}: not an object", seq=index + 1))
        seq = entry.get("seq")
        if isinstance(seq, int) and not isinstance(seq, bool):
            where = f"journal entry seq {seq}"
        else:
            raise _MalformedExport(Problem(f"{where}: seq is not an integer", seq=index + 1))
        ts, kind, prev_hash, digest = (
            entry.get(name) for name in ("ts", "kind", "prev_hash", "hash")
        )
        if (
            not isinstance(ts, str)
            or not isinstance(kind, str)
            or not isinstance(prev_hash, str)
            or not isinstance(digest, str)
            or "data" not in entry
        ):
            raise _MalformedExport(Problem(f"{where}: missing or malformed fields", seq=seq))
        try:
            data = canonical_json(as_json_numbers(entry["data"]))
        except ValueError as exc:
            raise _MalformedExport(Problem(f"{where}: data {exc}", seq=seq)) from exc
        yield seq, ts, kind, data, prev_hash, digest


def _block_rows(blocks: list[Any]) -> Iterator[BlockRow]:
    """Turn exported sample blocks into stored-form rows (canonical `{"rows": ...}` text)."""
    for index, block in enumerate(blocks):
        if not isinstance(block, Mapping):
            raise _MalformedExport(Problem(f"sample block entry {index + 1}: not an object"))
        block_no, digest = block.get("block_no"), block.get("sha256")
        if not isinstance(block_no, int) or not isinstance(digest, str):
            raise _MalformedExport(Problem(f"sample block entry {index + 1}: malformed"))
        try:
            data = canonical_json({"rows": as_json_numbers(block.get("rows"))})
        except ValueError as exc:
            raise _MalformedExport(
                Problem(f"sample block {block_no}: rows {exc}", block_no=block_no)
            ) from exc
        yield block_no, data, digest


def _check_flat_samples(samples: Any, blocks: list[Any]) -> Problem | None:
    """Check that the convenience list `samples` is exactly the blocks' rows, flattened."""
    names = ("tag", "time", "value", "unit", "quality")
    expected = [
        dict(zip(names, row, strict=False)) for block in blocks for row in block.get("rows") or []
    ]
    if samples == expected:
        return None
    if not isinstance(samples, list):
        return Problem("samples: missing from the export")
    for index, (got, want) in enumerate(zip(samples, expected, strict=False)):
        if got != want:
            return Problem(
                f"samples: item {index + 1} differs from the sample blocks (the export was edited)"
            )
    return Problem(
        f"samples: {len(samples)} items but the sample blocks hold {len(expected)} "
        "(the export was edited)"
    )
