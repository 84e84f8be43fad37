"""Durable journal appends on SQLite through the store vs raw sqlite3 doing the same work,
and `ebr verify` speed.

The raw side is described in bench/appends.py. On SQLite it also gets what the store
has: WAL with synchronous=FULL, foreign keys on, `BEGIN IMMEDIATE`, one executemany per
group. A second, weaker baseline is printed for reference: the same rows into a bare
table (no kind index, no foreign key, no batch row to update), as this bench measured
before the comparison was made like for like.
"""

from __future__ import annotations

import asyncio
import os
import queue
import sqlite3
import statistics
import tempfile
import threading
import time
from pathlib import Path

from bench.appends import (
    APPENDS_PER_WRITER,
    BATCH_ID,
    GENESIS,
    HEADER,
    KIND,
    ROUNDS,
    WRITERS,
    RawChain,
    StoreRun,
    payload,
    raw_text,
    same_rows,
    store_appends,
)
from bench.results import Results
from ebr import Journal, Store, verify_batch, verify_store
from ebr.record.journal import _Worker  # the hand-off every group commit pays, measured alone

_HEADER_COLUMNS = ("recipe_name", "recipe_version", "recipe_hash", "product", "coi", "simulation")
_INSERT = (
    "INSERT INTO journal (batch_id, seq, ts, kind, data, prev_hash, hash) "
    "VALUES (?, ?, ?, ?, ?, ?, ?)"
)
_ADVANCE = (
    "UPDATE batches SET head_seq = ?, head_hash = ? "
    "WHERE batch_id = ? AND head_seq = ? AND head_hash = ?"
)


def _connect(path: Path) -> sqlite3.Connection:
    db = sqlite3.connect(path, isolation_level=None)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("PRAGMA synchronous=FULL")
    db.execute("PRAGMA foreign_keys=ON")
    return db


def raw_sqlite(path: Path, entries: int, group: int) -> float:
    """The same rows with plain sqlite3 into the store's schema; return entries/s.

    `path` must hold a freshly migrated, empty store (`Store.open`).
    """
    db = _connect(path)
    chain = RawChain()
    created = chain.created_row()
    db.execute("BEGIN IMMEDIATE")
    db.execute(
        "INSERT INTO batches (batch_id, created_at, recipe_name, recipe_version, recipe_hash,"
        " product, coi, simulation, head_seq, head_hash) VALUES (?,?,?,?,?,?,?,?,?,?)",
        (
            BATCH_ID,
            created[2],  # the time of seq 1
            *(HEADER[name] for name in _HEADER_COLUMNS),
            0,
            GENESIS,
        ),
    )
    db.execute(_INSERT, created)
    db.execute(_ADVANCE, (1, chain.hash, BATCH_ID, 0, GENESIS))
    db.execute("COMMIT")
    done = 0
    t0 = time.perf_counter()
    while done < entries:
        old_seq, old_hash = chain.seq, chain.hash
        rows = [
            chain.row(KIND, raw_text(payload(i))) for i in range(done, min(done + group, entries))
        ]
        db.execute("BEGIN IMMEDIATE")
        db.executemany(_INSERT, rows)
        moved = db.execute(_ADVANCE, (chain.seq, chain.hash, BATCH_ID, old_seq, old_hash))
        if moved.rowcount != 1:
            raise RuntimeError("raw sqlite3: batch head moved under the bench")
        db.execute("COMMIT")
        done += len(rows)
    elapsed = time.perf_counter() - t0
    db.close()
    return entries / elapsed


def raw_sqlite_bare(path: Path, entries: int, group: int) -> float:
    """The earlier, weaker baseline: the same rows into a bare table, no head update."""
    db = _connect(path)
    db.execute(
        "CREATE TABLE journal (id INTEGER PRIMARY KEY, batch_id TEXT, seq INTEGER, ts TEXT,"
        " kind TEXT, data TEXT, prev_hash TEXT, hash TEXT, UNIQUE (batch_id, seq))"
    )
    chain = RawChain()
    done = 0
    t0 = time.perf_counter()
    while done < entries:
        rows = [
            chain.row(KIND, raw_text(payload(i))) for i in range(done, min(done + group, entries))
        ]
        db.execute("BEGIN")
        db.executemany(_INSERT, rows)
        db.execute("COMMIT")
        done += len(rows)
    elapsed = time.perf_counter() - t0
    db.close()
    return entries / elapsed


def _verify_rate(url: str) -> tuple[float, int]:
    """Best of three `verify_batch` runs: (entries/s, entries)."""
    best = 0.0
    entries = 0
    with Store.open(url, create=False) as store:
        for _ in range(3):
            t0 = time.perf_counter()
            result = verify_batch(store, BATCH_ID)
            elapsed = time.perf_counter() - t0
            assert result.ok, result.summary()
            entries = result.entries_checked
            best = max(best, entries / elapsed)
    return best, entries


HANDOFFS = 3000


def queue_ping_pong_us() -> float:
    """Median round trip (µs) of a plain thread ping-pong through two SimpleQueues."""
    jobs: queue.SimpleQueue[int | None] = queue.SimpleQueue()
    answers: queue.SimpleQueue[int] = queue.SimpleQueue()

    def echo() -> None:
        while (job := jobs.get()) is not None:
            answers.put(job)

    thread = threading.Thread(target=echo, daemon=True)
    thread.start()
    times = []
    for n in range(HANDOFFS):
        t0 = time.perf_counter()
        jobs.put(n)
        answers.get(timeout=5)
        times.append(time.perf_counter() - t0)
    jobs.put(None)
    thread.join(5)
    return statistics.median(times) * 1e6


async def journal_handoff_us() -> float:
    """Median round trip (µs) of the journal's worker hand-off with an empty job.

    Each group commit pays this once on top of the database work: the job goes to the
    worker thread and its outcome comes back to the event loop.
    """
    worker = _Worker(asyncio.get_running_loop())
    try:
        times = []
        for _ in range(HANDOFFS):
            t0 = time.perf_counter()
            await worker.run(int)
            times.append(time.perf_counter() - t0)
        return statistics.median(times) * 1e6
    finally:
        worker.close()


STORE_BATCHES = 20
ENTRIES_PER_BATCH = 5000


async def _fill_store(url: str) -> None:
    """STORE_BATCHES batches of ENTRIES_PER_BATCH appends each, through the journal."""
    with Store.open(url) as store:
        async with Journal(store) as journal:
            for b in range(STORE_BATCHES):
                batch_id = f"B-{b:02d}"
                header = {k: v for k, v in HEADER.items() if k != "batch_id"}
                await journal.open_batch(batch_id, **header, data={})
                await asyncio.gather(
                    *(
                        journal.append_nowait(batch_id, KIND, payload(i))
                        for i in range(ENTRIES_PER_BATCH)
                    )
                )


def _store_verify_rates(url: str, jobs: int) -> tuple[float, float, int]:
    """Best of three whole-store verifications with 1 and with `jobs` processes,
    alternating: (entries/s with jobs, entries/s alone, entries)."""
    best = {1: 0.0, jobs: 0.0}
    entries = 0
    with Store.open(url, create=False) as store:
        for n in range(6):
            workers = jobs if n % 2 else 1
            t0 = time.perf_counter()
            run = verify_store(store, jobs=workers, min_parallel_entries=0)
            elapsed = time.perf_counter() - t0
            assert all(r.ok for r in run.results) and run.processes == workers
            entries = sum(r.entries_checked for r in run.results)
            best[workers] = max(best[workers], entries / elapsed)
    return best[jobs], best[1], entries


def run(results: Results) -> None:
    """Journal append throughput and latency side by side with raw sqlite3; verify speed."""
    with tempfile.TemporaryDirectory() as tmp:
        runs: list[StoreRun] = []
        raw: list[float] = []
        bare: list[float] = []
        for n in range(ROUNDS):
            store_url = f"sqlite:///{tmp}/store-{n}.sqlite"
            raw_path = Path(tmp) / f"raw-{n}.sqlite"
            Store.open(raw_path).close()  # the same migrated schema, empty
            entries = WRITERS * APPENDS_PER_WRITER
            if n % 2:  # alternate the order: neither side always runs on a settled disk
                raw.append(raw_sqlite(raw_path, entries, WRITERS))
                runs.append(asyncio.run(store_appends(store_url)))
            else:
                runs.append(asyncio.run(store_appends(store_url)))
                raw.append(raw_sqlite(raw_path, entries, WRITERS))
            same_rows(store_url, f"sqlite:///{raw_path}")
            bare.append(raw_sqlite_bare(Path(tmp) / f"bare-{n}.sqlite", entries, WRITERS))
            # The raw side groups like the store did: WRITERS awaited appends per commit.
            assert round(runs[-1].group) == WRITERS, f"the store grouped {runs[-1].group:.1f}"
        ours = statistics.median(r.rate for r in runs)
        group = statistics.median(r.group for r in runs)
        latencies = [x for r in runs for x in r.latencies]
        label = f"{WRITERS} writers × {APPENDS_PER_WRITER}"
        results.add(
            f"journal appends, SQLite ({label})",
            ours,
            "entries/s",
            baseline=f"raw sqlite3, same schema and rows, groups of {group:.0f}",
            baseline_value=statistics.median(raw),
        )
        results.add(
            "  (reference: raw sqlite3 into a bare table)",
            ours,
            "entries/s",
            baseline="bare table, no head update",
            baseline_value=statistics.median(bare),
        )
        results.add(
            "journal append → recorded p50, SQLite", statistics.median(latencies) * 1e3, "ms"
        )
        results.add(
            "journal append → recorded p99, SQLite",
            statistics.quantiles(latencies, n=100)[98] * 1e3,
            "ms",
        )
        results.add(
            "journal worker hand-off round trip",
            asyncio.run(journal_handoff_us()),
            "µs",
            baseline="two threads, queue ping-pong",
            baseline_value=queue_ping_pong_us(),
            higher_is_better=False,
        )
        rate, entries = _verify_rate(f"sqlite:///{tmp}/store-0.sqlite")
        results.add(f"ebr verify ({entries} entries, SQLite)", rate, "entries/s")
        store_url = f"sqlite:///{tmp}/whole.sqlite"
        asyncio.run(_fill_store(store_url))
        jobs = min(os.cpu_count() or 1, 8)
        parallel, alone, entries = _store_verify_rates(store_url, jobs)
        results.add(
            f"ebr verify, whole store ({STORE_BATCHES} batches, {entries:,} entries), "
            f"{jobs} processes",
            parallel,
            "entries/s",
            baseline="one process",
            baseline_value=alone,
        )
