"""Verification, and tampering done the way a person with the sqlite3 shell would."""

from __future__ import annotations

import asyncio
import hashlib
import json
import subprocess
import sys
import threading
from collections.abc import Callable
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

import ebr.record.checks
import ebr.record.verify
from ebr import (
    Journal,
    Store,
    UnknownBatchError,
    VerifyResult,
    entry_hash,
    verify_all,
    verify_batch,
    verify_store,
)
from tests.ebr.conftest import OpenBatch

Populated = tuple[Store, Path, str, int]
Shell = Callable[..., list[Any]]


@pytest.fixture(autouse=True, params=["whole", "in chunks"])
def chunking(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> None:
    """Every test twice: journal read and checked at once, and in chunks of 2 and 3 rows
    (so tampering also lands on chunk boundaries, and the fast path meets each case)."""
    if request.param == "in chunks":
        monkeypatch.setattr(ebr.record.checks, "_CHUNK", 3)
        monkeypatch.setattr(ebr.record.verify, "_FETCH", 2)


def problem_of(store: Store, batch_id: str = "B-001") -> str:
    """Verify and return the first problem's message (asserting there is one)."""
    result = verify_batch(store, batch_id)
    assert not result.ok and result.first_problem is not None
    assert result.summary().startswith(f"{batch_id}: TAMPERED")
    return result.first_problem.message


def row(shell: Shell, seq: int) -> tuple[Any, ...]:
    rows = shell(
        "SELECT id, seq, ts, kind, data, prev_hash, hash FROM journal "
        "WHERE batch_id = 'B-001' AND seq = ?",
        seq,
    )
    assert len(rows) == 1
    return tuple(rows[0])


def test_intact_batch_verifies(populated: Populated) -> None:
    store, _path, batch_id, last_seq = populated
    result = verify_batch(store, batch_id)
    assert result == VerifyResult(batch_id, last_seq, 3, ())
    assert result.ok and result.first_problem is None
    assert result.summary() == "B-001: intact (20 entries, 3 sample blocks checked)"
    assert result.to_dict()["ok"] is True


def test_unknown_batch(store: Store) -> None:
    with pytest.raises(UnknownBatchError):
        verify_batch(store, "B-404")


def test_changed_data_value_same_length(populated: Populated, shell: Shell) -> None:
    store, *_ = populated
    data = row(shell, 2)[4]
    forged = data.replace('"to":"Running"', '"to":"Stopped"')
    assert len(forged) == len(data) and forged != data
    shell("UPDATE journal SET data = ? WHERE batch_id = 'B-001' AND seq = 2", forged)
    assert problem_of(store) == (
        "journal entry seq 2 (batch.state): hash mismatch — entry content was altered"
    )


def test_changed_data_value_different_length(populated: Populated, shell: Shell) -> None:
    store, *_ = populated
    shell(
        "UPDATE journal SET data = replace(data, '\"value\":37.5', '\"value\":137.5') "
        "WHERE batch_id = 'B-001' AND seq = 7"
    )
    assert "137.5" in row(shell, 7)[4]
    assert problem_of(store) == (
        "journal entry seq 7 (write.result): hash mismatch — entry content was altered"
    )


def test_changed_timestamp(populated: Populated, shell: Shell) -> None:
    store, *_ = populated
    ts = row(shell, 5)[2]
    forged = ts[:-2] + ("1Z" if ts[-2] != "1" else "2Z")
    shell("UPDATE journal SET ts = ? WHERE batch_id = 'B-001' AND seq = 5", forged)
    assert "seq 5 (write.result): hash mismatch" in problem_of(store)


def test_changed_kind(populated: Populated, shell: Shell) -> None:
    store, *_ = populated
    shell("UPDATE journal SET kind = 'write.intent' WHERE batch_id = 'B-001' AND seq = 6")
    assert "seq 6 (write.intent): hash mismatch" in problem_of(store)


def test_deleted_middle_entry(populated: Populated, shell: Shell) -> None:
    store, *_ = populated
    shell("DELETE FROM journal WHERE batch_id = 'B-001' AND seq = 11")
    assert problem_of(store) == (
        "seq 11: missing — expected seq 11, found 12 (an entry was deleted or reordered)"
    )


def test_deleted_last_entry(populated: Populated, shell: Shell) -> None:
    store, _path, _batch, last_seq = populated
    shell("DELETE FROM journal WHERE batch_id = 'B-001' AND seq = ?", last_seq)
    assert problem_of(store) == (
        "head: journal ends at seq 19 but the batch head records seq 20 (trailing entries deleted)"
    )


def test_deleted_last_entry_and_head_rewound_still_detected_by_link(
    populated: Populated, shell: Shell
) -> None:
    store, *_ = populated
    shell("DELETE FROM journal WHERE batch_id = 'B-001' AND seq = 20")
    shell("UPDATE batches SET head_seq = 19 WHERE batch_id = 'B-001'")
    assert "head: the hash of the last entry (seq 19) differs" in problem_of(store)


def test_swapped_seq_of_two_entries(populated: Populated, shell: Shell) -> None:
    store, *_ = populated
    shell("UPDATE journal SET seq = -1 WHERE batch_id = 'B-001' AND seq = 5")
    shell("UPDATE journal SET seq = 5 WHERE batch_id = 'B-001' AND seq = 6")
    shell("UPDATE journal SET seq = 6 WHERE batch_id = 'B-001' AND seq = -1")
    assert problem_of(store) == (
        "seq 5: missing — expected seq 5, found 6 (an entry was deleted or reordered)"
    )


def test_swapped_entire_rows(populated: Populated, shell: Shell) -> None:
    """Every column but the row id exchanged: the physical order betrays the swap."""
    store, *_ = populated
    a, b = row(shell, 5), row(shell, 8)
    shell("UPDATE journal SET seq = -1 WHERE id = ?", a[0])
    for target, source in ((b[0], a), (a[0], b)):
        shell(
            "UPDATE journal SET seq = ?, ts = ?, kind = ?, data = ?, prev_hash = ?, hash = ? "
            "WHERE id = ?",
            *source[1:],
            target,
        )
    assert problem_of(store) == (
        "seq 5: missing — expected seq 5, found 8 (an entry was deleted or reordered)"
    )


def test_swapped_contents_keeping_seq(populated: Populated, shell: Shell) -> None:
    store, *_ = populated
    a, b = row(shell, 5), row(shell, 6)
    for seq, source in ((5, b), (6, a)):
        shell(
            "UPDATE journal SET ts = ?, kind = ?, data = ?, prev_hash = ?, hash = ? "
            "WHERE batch_id = 'B-001' AND seq = ?",
            *source[2:],
            seq,
        )
    assert problem_of(store).startswith(
        "journal entry seq 5 (write.result): chain broken — prev_hash does not match the hash "
        "of seq 4"
    )


def test_forged_entry_with_valid_hash_appended(populated: Populated, shell: Shell) -> None:
    """A forger who knows the hash rule still cannot move the batch head unnoticed..."""
    store, _path, _batch, last_seq = populated
    last = row(shell, last_seq)
    later = datetime.strptime(last[2], "%Y-%m-%dT%H:%M:%S.%fZ") + timedelta(seconds=1)
    ts = later.strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    data = '{"tag":"TIC-101.SP","value":20}'
    digest = entry_hash(last[6], "B-001", 21, ts, "write.result", data)
    shell(
        "INSERT INTO journal (batch_id, seq, ts, kind, data, prev_hash, hash) "
        "VALUES ('B-001', 21, ?, 'write.result', ?, ?, ?)",
        ts,
        data,
        last[6],
        digest,
    )
    assert problem_of(store) == (
        "head: journal ends at seq 21 but the batch head records seq 20 "
        "(entries were added outside the journal writer)"
    )


def test_forged_entry_inserted_in_the_middle(populated: Populated, shell: Shell) -> None:
    """...nor slip an entry in between by renumbering the ones after it."""
    store, *_ = populated
    shell("UPDATE journal SET seq = seq + 1000 WHERE batch_id = 'B-001' AND seq > 9")
    shell("UPDATE journal SET seq = seq - 999 WHERE batch_id = 'B-001' AND seq > 1000")
    prev = row(shell, 9)
    data = '{"note":"forged"}'
    shell(
        "INSERT INTO journal (batch_id, seq, ts, kind, data, prev_hash, hash) "
        "VALUES ('B-001', 10, ?, 'operator.comment', ?, ?, ?)",
        prev[2][:-2] + "9Z",
        data,
        prev[6],
        entry_hash(prev[6], "B-001", 10, prev[2][:-2] + "9Z", "operator.comment", data),
    )
    assert problem_of(store) == (
        "seq 10: missing — expected seq 10, found 11 (an entry was deleted or reordered)"
    )


def test_edited_sample_block_value(populated: Populated, shell: Shell) -> None:
    store, *_ = populated
    shell(
        "UPDATE sample_blocks SET data = replace(data, '37.5', '39.5') "
        "WHERE batch_id = 'B-001' AND block_no = 2"
    )
    result = verify_batch(store, "B-001")
    assert [(p.block_no, p.message) for p in result.problems] == [
        (2, "sample block 2: digest mismatch — block data was altered")
    ]


def test_edited_sample_block_value_and_its_digest(populated: Populated, shell: Shell) -> None:
    store, *_ = populated
    (data,) = shell("SELECT data FROM sample_blocks WHERE block_no = 2")[0]
    forged = data.replace("37.5", "39.5")
    shell(
        "UPDATE sample_blocks SET data = ?, sha256 = ? WHERE block_no = 2",
        forged,
        hashlib.sha256(forged.encode()).hexdigest(),
    )
    assert problem_of(store) == (
        "sample block 2: digest differs from the one journaled at seq 9 — block data was altered"
    )


def test_deleted_sample_block(populated: Populated, shell: Shell) -> None:
    store, *_ = populated
    shell("DELETE FROM sample_blocks WHERE batch_id = 'B-001' AND block_no = 3")
    assert problem_of(store) == (
        "journal entry seq 14 (samples.block): sample block 3 is missing (block deleted)"
    )


def test_inserted_orphan_sample_block(populated: Populated, shell: Shell) -> None:
    store, *_ = populated
    data = '{"rows":[["TIC-101.PV","2026-03-01T09:00:00.000000Z",37,"degC","good"]]}'
    shell(
        "INSERT INTO sample_blocks (batch_id, block_no, data, sha256) VALUES ('B-001', 4, ?, ?)",
        data,
        hashlib.sha256(data.encode()).hexdigest(),
    )
    assert problem_of(store) == (
        "sample block 4: no samples.block journal entry records it (block was inserted or "
        "renumbered)"
    )


def test_edited_batch_header(populated: Populated, shell: Shell) -> None:
    store, *_ = populated
    shell("UPDATE batches SET coi = 'COI-2026-999999' WHERE batch_id = 'B-001'")
    assert problem_of(store) == (
        "batch record: coi 'COI-2026-999999' differs from the value journaled at seq 1 "
        "('COI-2026-000123') — the batch record was altered"
    )


def test_edited_simulation_flag(populated: Populated, shell: Shell) -> None:
    store, *_ = populated
    shell("UPDATE batches SET simulation = 1 WHERE batch_id = 'B-001'")
    assert problem_of(store).startswith("batch record: simulation True differs")


def test_deleted_batch_row(populated: Populated, shell: Shell) -> None:
    store, *_ = populated
    shell("DELETE FROM batches WHERE batch_id = 'B-001'")  # the shell has foreign keys off
    assert problem_of(store) == "batch record: missing — the batches row was deleted"


async def test_verify_all_reports_each_batch(
    populated: Populated, shell: Shell, open_batch: OpenBatch
) -> None:
    store, *_ = populated
    async with Journal(store) as journal:
        await open_batch(journal, "B-002")
        await journal.append("B-002", "batch.state", {"from": "Idle", "to": "Running"})
    shell("DELETE FROM journal WHERE batch_id = 'B-001' AND seq = 3")
    results = {r.batch_id: r for r in verify_all(store)}
    assert set(results) == {"B-001", "B-002"}
    assert results["B-002"].ok and results["B-002"].entries_checked == 2
    assert not results["B-001"].ok and results["B-001"].entries_checked == 2
    first = results["B-001"].first_problem
    assert first is not None and first.seq == 3


VERIFY_IN_WORKERS = """
import json, sys
from ebr import Store, verify_store
with Store.open(sys.argv[1], create=False) as store:
    run = verify_store(store, jobs=2, min_parallel_entries=0)
print(json.dumps({"processes": run.processes,
                  "results": [[r.batch_id, r.entries_checked, str(r.first_problem)]
                              for r in run.results]}))
"""


async def test_worker_processes_find_what_one_process_finds(
    populated: Populated, shell: Shell, open_batch: OpenBatch
) -> None:
    store, path, *_ = populated
    async with Journal(store) as journal:
        for batch_id in ("B-002", "B-003"):
            await open_batch(journal, batch_id)
            await journal.append(batch_id, "batch.state", {"from": "Idle", "to": "Running"})
    shell("UPDATE journal SET data = '{}' WHERE batch_id = 'B-003' AND seq = 2")
    alone = [[r.batch_id, r.entries_checked, str(r.first_problem)] for r in verify_all(store)]
    # A fresh interpreter runs no other thread, so it may fork its workers.
    done = await asyncio.to_thread(
        subprocess.run,
        [sys.executable, "-c", VERIFY_IN_WORKERS, f"sqlite:///{path}"],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    workers = json.loads(done.stdout)
    assert workers == {"processes": 2, "results": alone}
    assert [problem for *_, problem in alone] == [
        "None",
        "None",
        "journal entry seq 2 (batch.state): hash mismatch — entry content was altered",
    ]


def test_no_worker_processes_while_other_threads_run(populated: Populated) -> None:
    store, *_ = populated
    release = threading.Event()
    other = threading.Thread(target=release.wait, args=(10,))
    other.start()
    try:
        run = verify_store(store, jobs=4, min_parallel_entries=0)
    finally:
        release.set()
        other.join()
    assert run.processes == 1 and [r.ok for r in run.results] == [True]
