"""The journal writer: chaining, group commit, durability, time, failure handling."""

from __future__ import annotations

import asyncio
import sqlite3
import threading
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from ebr import (
    GENESIS_HASH,
    DuplicateBatchError,
    Journal,
    JournalClosedError,
    JournalCommitError,
    JournalOverloadedError,
    JournalStateError,
    Store,
    UnknownBatchError,
    entry_hash,
    read_batch,
    read_journal,
    read_samples,
    verify_batch,
)
from ebr.record.canonical import canonical_json
from ebr.record.ledger import append_entries
from ebr.record.persist import Group, GroupWriter
from tests.ebr.conftest import T0, FakeClock, OpenBatch, sample_rows


async def test_open_append_and_read_back(
    journal: Journal, store: Store, open_batch: OpenBatch
) -> None:
    created = await open_batch(journal, "B-001")
    assert (created.seq, created.kind, created.prev_hash) == (1, "batch.created", GENESIS_HASH)
    assert created.data["operator"] == "a.smith"
    assert created.data["header"]["coi"] == "COI-2026-000123"

    state = await journal.append("B-001", "batch.state", {"from": "Idle", "to": "Running"})
    result = await journal.append("B-001", "write.result", {"tag": "P-1.SP", "value": 12.5})
    assert (state.seq, result.seq) == (2, 3)
    assert state.prev_hash == created.hash and result.prev_hash == state.hash
    assert result.hash == entry_hash(
        state.hash, "B-001", 3, result.ts, "write.result", canonical_json(result.data)
    )

    entries = read_journal(store, "B-001")
    assert entries == [created, state, result]
    record = read_batch(store, "B-001")
    assert (record.head_seq, record.head_hash) == (3, result.hash)
    assert record.created_at == created.ts
    assert record.header.product == "CAR-T (anti-CD19)"
    assert record.header.simulation is False


async def test_entry_data_is_detached_and_canonical(
    journal: Journal, open_batch: OpenBatch
) -> None:
    await open_batch(journal)
    data: dict[str, Any] = {"b": [1.0, (2, 3)], "a": {"z": None}}
    entry = await journal.append("B-001", "operator.comment", data)
    data["b"].append("later")
    assert entry.data == {"a": {"z": None}, "b": [1, [2, 3]]}


async def test_group_commit_groups_concurrent_appends(
    journal: Journal, store: Store, open_batch: OpenBatch, monkeypatch: pytest.MonkeyPatch
) -> None:
    await open_batch(journal)
    commits = 0
    threads: set[str] = set()
    write = GroupWriter.write

    def counting_write(self: GroupWriter, group: Group) -> None:
        nonlocal commits
        write(self, group)  # one transaction per call
        commits += 1
        threads.add(threading.current_thread().name)

    monkeypatch.setattr(GroupWriter, "write", counting_write)
    before = journal.stats
    entries = await asyncio.gather(
        *(journal.append("B-001", "element.state", {"n": n}) for n in range(300))
    )
    monkeypatch.undo()

    assert [e.seq for e in entries] == list(range(2, 302))
    transactions = journal.stats.commits - before.commits
    assert transactions == commits
    assert transactions <= 3, f"300 concurrent appends took {transactions} transactions"
    assert threads and all(name.startswith("ebr-journal") for name in threads)  # not the loop's
    assert verify_batch(store, "B-001").ok


async def test_group_size_is_capped(store: Store, open_batch: OpenBatch) -> None:
    async with Journal(store, max_group=50) as journal:
        await open_batch(journal)
        await asyncio.gather(*(journal.append("B-001", "tick", {"n": n}) for n in range(200)))
        assert journal.stats.largest_group == 50
        assert journal.stats.commits >= 5


async def test_max_delay_window_collects_a_group(store: Store, open_batch: OpenBatch) -> None:
    async with Journal(store, max_delay=0.25) as journal:
        await open_batch(journal)
        first = journal.append_nowait("B-001", "tick", {"n": 0})
        await asyncio.sleep(0.01)  # arrives inside the window of the first entry
        second = journal.append_nowait("B-001", "tick", {"n": 1})
        await asyncio.gather(first, second)
        assert journal.stats.commits == 2  # open_batch, then both ticks together


async def test_concurrent_appenders_to_one_batch_chain_in_submission_order(
    journal: Journal, store: Store, open_batch: OpenBatch
) -> None:
    await open_batch(journal)

    async def worker(name: str) -> list[int]:
        seqs = []
        for n in range(50):
            entry = await journal.append("B-001", "element.state", {"w": name, "n": n})
            seqs.append(entry.seq)
        return seqs

    results = await asyncio.gather(*(worker(f"w{i}") for i in range(8)))
    for seqs in results:
        assert seqs == sorted(seqs)
    entries = read_journal(store, "B-001")
    assert [e.seq for e in entries] == list(range(1, 402))
    assert verify_batch(store, "B-001").ok


async def test_acknowledged_entry_is_on_disk(
    journal: Journal, db_path: Path, open_batch: OpenBatch
) -> None:
    await open_batch(journal)
    entry = await journal.append("B-001", "write.intent", {"tag": "P-1.SP", "value": 3.5})
    # A fresh engine, and the plain sqlite3 module, see it while the writer still runs.
    with Store.open(db_path, create=False) as fresh:
        assert read_journal(fresh, "B-001")[-1] == entry
    conn = sqlite3.connect(db_path)
    try:
        row = conn.execute(
            "SELECT hash FROM journal WHERE batch_id = ? AND seq = ?", ("B-001", entry.seq)
        ).fetchone()
    finally:
        conn.close()
    assert row == (entry.hash,)


async def test_append_nowait_and_stop_flush_everything(store: Store, open_batch: OpenBatch) -> None:
    journal = Journal(store)
    await journal.start()
    await open_batch(journal)
    futures = [journal.append_nowait("B-001", "tick", {"n": n}) for n in range(120)]
    await journal.stop()
    assert all(f.done() and f.exception() is None for f in futures)
    assert futures[-1].result().seq == 121
    assert len(read_journal(store, "B-001")) == 121
    with pytest.raises(JournalClosedError):
        await journal.append("B-001", "tick", {})


async def test_wall_clock_stepping_back_still_increases_ts(
    store: Store, open_batch: OpenBatch
) -> None:
    clock = FakeClock()
    async with Journal(store, clock=clock) as journal:
        await open_batch(journal)
        clock.advance(seconds=1)
        await journal.append("B-001", "tick", {"n": 1})
        clock.advance(seconds=-30)  # NTP step back
        stepped = await journal.append("B-001", "tick", {"n": 2})
        clock.advance(seconds=1)  # still behind the last record
        await journal.append("B-001", "tick", {"n": 3})
        clock.advance(seconds=60)  # caught up
        await journal.append("B-001", "tick", {"n": 4})
        clock.advance(seconds=-1)  # a second, separate step back
        await journal.append("B-001", "tick", {"n": 5})

    entries = read_journal(store, "B-001")
    stamps = [e.ts for e in entries]
    assert stamps == sorted(stamps) and len(set(stamps)) == len(stamps)
    kinds = [e.kind for e in entries]
    assert kinds.count("clock.stepped_back") == 2
    step = entries[kinds.index("clock.stepped_back")]
    assert step.seq == stepped.seq - 1
    assert step.data["stepped_back_us"] == 30_000_000
    assert step.data["last_recorded"] == "2026-03-01T08:00:01.000000Z"
    assert step.ts == "2026-03-01T08:00:01.000001Z"
    assert stepped.ts == "2026-03-01T08:00:01.000002Z"


async def test_the_ledger_records_a_clock_step_back_like_the_journal(
    store: Store, open_batch: OpenBatch
) -> None:
    """One chain step: the journal and the site ledger stamp, hash and record a step back
    alike (same payload fields), and the ledger's chain verifies."""
    clock = FakeClock()
    async with Journal(store, clock=clock) as journal:
        await open_batch(journal)
        clock.advance(seconds=1)
        await journal.append("B-001", "tick", {"n": 1})
        clock.advance(seconds=-30)
        await journal.append("B-001", "tick", {"n": 2})
    clock.advance(seconds=-30)  # the ledger writes later, still behind the chain's last stamp
    written = append_entries(store, "B-001", [("tick", {"n": 3})], clock=clock)
    entries = read_journal(store, "B-001")
    steps = [e for e in entries if e.kind == "clock.stepped_back"]
    assert len(steps) == 2
    assert set(steps[0].data) == set(steps[1].data)
    assert [e.kind for e in written] == ["clock.stepped_back", "tick"]
    assert steps[1].seq == written[-1].seq - 1
    assert steps[1].data["stepped_back_us"] > 0
    assert written[-1].ts > steps[1].ts > steps[0].ts
    assert verify_batch(store, "B-001").ok
    assert verify_batch(store, "B-001").ok


async def test_same_microsecond_entries_get_distinct_stamps(
    store: Store, open_batch: OpenBatch
) -> None:
    async with Journal(store, clock=FakeClock()) as journal:
        await open_batch(journal)
        entries = await asyncio.gather(*(journal.append("B-001", "tick", {}) for _ in range(3)))
    assert [e.ts[-7:] for e in entries] == ["000001Z", "000002Z", "000003Z"]
    assert all(e.kind == "tick" for e in read_journal(store, "B-001")[1:])


async def test_naive_clock_is_refused_before_anything_is_queued(
    store: Store, open_batch: OpenBatch
) -> None:
    clock = FakeClock()
    async with Journal(store, clock=clock) as journal:
        await open_batch(journal)
        clock.now = datetime(2026, 3, 1, 9, 0)
        with pytest.raises(ValueError, match="naive"):
            await journal.append("B-001", "tick", {})
        assert journal.pending == 0
        clock.now = T0 + timedelta(hours=1)
        assert (await journal.append("B-001", "tick", {})).seq == 2


def _fail_kind(db_path: Path, kind: str) -> None:
    """Make the database itself reject inserts of one entry kind (an injected fault)."""
    conn = sqlite3.connect(db_path)
    try:
        conn.execute(
            "CREATE TRIGGER inject_fault BEFORE INSERT ON journal "
            f"WHEN NEW.kind = '{kind}' BEGIN SELECT RAISE(ABORT, 'injected fault'); END"
        )
        conn.commit()
    finally:
        conn.close()


async def test_commit_failure_fails_waiters_and_rolls_heads_back(
    store: Store, db_path: Path, open_batch: OpenBatch
) -> None:
    async with Journal(store, max_group=2) as journal:
        await open_batch(journal, "B-001")
        await open_batch(journal, "B-002")
        _fail_kind(db_path, "test.fail")
        results = await asyncio.gather(
            journal.append("B-001", "tick", {"n": 1}),  # group 1, with the fault
            journal.append("B-001", "test.fail", {}),  # group 1
            journal.append("B-001", "tick", {"n": 2}),  # queued, chained on group 1
            journal.append("B-002", "tick", {"n": 1}),  # other batch: unaffected
            return_exceptions=True,
        )
        assert all(isinstance(r, JournalCommitError) for r in results[:3])
        assert "injected fault" in str(results[0])
        assert not isinstance(results[3], BaseException) and results[3].seq == 2
        assert journal.stats.failed_commits == 1

        again = await journal.append("B-001", "tick", {"n": 3})
        assert again.seq == 2  # the head was rolled back to the last committed entry

    entries = read_journal(store, "B-001")
    assert [(e.seq, e.kind) for e in entries] == [(1, "batch.created"), (2, "tick")]
    assert entries[1].data == {"n": 3}
    assert verify_batch(store, "B-001").ok and verify_batch(store, "B-002").ok


async def test_failed_open_batch_can_be_retried(
    store: Store, db_path: Path, open_batch: OpenBatch
) -> None:
    async with Journal(store) as journal:
        _fail_kind(db_path, "batch.created")
        with pytest.raises(JournalCommitError):
            await open_batch(journal, "B-001")
        assert not journal.is_open("B-001")
        sqlite3.connect(db_path).execute("DROP TRIGGER inject_fault").connection.commit()
        assert (await open_batch(journal, "B-001")).seq == 1
    assert verify_batch(store, "B-001").ok


async def test_duplicate_batch_is_refused(
    journal: Journal, store: Store, open_batch: OpenBatch
) -> None:
    await open_batch(journal, "B-001")
    with pytest.raises(DuplicateBatchError, match="B-001"):
        await open_batch(journal, "B-001")
    second = Journal(store)
    await second.start()
    try:
        with pytest.raises(DuplicateBatchError, match="never reused"):
            await open_batch(second, "B-001")
    finally:
        await second.stop()


async def test_invalid_input_is_refused_and_nothing_is_queued(
    journal: Journal, open_batch: OpenBatch
) -> None:
    await open_batch(journal)
    bad: list[tuple[str, str, Any, type[Exception]]] = [
        ("B-001", "Bad Kind", {}, ValueError),
        ("B-001", "batch.created", {}, ValueError),
        ("B-001", "samples.block", {}, ValueError),
        ("B-001", "tick", {"x": float("nan")}, ValueError),
        ("B-001", "tick", {"x": 2**60}, ValueError),
        ("B-001", "tick", {1: "non-string key"}, ValueError),
        ("B-001", "tick", {"when": datetime.now()}, ValueError),
        ("B-001", "tick", ["not", "a", "dict"], TypeError),
        ("B-404", "tick", {}, UnknownBatchError),
    ]
    for batch_id, kind, data, error in bad:
        with pytest.raises(error):
            journal.append_nowait(batch_id, kind, data)
    assert journal.pending == 0
    assert (await journal.append("B-001", "tick", {})).seq == 2


@pytest.mark.parametrize("batch_id", ["", "B\n1", " B-1", "x" * 129])
async def test_invalid_batch_ids_are_refused(
    journal: Journal, open_batch: OpenBatch, batch_id: str
) -> None:
    with pytest.raises(ValueError):
        await open_batch(journal, batch_id)


async def test_reserved_header_key_is_refused(journal: Journal, open_batch: OpenBatch) -> None:
    with pytest.raises(ValueError, match="header"):
        await open_batch(journal, data={"header": "mine"})


async def test_samples_are_stored_and_journaled_together(
    journal: Journal, store: Store, open_batch: OpenBatch
) -> None:
    await open_batch(journal)
    rows = [
        *sample_rows(T0, 3),
        ("PH-1.PV", T0 + timedelta(seconds=5), None, "pH", "bad"),
    ]
    entry = await journal.append_samples("B-001", rows)
    assert entry.kind == "samples.block"
    assert entry.data["block_no"] == 1 and entry.data["count"] == 4
    assert entry.data["tags"] == ["PH-1.PV", "TIC-101.PV"]
    assert entry.data["first"] == "2026-03-01T08:00:00.000000Z"
    assert entry.data["last"] == "2026-03-01T08:00:05.000000Z"
    second = await journal.append_samples("B-001", sample_rows(T0, 2, tag="DO-1.PV"))
    assert second.data["block_no"] == 2

    samples = read_samples(store, "B-001")
    assert [(s.tag, s.time, s.value, s.quality) for s in samples[:4]] == [
        ("TIC-101.PV", "2026-03-01T08:00:00.000000Z", 37, "good"),
        ("TIC-101.PV", "2026-03-01T08:00:01.000000Z", 37.1, "good"),
        ("TIC-101.PV", "2026-03-01T08:00:02.000000Z", 37.2, "good"),
        ("PH-1.PV", "2026-03-01T08:00:05.000000Z", None, "bad"),
    ]
    assert samples[0].timestamp == T0
    assert len(samples) == 6
    assert verify_batch(store, "B-001").blocks_checked == 2


@pytest.mark.parametrize(
    "rows",
    [
        [],
        [("T", datetime(2026, 1, 1), 1.0, "u", "good")],
        [("T", T0, float("inf"), "u", "good")],
        [("T", T0, True, "u", "good")],
        [("", T0, 1.0, "u", "good")],
        [("T", T0, 1.0, "u")],
    ],
)
async def test_invalid_samples_are_refused(
    journal: Journal, open_batch: OpenBatch, rows: list[Any]
) -> None:
    await open_batch(journal)
    with pytest.raises(ValueError):
        await journal.append_samples("B-001", rows)
    assert journal.pending == 0


async def test_resume_batch_continues_the_chain(
    store: Store, store_url: str, open_batch: OpenBatch
) -> None:
    async with Journal(store) as first:
        await open_batch(first)
        await first.append_samples("B-001", sample_rows(T0, 2))
        last = await first.append("B-001", "tick", {"n": 1})

    with Store.open(store_url, create=False) as reopened:
        async with Journal(reopened) as second:
            with pytest.raises(UnknownBatchError):
                await second.append("B-001", "tick", {})
            assert await second.resume_batch("B-001") == last
            assert await second.resume_batch("B-001") == last  # reload: nothing pending
            waiting = second.append_nowait("B-001", "tick", {"n": 2})
            with pytest.raises(JournalStateError, match="waiting to be committed"):
                await second.resume_batch("B-001")
            nxt = await waiting
            block = await second.append_samples("B-001", sample_rows(T0, 1))
            with pytest.raises(UnknownBatchError):
                await second.resume_batch("B-404")
        assert nxt.seq == last.seq + 1 and nxt.prev_hash == last.hash
        assert block.data["block_no"] == 2
        assert verify_batch(reopened, "B-001").ok


async def test_resume_refuses_a_journal_that_does_not_end_at_the_head(
    populated: tuple[Store, Path, str, int], shell: Any
) -> None:
    store, _path, batch_id, last_seq = populated
    shell("DELETE FROM journal WHERE batch_id = ? AND seq = ?", batch_id, last_seq)
    async with Journal(store) as journal:
        with pytest.raises(JournalStateError, match=f"seq {last_seq - 1}"):
            await journal.resume_batch(batch_id)


async def test_a_second_writer_cannot_fork_the_chain(
    store: Store, store_url: str, open_batch: OpenBatch
) -> None:
    async with Journal(store) as first:
        await open_batch(first)
    with Store.open(store_url) as other_store:
        async with Journal(store) as a, Journal(other_store) as b:
            await a.resume_batch("B-001")
            await b.resume_batch("B-001")
            await a.append("B-001", "tick", {"writer": "a"})
            with pytest.raises(JournalCommitError):
                await b.append("B-001", "tick", {"writer": "b"})
    assert verify_batch(store, "B-001").ok
    assert [e.data.get("writer") for e in read_journal(store, "B-001")[1:]] == ["a"]


async def test_start_twice_and_use_before_start_are_refused(store: Store) -> None:
    journal = Journal(store)
    with pytest.raises(JournalClosedError):
        journal.append_nowait("B-001", "tick", {})
    await journal.start()
    try:
        with pytest.raises(JournalClosedError):
            await journal.start()
    finally:
        await journal.stop()
    await journal.stop()  # stopping twice is harmless


async def test_cancelled_waiter_does_not_withdraw_its_entry(
    store: Store, open_batch: OpenBatch
) -> None:
    async with Journal(store) as journal:
        await open_batch(journal)
        task = asyncio.create_task(journal.append("B-001", "tick", {"n": 1}))
        await asyncio.sleep(0)  # queued and chained
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
    assert [e.kind for e in read_journal(store, "B-001")] == ["batch.created", "tick"]
    assert verify_batch(store, "B-001").ok


async def test_back_pressure(store: Store, open_batch: OpenBatch) -> None:
    async with Journal(store, max_pending=5) as journal:
        await open_batch(journal)
        futures = [journal.append_nowait("B-001", "tick", {"n": n}) for n in range(5)]
        with pytest.raises(JournalOverloadedError):
            journal.append_nowait("B-001", "tick", {"n": 5})
        waited = await journal.append("B-001", "tick", {"n": 5})  # waits for room instead
        assert waited.seq == 7 and all(f.done() for f in futures)


@pytest.mark.sqlite_only
@pytest.mark.slow
async def test_a_store_that_cannot_commit_makes_entries_wait_not_fail(
    store: Store, db_path: Path, open_batch: OpenBatch
) -> None:
    """A store that cannot commit for a passing reason (here: another process holds the
    write lock past the busy timeout, as a full disk or an I/O error also passes): the
    entry waits, `storage_problem` says why, and it is committed once the store is back."""
    async with Journal(store) as journal:
        await open_batch(journal, "B-001")
        blocker = sqlite3.connect(db_path, isolation_level=None)
        blocker.execute("BEGIN IMMEDIATE")
        try:
            waiting = asyncio.ensure_future(journal.append("B-001", "tick", {"n": 1}))
            for _ in range(600):  # until the journal reports the outage (≥ the busy timeout)
                if journal.storage_problem is not None:
                    break
                await asyncio.sleep(0.1)
            assert journal.storage_problem is not None
            assert "database is locked" in journal.storage_problem
            assert not waiting.done()
        finally:
            blocker.execute("ROLLBACK")
            blocker.close()
        entry = await waiting
        assert entry.seq == 2 and journal.storage_problem is None
        assert journal.stats.failed_commits == 0
    assert verify_batch(store, "B-001").ok
