"""The recorder while the store cannot commit (issue 16, fail-safe storage): entries wait
for their commit, except inside `unacknowledged()` (the hold's holding logic), where an
entry counts as recorded once chained; every entry is committed, in order, once the
store commits again, and the chain verifies."""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path

import pytest

from controller.clock import real_clock
from controller.recorder import BatchRecorder
from ebr import Journal, Store, read_journal, verify_batch
from ebr.record.kinds import Kind

pytestmark = pytest.mark.slow  # the outage shows after SQLite's busy timeout (5 s)


async def test_holding_logic_acts_on_chained_entries_and_all_commit_in_order(
    tmp_path: Path,
) -> None:
    db = tmp_path / "outage.sqlite"
    store = Store.open(db)
    try:
        async with Journal(store) as journal:
            await journal.open_batch(
                "B-001", recipe_name="r", recipe_version="1", recipe_hash="ab" * 32,
                product="p", coi="COI-1", simulation=True, data={},
            )  # fmt: skip
            recorder = BatchRecorder(journal, "B-001", real_clock())
            seen: list[int] = []
            recorder.listeners.append(lambda entry: seen.append(entry.seq))
            blocker = sqlite3.connect(db, isolation_level=None)
            blocker.execute("BEGIN IMMEDIATE")  # the store cannot commit (locked past its timeout)
            try:
                phase = asyncio.ensure_future(
                    recorder.record(Kind.WRITE_INTENT, element="p", capability="x.sp", new=1.0)
                )
                for _ in range(300):  # bounded: until the journal reports the outage
                    if journal.storage_problem is not None:
                        break
                    await asyncio.sleep(0.05)
                assert journal.storage_problem and journal.storage_problem_since is not None
                assert not phase.done()  # outside: no action without a committed intent
                async with recorder.unacknowledged():
                    hold = await recorder.record(Kind.COMMAND_ACCEPTED, command="hold")
                    intent = await recorder.record(
                        Kind.WRITE_INTENT, element="p", capability="rocking.rate_sp", new=0
                    )
                    assert (hold.seq, intent.seq) == (3, 4)
                    assert (await asyncio.wait_for(phase, 5)).seq == 2  # released, in order
                    assert sorted(seen) == [2, 3, 4]
                after = asyncio.ensure_future(recorder.record(Kind.WRITE_RESULT, intent=4))
                await asyncio.sleep(0.2)
                assert not after.done()  # the window closed with the hold
            finally:
                blocker.execute("ROLLBACK")
                blocker.close()
            assert (await after).seq == 5 and journal.storage_problem is None
            assert journal.storage_problem_since is None
        kinds = [e.kind for e in read_journal(store, "B-001")]
        assert kinds[1:] == ["write.intent", "command.accepted", "write.intent", "write.result"]
        assert verify_batch(store, "B-001").ok
    finally:
        store.close()
