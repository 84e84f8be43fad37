"""The durable-append workload of the journal benches, through the store and as raw rows.

The store side: WRITERS concurrent coroutines, each awaiting one `Journal.append` at a
time until it is recorded (committed and fsync'd). The raw side (bench/journal.py for
sqlite3, bench/journal_pg.py for psycopg) writes the same rows with the driver alone:
byte-identical canonical JSON, the same hash chain, into the same migrated schema
(indexes, foreign keys, guard triggers), with the same batch-head update in every
transaction, the same grouping and the same durability settings. Each side's database
is then verified with `verify_batch`, and the two sets of data texts are compared, so
neither side can do less than the other.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from sqlalchemy import select

from ebr import Journal, Store, verify_batch
from ebr.record.schema import journal as journal_table

WRITERS = 16
APPENDS_PER_WRITER = 500
ROUNDS = 5
"""Each side runs this many times, alternating; the median run is reported."""
BATCH_ID = "B-1"
KIND = "write.intent"
HEADER = {
    "batch_id": BATCH_ID,
    "recipe_name": "r",
    "recipe_version": "1",
    "recipe_hash": "0" * 64,
    "product": "p",
    "coi": "c",
    "simulation": True,
}
GENESIS = "0" * 64
_ONE_US = timedelta(microseconds=1)


def payload(i: int) -> dict[str, object]:
    """The data of append number `i` (a setpoint write intent, as the controller makes)."""
    return {
        "t": "2026-11-22T00:00:00.000000Z",
        "element": "expansion/day_3/increase_rocking",
        "capability": "rocking.rate_sp",
        "old": 6.0,
        "new": 8.0 + i % 3,
        "intent": i,
    }


_ENCODER = json.JSONEncoder(sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def raw_text(data: dict[str, object]) -> str:
    """RFC 8785 text of a payload, with the stdlib only (exact for these flat values)."""
    plain = {k: int(v) if type(v) is float and v.is_integer() else v for k, v in data.items()}
    return _ENCODER.encode(plain)


def raw_ts(now: datetime) -> str:
    """The record time format, with the stdlib only."""
    return "%04d-%02d-%02dT%02d:%02d:%02d.%06dZ" % (  # noqa: UP031 (as fast as it gets)
        now.year,
        now.month,
        now.day,
        now.hour,
        now.minute,
        now.second,
        now.microsecond,
    )


class RawChain:
    """Chains raw rows the way the journal does: seq, strictly increasing ts, SHA-256."""

    def __init__(self) -> None:
        """Start before seq 1."""
        self.seq = 0
        self.hash = GENESIS
        self._last: datetime | None = None

    def row(self, kind: str, text: str) -> tuple[str, int, str, str, str, str, str]:
        """Return the next journal row (batch_id, seq, ts, kind, data, prev_hash, hash)."""
        now = datetime.now(UTC)
        if self._last is not None and now <= self._last:
            now = self._last + _ONE_US
        self._last = now
        self.seq += 1
        ts = raw_ts(now)
        prev = self.hash
        chained = f"{prev}\n{BATCH_ID}\n{self.seq}\n{ts}\n{kind}\n{text}"
        self.hash = hashlib.sha256(chained.encode("utf-8")).hexdigest()
        return (BATCH_ID, self.seq, ts, kind, text, prev, self.hash)

    def created_row(self) -> tuple[str, int, str, str, str, str, str]:
        """The `batch.created` entry the journal writes first (empty data plus the header)."""
        return self.row("batch.created", raw_text({"header": HEADER}))


@dataclass
class StoreRun:
    """One timed run of the workload through the store."""

    rate: float
    latencies: list[float]
    group: float
    entries: int


async def store_appends(url: str) -> StoreRun:
    """Run the workload through `Store` + `Journal` at `url`; verify and return the figures."""
    store = Store.open(url)
    try:
        journal = Journal(store)
        await journal.start()
        try:
            await journal.open_batch(
                BATCH_ID,
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
                    await journal.append(BATCH_ID, KIND, payload(w * APPENDS_PER_WRITER + i))
                    latencies.append(time.perf_counter() - t0)

            commits0 = journal.stats.commits
            t0 = time.perf_counter()
            await asyncio.gather(*(writer(w) for w in range(WRITERS)))
            elapsed = time.perf_counter() - t0
            commits = journal.stats.commits - commits0
        finally:
            await journal.stop()
        entries = WRITERS * APPENDS_PER_WRITER
        result = verify_batch(store, BATCH_ID)
        assert result.ok and result.entries_checked == entries + 1, result.summary()
        return StoreRun(entries / elapsed, latencies, entries / max(commits, 1), entries)
    finally:
        store.close()


def same_rows(store_url: str, raw_url: str) -> None:
    """Check both databases hold intact chains with the same stored data texts."""
    texts = []
    for url in (store_url, raw_url):
        with Store.open(url, create=False) as store:
            result = verify_batch(store, BATCH_ID)
            assert result.ok, f"{url}: {result.summary()}"
            query = select(journal_table.c.data).where(journal_table.c.batch_id == BATCH_ID)
            with store.snapshot() as conn:
                texts.append(sorted(conn.execute(query).scalars()))
    assert texts[0] == texts[1], "the store and the raw side wrote different data"
