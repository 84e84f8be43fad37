"""Unit leases (ebr.record.leases): one live holder per unit, fencing tokens checked at
every journal commit, release, expiry and recovery from a dead holder."""

from __future__ import annotations

import subprocess
import sys
from datetime import UTC, datetime, timedelta

import pytest

from ebr import Journal, JournalCommitError, Store, read_journal
from ebr.record.leases import (
    LeaseHeldError,
    acquire,
    holders,
    orphaned,
    release,
    renew,
    this_process,
)
from tests.ebr.conftest import OpenBatch


def test_a_unit_has_one_live_holder(store: Store) -> None:
    mine, other = this_process("A"), "elsewhere:1 B"
    [lease] = acquire(store, ["BR-01"], mine, "B-1")
    with pytest.raises(LeaseHeldError, match=r"BR-01 is controlled by .*:[0-9]+ A .batch B-1"):
        acquire(store, ["BR-02", "BR-01"], other, "B-2")  # all or none
    assert set(holders(store)) == {"BR-01"}
    assert renew(store, [lease], mine) == []
    release(store, [lease], mine)
    [taken] = acquire(store, ["BR-01"], other, "B-2")
    assert taken.token == lease.token + 1  # tokens only grow
    assert renew(store, [lease], mine) == [lease]  # ours was taken over


def test_a_dead_holder_on_this_host_is_recovered_at_once(store: Store) -> None:
    gone = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True)  # fmt: skip
    dead = this_process("x").split(":")[0] + f":{gone.stdout.strip()} old run"
    acquire(store, ["BR-01"], dead, "B-1")
    [lease] = acquire(store, ["BR-01"], this_process("new"), "B-2")
    assert lease.token == 2


def test_expired_lease_is_free(store: Store) -> None:
    acquire(store, ["BR-01"], "elsewhere:1 B", "B-1", ttl_s=-1)
    assert acquire(store, ["BR-01"], this_process(), "B-2")[0].token == 2


async def test_a_writer_whose_lease_was_taken_over_records_nothing(
    store: Store, open_batch: OpenBatch
) -> None:
    me = this_process()
    [lease] = acquire(store, ["BR-01"], me, "B-001")
    async with Journal(store) as journal:
        await open_batch(journal, "B-001")
        journal.fence("B-001", [(lease.unit, lease.token)])
        await journal.append("B-001", "write.intent", {"n": 1})
        release(store, [lease], me)
        acquire(store, ["BR-01"], "elsewhere:1 failover", "B-001")
        with pytest.raises(JournalCommitError, match=r"BR-01: this process.s lease .* taken over"):
            await journal.append("B-001", "write.intent", {"n": 2})


def test_orphaned_names_the_batches_of_dead_holders_only(store: Store) -> None:
    me = this_process("A")
    [ended] = acquire(store, ["BR-01"], me, "B-ENDED")
    release(store, [ended], me)  # ended or stopped on purpose: released, not orphaned
    acquire(store, ["BR-02"], me, "B-LIVE")
    acquire(store, ["BR-03", "BR-04"], "elsewhere:1 C", "B-EXPIRED", ttl_s=-1)
    assert orphaned(store) == {"B-EXPIRED": "elsewhere:1 C"}
    acquire(store, ["BR-03"], "elsewhere:2 standby", "B-EXPIRED")  # taken over: half live
    assert orphaned(store) == {}


async def test_a_fenced_batch_fails_alone_in_a_group_commit(
    store: Store, open_batch: OpenBatch
) -> None:
    me = this_process()
    [lost] = acquire(store, ["BR-01"], me, "B-001")
    [kept] = acquire(store, ["BR-02"], me, "B-002")
    later = datetime.now(UTC) + timedelta(minutes=5)  # B-001's lease has expired by then
    async with Journal(store) as journal:
        await open_batch(journal, "B-001")
        await open_batch(journal, "B-002")
        journal.fence("B-001", [(lost.unit, lost.token)])
        journal.fence("B-002", [(kept.unit, kept.token)])
        acquire(store, ["BR-01"], "elsewhere:1 standby", "B-001", clock=lambda: later)
        first = journal.append_nowait("B-001", "write.intent", {"n": 1})  # one group
        second = journal.append_nowait("B-002", "write.intent", {"n": 1})
        with pytest.raises(JournalCommitError, match=r"BR-01: this process.s lease"):
            await first
        assert (await second).seq == 2  # B-002's lease is still ours: recorded
    assert [e.kind for e in read_journal(store, "B-002")][-1] == "write.intent"
    assert len(read_journal(store, "B-001")) == 1
