"""Fixtures for the eBR tests: real SQLite files in tmp_path, a started journal, a
populated batch, an injectable clock, and a sqlite3 'shell' for tampering."""

from __future__ import annotations

import sqlite3
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from ebr import Entry, Journal, Store

T0 = datetime(2026, 3, 1, 8, 0, 0, tzinfo=UTC)

OpenBatch = Callable[..., Awaitable[Entry]]


class FakeClock:
    """A wall clock the test moves by hand."""

    def __init__(self, start: datetime = T0) -> None:
        self.now = start

    def __call__(self) -> datetime:
        return self.now

    def advance(self, **delta: float) -> None:
        self.now += timedelta(**delta)


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    return tmp_path / "data" / "ebr.sqlite"


@pytest.fixture
def store(db_path: Path) -> Iterator[Store]:
    opened = Store.open(db_path)
    yield opened
    opened.close()


@pytest.fixture
async def journal(store: Store) -> AsyncIterator[Journal]:
    started = Journal(store)
    await started.start()
    yield started
    await started.stop()


@pytest.fixture
def open_batch() -> OpenBatch:
    """Return a helper that opens a batch with plausible header values."""

    async def _open(journal: Journal, batch_id: str = "B-001", **overrides: Any) -> Entry:
        fields: dict[str, Any] = {
            "recipe_name": "cart-expansion",
            "recipe_version": "3.1",
            "recipe_hash": "c0ffee" * 10 + "beef",
            "product": "CAR-T (anti-CD19)",
            "coi": "COI-2026-000123",
            "simulation": False,
            "data": {"operator": "a.smith", "terminal": "HMI-2"},
        }
        fields.update(overrides)
        return await journal.open_batch(batch_id, **fields)

    return _open


def sample_rows(start: datetime, count: int, tag: str = "TIC-101.PV") -> list[Any]:
    """Return `count` one-second samples of a temperature tag."""
    return [
        (tag, start + timedelta(seconds=i), 37.0 + i / 10, "degC", "good") for i in range(count)
    ]


@pytest.fixture
async def populated(
    store: Store, db_path: Path, open_batch: OpenBatch
) -> tuple[Store, Path, str, int]:
    """A finished batch of 20 entries with 3 sample blocks (blocks at seq 4, 9, 14).

    Returns (store, db_path, batch_id, last_seq).
    """
    journal = Journal(store)
    await journal.start()
    await open_batch(journal, "B-001")
    last = None
    for i in range(2, 21):
        if i in (4, 9, 14):
            last = await journal.append_samples("B-001", sample_rows(T0, 5 + i))
        elif i == 2:
            last = await journal.append("B-001", "batch.state", {"from": "Idle", "to": "Running"})
        else:
            last = await journal.append(
                "B-001",
                "write.result",
                {"tag": "TIC-101.SP", "value": 37.5, "ok": True, "step": i},
            )
    await journal.stop()
    assert last is not None and last.seq == 20
    return store, db_path, "B-001", 20


@pytest.fixture
def shell(db_path: Path) -> Callable[..., list[Any]]:
    """Run SQL on the database file like a person with the sqlite3 shell (no eBR code),
    after dropping the append-only triggers as such a person would."""

    def run(sql: str, *params: Any) -> list[Any]:
        conn = sqlite3.connect(db_path)
        try:
            # The database refuses updates and deletes; a tamperer drops the guards first.
            guards = conn.execute("SELECT name FROM sqlite_master WHERE type = 'trigger'")
            for (name,) in guards.fetchall():
                conn.execute(f'DROP TRIGGER "{name}"')
            rows = conn.execute(sql, params).fetchall()
            conn.commit()
            return rows
        finally:
            conn.close()

    return run
