"""The journal writer: hash-chained, append-only entries with durable group commit.

Every public method must be called from the event loop thread that ran `start()`.
The chain (seq, ts, prev_hash, hash) of each entry is computed at the moment it is
queued, on that thread, so entries of one batch are chained in exactly the order in
which they were submitted. One writer task then commits everything queued in ONE
fsync'd transaction on a dedicated worker thread, and resolves each caller's future
only after that commit. If a commit fails, nothing of the group is recorded, every
waiter of the group (and every later queued entry of the same batches, which was
chained onto it) gets the error, and the in-memory heads return to the last
committed state.
"""

from __future__ import annotations

import asyncio
import contextlib
import queue
import threading
import time
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from types import TracebackType
from typing import Any, TypeVar

from ebr.record.canonical import canonical_object
from ebr.record.chain import GENESIS_HASH, clock_step_back, step
from ebr.record.clock import Clock, format_ts, parse_ts, utc_now
from ebr.record.errors import (
    DuplicateBatchError,
    FencedError,
    JournalClosedError,
    JournalCommitError,
    JournalOverloadedError,
    JournalStateError,
    UnknownBatchError,
)
from ebr.record.ledger import register_batch, seal_batch
from ebr.record.model import (
    BATCH_CREATED,
    CLOCK_STEPPED_BACK,
    HEADER_KEY,
    RESERVED_KINDS,
    SAMPLES_BLOCK,
    BatchHeader,
    Entry,
    SampleRow,
)
from ebr.record.persist import EntryRow, Group, GroupWriter, HeadMove, batch_exists, load_tip
from ebr.record.samples import EncodedBlock, encode_block
from ebr.record.signing import Signer, configured_signer
from ebr.record.store import Store
from ebr.record.validation import check_batch_id, check_kind, check_label

_T = TypeVar("_T")


@dataclass(frozen=True, slots=True)
class JournalStats:
    """Counters of the writer since `start()`."""

    commits: int = 0
    entries: int = 0
    failed_commits: int = 0
    largest_group: int = 0


@dataclass(slots=True)
class _Head:
    """The tip of one batch's chain (never changed once made: a new head replaces it)."""

    seq: int
    hash: str
    ts: datetime  # stamp of the last entry
    wall: datetime  # wall-clock reading when the last entry was made
    block_no: int


@dataclass(slots=True)
class _Pending:
    """One chained entry waiting for its commit."""

    entry: Entry
    row: EntryRow  # the journal row to insert
    head: _Head
    future: asyncio.Future[Entry] | None
    batch_row: dict[str, Any] | None = None
    block_row: dict[str, Any] | None = None


_Done = Callable[[Any, BaseException | None], None]
"""Called on the event loop thread with (result, None) or (None, error) when a job ends."""


class _Worker:
    """The journal's one dedicated thread: runs blocking jobs in order, reports on the loop.

    Lighter than an executor plus wrapped futures: one queue put to hand a job over and
    one `call_soon_threadsafe` to hand the outcome back, which is most of what a group
    commit costs besides the database itself.
    """

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        """Start the thread; `loop` is where outcomes are reported."""
        self._loop = loop
        self._jobs: queue.SimpleQueue[tuple[Callable[..., Any], tuple[Any, ...], _Done] | None]
        self._jobs = queue.SimpleQueue()
        # A daemon: a loop that dies without stop() must not hang interpreter exit; a
        # commit cut off there was never acknowledged.
        self._thread = threading.Thread(target=self._serve, name="ebr-journal", daemon=True)
        self._thread.start()

    def submit(self, fn: Callable[..., Any], args: tuple[Any, ...], done: _Done) -> None:
        """Queue `fn(*args)`; `done` gets its outcome on the loop thread."""
        self._jobs.put((fn, args, done))

    async def run(self, fn: Callable[..., _T], *args: Any) -> _T:
        """Run `fn(*args)` on the thread and return its result."""
        future: asyncio.Future[_T] = self._loop.create_future()

        def done(result: Any, error: BaseException | None) -> None:
            if future.cancelled():
                return
            if error is not None:
                future.set_exception(error)
            else:
                future.set_result(result)

        self.submit(fn, args, done)
        return await future

    def close(self) -> None:
        """Finish the queued jobs, then end the thread (blocks until it has)."""
        self._jobs.put(None)
        self._thread.join()

    def _serve(self) -> None:
        while (job := self._jobs.get()) is not None:
            fn, args, done = job
            result: Any = None
            error: BaseException | None = None
            try:
                result = fn(*args)
            except BaseException as exc:  # reported to the caller, whatever it is
                error = exc
            with contextlib.suppress(RuntimeError):  # a closed loop: nobody is waiting
                self._loop.call_soon_threadsafe(done, result, error)


class Journal:
    """Append-only, hash-chained batch journal with group commit (see module docstring)."""

    def __init__(
        self,
        store: Store,
        *,
        clock: Clock = utc_now,
        max_group: int = 500,
        max_delay: float = 0.0,
        max_pending: int = 100_000,
        signer: Signer | None = None,
        max_outage_s: float = 3600.0,
    ) -> None:
        """Prepare a journal on `store`; nothing runs until `start()`.

        `clock` returns aware wall-clock datetimes (injectable for tests). A commit takes at
        most `max_group` entries. With `max_delay` > 0 the writer waits up to that many
        seconds for more entries before committing a group that is not full; with 0 (the
        default) the group is whatever queued while the previous commit was under way,
        which groups well under load and adds no latency when idle. At most
        `max_pending` entries may wait: `append` then waits for room, `append_nowait`
        refuses. With a `signer` (default: the key `$CELLBATCH_SIGNING_KEY` names, if
        set) every commit signs the heads it moves, new batches are registered on the
        site chain and `seal_batch` records a batch's final head there.
        """
        if max_group < 1 or max_pending < 1 or max_delay < 0:
            raise ValueError("max_group and max_pending must be ≥ 1 and max_delay ≥ 0")
        self._store = store
        self._signer = signer or configured_signer()
        self._max_outage_s = max_outage_s
        self._storage_problem: str | None = None
        self._storage_problem_since: datetime | None = None
        self._clock = clock
        self._max_group = max_group
        self._max_delay = max_delay
        self._max_pending = max_pending
        self._heads: dict[str, _Head] = {}
        self._committed: dict[str, _Head] = {}
        self._queue: deque[_Pending] = deque()
        self._in_flight: set[str] = set()
        self._kinds: set[str] = set()  # entry kinds already checked and accepted
        self._fences: dict[str, tuple[tuple[str, int], ...]] = {}
        self._writer: GroupWriter | None = None
        self._stats = JournalStats()
        self._task: asyncio.Task[None] | None = None
        self._worker: _Worker | None = None
        self._after_cancel: asyncio.Future[None] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._wakeup = asyncio.Event()
        self._full = asyncio.Event()
        self._room = asyncio.Event()
        self._closing = False

    # -- lifecycle -------------------------------------------------------------------

    async def start(self) -> None:
        """Start the writer task on the running event loop."""
        if self._task is not None:
            raise JournalClosedError("journal already started")
        self._loop = asyncio.get_running_loop()
        self._wakeup = asyncio.Event()
        self._full = asyncio.Event()
        self._room = asyncio.Event()
        self._writer = GroupWriter(self._store, self._signer)
        self._worker = _Worker(self._loop)
        self._closing = False
        self._stats = JournalStats()
        self._task = asyncio.create_task(self._run(), name="ebr-journal-writer")

    async def stop(self) -> None:
        """Refuse new entries, commit everything already queued, then stop the writer."""
        task = self._task
        if task is None:
            return
        self._closing = True
        self._wakeup.set()
        try:
            await task
        finally:
            self._task = None
            if self._worker is not None:
                if self._writer is not None:  # closed on the thread that used it
                    self._worker.submit(self._writer.close, (), lambda *_: None)
                self._worker.close()
                self._worker = None
            self._writer = None

    async def __aenter__(self) -> Journal:
        """Start the journal."""
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        """Stop the journal, committing everything queued."""
        await self.stop()

    @property
    def running(self) -> bool:
        """Whether the journal accepts entries."""
        return self._task is not None and not self._closing

    @property
    def stats(self) -> JournalStats:
        """Commit counters since `start()` (transactions, entries, failures, largest group)."""
        return self._stats

    @property
    def pending(self) -> int:
        """Entries queued and not yet committed."""
        return len(self._queue)

    def fence(self, batch_id: str, leases: Sequence[tuple[str, int]]) -> None:
        """Commit entries of `batch_id` only while these (unit, token) leases are current
        (ebr.record.leases); an empty sequence removes the fence."""
        if leases:
            self._fences[batch_id] = tuple(leases)
        else:
            self._fences.pop(batch_id, None)

    def is_open(self, batch_id: str) -> bool:
        """Whether `batch_id` can be appended to through this journal."""
        return batch_id in self._heads

    # -- batches ---------------------------------------------------------------------

    async def open_batch(
        self,
        batch_id: str,
        *,
        recipe_name: str,
        recipe_version: str,
        recipe_hash: str,
        product: str,
        coi: str,
        simulation: bool,
        data: Mapping[str, Any],
    ) -> Entry:
        """Create a batch and record its first entry, `batch.created`; return that entry.

        The entry's data is `data` plus the batch header under the key "header", so the
        identity of the batch (recipe, product, chain of identity) is hash-protected too.
        Raises DuplicateBatchError when the batch id exists: ids are never reused.
        """
        self._check_running()
        check_batch_id(batch_id)
        for name, value in (
            ("recipe_name", recipe_name),
            ("recipe_version", recipe_version),
            ("recipe_hash", recipe_hash),
            ("product", product),
            ("coi", coi),
        ):
            check_label(name, value)
        if not isinstance(simulation, bool):
            raise TypeError("simulation must be a bool")
        if HEADER_KEY in data:
            raise ValueError(
                f"data of batch.created must not contain the reserved key {HEADER_KEY!r}"
            )
        header = BatchHeader(
            batch_id, recipe_name, recipe_version, recipe_hash, product, coi, simulation
        )
        text, parsed = canonical_object({**data, HEADER_KEY: header.to_dict()})
        self._refuse_duplicate(batch_id)
        if await self._in_thread(batch_exists, self._store, batch_id):
            raise DuplicateBatchError(
                f"batch {batch_id} already exists; batch ids are never reused "
                "(use resume_batch to continue it)"
            )
        self._refuse_duplicate(batch_id)
        await self._wait_for_room()
        self._check_running()
        self._refuse_duplicate(batch_id)
        future = self._loop_future()
        self._stage(batch_id, BATCH_CREATED, text, parsed, future, header=header)
        entry = await future
        if self._signer is not None:
            await self._in_thread(register_batch, self._store, entry, self._signer)
        return entry

    async def seal_batch(self, batch_id: str) -> Entry | None:
        """Record the batch's signed final head on the site chain (`batch.sealed`).

        Waits until every queued entry of the batch is committed; returns the sealed
        head entry's identity (None without a signer: nothing to seal with).
        """
        self._check_running()
        self._check_open(batch_id)
        for _ in range(100_000):  # bounded: commits finish or fail
            if batch_id not in self._in_flight and not any(
                pending.entry.batch_id == batch_id for pending in self._queue
            ):
                break
            await asyncio.sleep(0.001)
        else:
            raise JournalStateError(f"batch {batch_id}: entries still waiting to be committed")
        signer = self._signer
        if signer is None:
            return None
        head = self._committed[batch_id]
        checkpoint = signer.checkpoint(batch_id, head.seq, head.hash)
        await self._in_thread(seal_batch, self._store, checkpoint, signer)
        last, _block = await self._in_thread(load_tip, self._store, batch_id)
        return last

    async def resume_batch(self, batch_id: str) -> Entry:
        """Continue an existing batch (e.g. after a restart); return its last entry.

        Loads the chain tip from the database and checks that the journal really ends
        where the batch head says (run `verify_batch` first for a full check). On a batch
        already open here it reloads the head, which is the way to resynchronise after a
        commit whose outcome was unknown; that is refused while entries of the batch
        wait to be committed.
        """
        self._check_running()
        check_batch_id(batch_id)
        self._refuse_busy(batch_id)
        last, block_no = await self._in_thread(load_tip, self._store, batch_id)
        self._refuse_busy(batch_id)
        stamp = parse_ts(last.ts)
        head = _Head(last.seq, last.hash, stamp, stamp, block_no)
        self._heads[batch_id] = head
        self._committed[batch_id] = head
        return last

    def _refuse_busy(self, batch_id: str) -> None:
        if batch_id in self._in_flight or any(
            pending.entry.batch_id == batch_id for pending in self._queue
        ):
            raise JournalStateError(f"batch {batch_id} has entries waiting to be committed")

    # -- appending -------------------------------------------------------------------

    async def append(self, batch_id: str, kind: str, data: Mapping[str, Any]) -> Entry:
        """Record one entry; return it once it is durably committed."""
        if len(self._queue) >= self._max_pending:
            await self._wait_for_room()
        return await self.append_nowait(batch_id, kind, data)

    async def append_chained(
        self, batch_id: str, kind: str, data: Mapping[str, Any]
    ) -> tuple[Entry, asyncio.Future[Entry]]:
        """Queue one entry and return it as chained (seq, ts, hash: final, but not yet
        committed) with the future that resolves after its commit.

        For a caller that may act before the commit is acknowledged (the holding logic
        while the store cannot commit): the entry is in the chain's order in memory and
        is committed in that order once the store commits again, or fails with every
        later entry of its batch.
        """
        if len(self._queue) >= self._max_pending:
            await self._wait_for_room()
        future = self.append_nowait(batch_id, kind, data)
        pending = self._queue[-1]  # nothing ran in between: the entry just queued
        assert pending.future is future
        return pending.entry, future

    def append_nowait(
        self, batch_id: str, kind: str, data: Mapping[str, Any]
    ) -> asyncio.Future[Entry]:
        """Queue one entry now; the returned future resolves after its commit.

        Invalid input raises here, before anything is queued. Cancelling the future
        does not withdraw the entry: it is already part of the chain.
        """
        # The hot path: checks and chaining inline, the general `_stage` only when needed.
        if self._task is None or self._closing:
            self._check_running()
        if kind not in self._kinds:
            self._check_kind(kind)
        head = self._heads.get(batch_id)
        if head is None:
            self._check_open(batch_id)
        if len(self._queue) >= self._max_pending:
            raise JournalOverloadedError(
                f"{len(self._queue)} entries are waiting to be committed; entry refused"
            )
        if type(data) is not dict:
            if not isinstance(data, Mapping):
                raise TypeError(f"entry data must be a mapping, not {type(data).__name__}")
            data = dict(data)
        text, parsed = canonical_object(data)  # a detached copy: no need to copy `data` first
        assert self._loop is not None and head is not None
        future = self._loop.create_future()
        now = self._clock()
        now_text = format_ts(now)  # validates the clock's value before anything is queued
        if now < head.wall:
            self._stage(batch_id, kind, text, parsed, future)  # journals the clock step
        else:
            self._push(batch_id, head, kind, text, parsed, now, now_text, future)
        return future

    async def append_samples(self, batch_id: str, rows: Sequence[SampleRow]) -> Entry:
        """Store a block of samples and journal its digest (`samples.block`) in one commit.

        Returns the `samples.block` entry, whose data is
        `{block_no, count, tags, first, last, sha256}`.
        """
        self._check_running()
        self._check_open(batch_id)
        # CPU work, so off the loop; not on the writer thread, which must stay free to commit.
        block = await asyncio.to_thread(encode_block, list(rows))
        await self._wait_for_room()
        self._check_running()
        self._check_open(batch_id)
        future = self._loop_future()
        self._stage(batch_id, SAMPLES_BLOCK, "", {}, future, block=block)
        return await future

    # -- chaining (event loop thread) ------------------------------------------------

    def _stage(
        self,
        batch_id: str,
        kind: str,
        text: str,
        data: dict[str, Any],
        future: asyncio.Future[Entry],
        *,
        header: BatchHeader | None = None,
        block: EncodedBlock | None = None,
    ) -> None:
        """Chain one entry (after a `clock.stepped_back` entry if needed) and queue it."""
        head = self._heads.get(batch_id)
        now = self._clock()
        now_text = format_ts(now)  # validates the clock's value before anything is queued
        stepped = None if head is None else clock_step_back(now, head.wall, head.ts)
        if head is not None and stepped is not None:
            # The wall clock went backwards since this batch's last entry: say so in the
            # record, because the stamps now run ahead of the wall clock for a while.
            step_text, step_data = canonical_object(stepped)
            head = self._push(
                batch_id, head, CLOCK_STEPPED_BACK, step_text, step_data, now, now_text
            )
        block_row: dict[str, Any] | None = None
        if block is not None:
            assert head is not None
            block_no = head.block_no + 1
            text, data = canonical_object(block.summary(block_no))
            head = replace(head, block_no=block_no)
            block_row = {
                "batch_id": batch_id,
                "block_no": block_no,
                "data": block.data,
                "sha256": block.sha256,
            }
        batch_row: dict[str, Any] | None = None
        if header is not None:
            batch_row = {
                **header.to_dict(),
                "created_at": "",  # set to the entry's ts when it is stamped
                "head_seq": 0,
                "head_hash": GENESIS_HASH,
            }
        self._push(batch_id, head, kind, text, data, now, now_text, future, batch_row, block_row)

    def _push(
        self,
        batch_id: str,
        head: _Head | None,
        kind: str,
        text: str,
        data: dict[str, Any],
        now: datetime,
        now_text: str,
        future: asyncio.Future[Entry] | None = None,
        batch_row: dict[str, Any] | None = None,
        block_row: dict[str, Any] | None = None,
    ) -> _Head:
        """Stamp and chain one entry (seq, ts, prev_hash, hash), queue it, move the head."""
        if head is None:
            prev_seq, prev_hash, prev_stamp, block_no = 0, GENESIS_HASH, None, 0
        else:
            prev_seq, prev_hash, prev_stamp, block_no = head.seq, head.hash, head.ts, head.block_no
        seq, stamp, ts, digest = step(
            batch_id, prev_seq, prev_hash, prev_stamp, now, now_text, kind, text
        )
        if batch_row is not None:
            batch_row["created_at"] = ts
        new_head = _Head(seq, digest, stamp, now, block_no)
        self._queue.append(
            _Pending(
                Entry(batch_id, seq, ts, kind, data, prev_hash, digest),
                (batch_id, seq, ts, kind, text, prev_hash, digest),
                new_head,
                future,
                batch_row,
                block_row,
            )
        )
        self._heads[batch_id] = new_head
        if not self._wakeup.is_set():
            self._wakeup.set()
        if len(self._queue) >= self._max_group:
            self._full.set()
        return new_head

    # -- writer task -----------------------------------------------------------------

    async def _run(self) -> None:
        """Commit queued entries group by group until stopped and drained."""
        try:
            while True:
                while not self._queue and not self._closing:
                    self._wakeup.clear()
                    await self._wakeup.wait()
                if not self._queue:
                    return
                if self._max_delay and len(self._queue) < self._max_group and not self._closing:
                    self._full.clear()
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(self._full.wait(), self._max_delay)
                size = min(len(self._queue), self._max_group)
                group = [self._queue.popleft() for _ in range(size)]
                self._full.clear()
                self._room.set()
                await self._commit(group)
        finally:
            leftovers = list(self._queue)
            self._queue.clear()
            self._heads = dict(self._committed)
            self._room.set()
            error = JournalClosedError("journal writer stopped before the entry was committed")
            for pending in leftovers:
                if pending.future is not None and not pending.future.done():
                    pending.future.set_exception(error)

    async def _commit(self, group: list[_Pending]) -> None:
        """Write one group in the worker thread and settle its waiters.

        A group refused because some of its batches lost their unit leases to another
        process (FencedError) fails those batches' entries only: the rest of the group
        is committed again without them (batches whose leases are still ours)."""
        assert self._loop is not None
        self._in_flight = {pending.entry.batch_id for pending in group}
        rest: list[_Pending] = []
        try:
            assert self._worker is not None
            try:
                rows = self._rows(group)
            except Exception as exc:
                self._settle(group, exc)
                return
            # Set on the loop by _finish, which settles the group's waiters first.
            finished: asyncio.Future[None] = self._loop.create_future()

            def finish(_result: Any, error: BaseException | None) -> None:
                lost = set(error.batch_ids) if isinstance(error, FencedError) else set()
                fenced = [p for p in group if p.entry.batch_id in lost]
                if fenced:  # the others again: a group that shrinks each time, so it ends
                    rest.extend(p for p in group if p.entry.batch_id not in lost)
                    self._settle(fenced, error)
                else:
                    self._settle(group, error)
                if not finished.done():
                    finished.set_result(None)
                if self._after_cancel is not None and not self._after_cancel.done():
                    self._after_cancel.set_result(None)

            self._worker.submit(self._write, (rows,), finish)
            try:
                await finished
            except asyncio.CancelledError:
                if finished.cancelled():
                    # The transaction is already under way: wait until `finish` has told
                    # the waiters its outcome.
                    self._after_cancel = self._loop.create_future()
                    await self._after_cancel
                if rest:
                    stopped = JournalClosedError("journal writer stopped before the commit")
                    self._settle(rest, stopped)
                raise
        finally:
            self._in_flight = set()
            self._after_cancel = None
        if rest:
            await self._commit(rest)

    def _rows(self, group: list[_Pending]) -> Group:
        """Return the rows of one commit, with each batch's expected and new head."""
        tips: dict[str, _Head] = {}
        new_batches = []
        blocks = []
        for pending in group:
            tips[pending.entry.batch_id] = pending.head
            if pending.batch_row is not None:
                new_batches.append(pending.batch_row)
            if pending.block_row is not None:
                blocks.append(pending.block_row)
        moves = []
        for batch_id, tip in tips.items():
            old = self._committed.get(batch_id)
            moves.append(
                HeadMove(
                    batch_id,
                    old.seq if old else 0,
                    old.hash if old else GENESIS_HASH,
                    tip.seq,
                    tip.hash,
                )
            )
        fences = [
            (batch_id, unit, token)
            for batch_id in tips
            for unit, token in self._fences.get(batch_id, ())
        ]
        return Group(new_batches, [pending.row for pending in group], blocks, moves, fences)

    def _settle(self, group: list[_Pending], error: BaseException | None) -> None:
        """Resolve the group's futures after a commit, or fail them and roll heads back."""
        stats = self._stats
        if error is None:
            committed = self._committed
            for pending in group:
                committed[pending.entry.batch_id] = pending.head
                future = pending.future
                if future is not None and not future.done():
                    future.set_result(pending.entry)
            self._stats = JournalStats(
                stats.commits + 1,
                stats.entries + len(group),
                stats.failed_commits,
                max(stats.largest_group, len(group)),
            )
            return
        self._stats = replace(stats, failed_commits=stats.failed_commits + 1)
        affected = {pending.entry.batch_id for pending in group}
        failure = JournalCommitError(
            f"journal commit of {len(group)} entries failed, nothing of it was recorded: {error}"
        )
        failure.__cause__ = error
        doomed = list(group)
        kept: deque[_Pending] = deque()
        for pending in self._queue:
            (doomed if pending.entry.batch_id in affected else kept).append(pending)
        self._queue = kept
        for batch_id in affected:
            committed_head = self._committed.get(batch_id)
            if committed_head is None:
                self._heads.pop(batch_id, None)
            else:
                self._heads[batch_id] = committed_head
        for pending in doomed:
            if pending.future is not None and not pending.future.done():
                pending.future.set_exception(failure)
                if isinstance(error, FencedError):
                    # Its batch was taken over: the caller may be gone (cancelled by its
                    # controller letting go), and nothing is left to do with the refusal.
                    pending.future.exception()

    def _write(self, group: Group) -> None:
        """Commit one group (runs on the worker thread).

        While the store cannot commit for a reason that passes (disk full, I/O error,
        read-only, locked, connection lost: `storage_outage`) the same group is retried,
        backing off up to 5 s, for at most `max_outage_s`: its callers (and every later
        entry) wait, so nothing acknowledged is lost and no action whose intent is not
        recorded goes ahead; `storage_problem` says why meanwhile. Stopping the journal
        ends the wait (the group then fails as any failed commit does).
        """
        assert self._writer is not None
        started = time.monotonic()
        delay = 0.05
        while True:
            try:
                self._writer.write(group)
            except Exception as exc:
                why = storage_outage(exc)
                if why is None or self._closing or time.monotonic() - started > self._max_outage_s:
                    raise
                if self._storage_problem_since is None:
                    self._storage_problem_since = utc_now()
                self._storage_problem = why
                time.sleep(delay)
                delay = min(5.0, delay * 2)
                continue
            self._storage_problem = None
            self._storage_problem_since = None
            return

    @property
    def storage_problem(self) -> str | None:
        """Why the store cannot commit right now (entries wait), or None."""
        return self._storage_problem

    @property
    def storage_problem_since(self) -> datetime | None:
        """When (UTC) the first commit of the current outage failed, or None."""
        return self._storage_problem_since if self._storage_problem is not None else None

    # -- helpers ---------------------------------------------------------------------

    async def _in_thread(self, fn: Callable[..., _T], *args: Any) -> _T:
        """Run blocking work on the journal's worker thread."""
        assert self._worker is not None
        return await self._worker.run(fn, *args)

    async def _wait_for_room(self) -> None:
        """Wait while `max_pending` entries are queued."""
        while len(self._queue) >= self._max_pending and self.running:
            self._room.clear()
            await self._room.wait()

    def _loop_future(self) -> asyncio.Future[Entry]:
        assert self._loop is not None
        return self._loop.create_future()

    def _check_running(self) -> None:
        if not self.running:
            raise JournalClosedError("journal is not running (call start() first)")

    def _check_kind(self, kind: str) -> None:
        """Refuse an invalid or reserved kind; remember a good one (kinds repeat)."""
        check_kind(kind)
        if kind in RESERVED_KINDS:
            raise ValueError(f"entry kind {kind!r} is written by the journal itself")
        if len(self._kinds) < 4096:
            self._kinds.add(kind)

    def _check_open(self, batch_id: str) -> None:
        if batch_id not in self._heads:
            raise UnknownBatchError(
                f"batch {batch_id} is not open in this journal (open_batch or resume_batch)"
            )

    def _refuse_duplicate(self, batch_id: str) -> None:
        if batch_id in self._heads:
            raise DuplicateBatchError(f"batch {batch_id} already exists")


_OUTAGES = (
    "database or disk is full",
    "disk i/o error",
    "readonly database",
    "database is locked",
    "unable to open database file",
)


def storage_outage(error: BaseException) -> str | None:
    """Why a failed commit may succeed later (disk full, I/O error, read-only store,
    lost connection), or None for an error that retrying cannot cure."""
    for exc in (error, getattr(error, "orig", None), error.__cause__):
        if exc is None or type(exc).__name__ != "OperationalError":
            continue
        text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        if type(exc).__module__.startswith("psycopg") or any(
            marker in text.lower() for marker in _OUTAGES
        ):
            return f"the store cannot commit: {text}"
    return None
