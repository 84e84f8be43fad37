"""Durable journal appends through the store vs raw sqlite3 doing the same work."""

from __future__ import annotations

import asyncio
import hashlib
import json
import sqlite3
import statistics
import tempfile
import time
from pathlib import Path

from bench.results import Results
from ebr import Journal, Store, verify_batch

WRITERS = 16
APPENDS_PER_WRITER = 400


def _payload(i: int) -> dict[str, object]:
    return {
        "t": "2026-11-22T00:00:00.000000Z",
        "element": "expansion/day_3/increase_rocking",
        "capability": "rocking.rate_sp",
        "old": 6.0,
        "new": 8.0 + i % 3,
        "intent": i,
    }


async def _through_store(path: Path) -> tuple[float, list[float], float, int]:
    """(appends/s, latencies in s, mean group size, entries) with concurrent awaited appends."""
    store = Store.open(f"sqlite:///{path}")
    journal = Journal(store)
    await journal.start()
    await journal.open_batch(
        "B-1",
        recipe_name="r",
        recipe_version="1",
        recipe_hash="0" * 64,
        product="p",
        coi="c",
        simulation=True,
        data={},
    )
    latencies: list[float] = []

    async def writer(w: int) -> None:
        for i in range(APPENDS_PER_WRITER):
            t0 = time.perf_counter()
            await journal.append("B-1", "write.intent", _payload(w * APPENDS_PER_WRITER + i))
            latencies.append(time.perf_counter() - t0)

    commits0 = journal.stats.commits
    t0 = time.perf_counter()
    await asyncio.gather(*(writer(w) for w in range(WRITERS)))
    elapsed = time.perf_counter() - t0
    commits = journal.stats.commits - commits0
    await journal.stop()
    entries = WRITERS * APPENDS_PER_WRITER
    result = verify_batch(store, "B-1")
    store.close()
    assert result.ok, result.summary()
    return entries / elapsed, latencies, entries / max(commits, 1), result.entries_checked


def _raw_sqlite(path: Path, entries: int, group: int) -> float:
    """The same rows (hash-chained, canonical JSON) with plain sqlite3, same grouping and fsync."""
    db = sqlite3.connect(path, isolation_level=None)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("PRAGMA synchronous=FULL")
    db.execute(
        "CREATE TABLE journal (id INTEGER PRIMARY KEY, batch_id TEXT, seq INTEGER, ts TEXT,"
        " kind TEXT, data TEXT, prev_hash TEXT, hash TEXT, UNIQUE (batch_id, seq))"
    )
    prev = "0" * 64
    t0 = time.perf_counter()
    seq = 0
    while seq < entries:
        db.execute("BEGIN")
        for _ in range(min(group, entries - seq)):
            seq += 1
            data = json.dumps(_payload(seq), sort_keys=True, separators=(",", ":"))
            ts = f"2026-11-22T00:00:00.{seq % 1_000_000:06d}Z"
            digest = hashlib.sha256(
                f"{prev}\nB-1\n{seq}\n{ts}\nwrite.intent\n{data}".encode()
            ).hexdigest()
            db.execute(
                "INSERT INTO journal (batch_id, seq, ts, kind, data, prev_hash, hash)"
                " VALUES (?,?,?,?,?,?,?)",
                ("B-1", seq, ts, "write.intent", data, prev, digest),
            )
            prev = digest
        db.execute("COMMIT")
    elapsed = time.perf_counter() - t0
    db.close()
    return entries / elapsed


def _verify_rate(path: Path) -> float:
    store = Store.open(f"sqlite:///{path}")
    t0 = time.perf_counter()
    result = verify_batch(store, "B-1")
    elapsed = time.perf_counter() - t0
    store.close()
    return result.entries_checked / elapsed


def run(results: Results) -> None:
    """Journal append throughput and latency, side by side with raw sqlite3."""
    with tempfile.TemporaryDirectory() as tmp:
        ours, latencies, group, entries = asyncio.run(_through_store(Path(tmp) / "store.sqlite"))
        raw = _raw_sqlite(Path(tmp) / "raw.sqlite", entries, max(1, round(group)))
        results.add(
            "journal appends (durable, group commit)",
            ours,
            "entries/s",
            baseline=f"raw sqlite3, groups of {group:.1f}",
            baseline_value=raw,
        )
        results.add("journal append → recorded p50", statistics.median(latencies) * 1e3, "ms")
        results.add(
            "journal append → recorded p99", statistics.quantiles(latencies, n=100)[98] * 1e3, "ms"
        )
        results.add("ebr verify", _verify_rate(Path(tmp) / "store.sqlite"), "entries/s")
