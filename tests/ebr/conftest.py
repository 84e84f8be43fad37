"""Fixtures for the eBR tests: real SQLite files in tmp_path (and, with
CELLBATCH_TEST_PG set, a fresh PostgreSQL schema per test), a started journal, a
populated batch, an injectable clock, and a sqlite3 'shell' for tampering.

Every test whose fixtures include `store` (through `backend`) runs on SQLite and on
PostgreSQL, unless it uses the SQLite file itself (`db_path`, `shell`) or is marked
`sqlite_only`. The PostgreSQL runs skip when CELLBATCH_TEST_PG is unset.
"""

from __future__ import annotations

import asyncio
import os
import sqlite3
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, create_engine, text
from sqlalchemy.engine import make_url

from ebr import Entry, Journal, Store

PG_ENV = "CELLBATCH_TEST_PG"
PG_URL = os.environ.get(PG_ENV, "")
PG_SKIP = f"PostgreSQL tests need {PG_ENV}=postgresql+psycopg://USER@HOST:PORT/DB (unset)"
SESSION_TOKEN = f"ebrt_{uuid.uuid4().hex[:10]}"
"""Prefix of every PostgreSQL schema this test session creates (and drops)."""

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


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "sqlite_only: run this eBR test on SQLite only")
    config.addinivalue_line("markers", "postgresql_only: run this eBR test on PostgreSQL only")


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """Run store-based tests on both backends unless they need the SQLite file."""
    if "backend" not in metafunc.fixturenames:
        return
    sqlite_only = metafunc.definition.get_closest_marker("sqlite_only") is not None or bool(
        {"db_path", "shell"} & set(metafunc.fixturenames)
    )
    backends = ["sqlite"] if sqlite_only else ["sqlite", "postgresql"]
    if metafunc.definition.get_closest_marker("postgresql_only") is not None:
        backends = ["postgresql"]
    metafunc.parametrize("backend", backends, indirect=True)


@pytest.fixture
def backend(request: pytest.FixtureRequest) -> str:
    """'sqlite' or 'postgresql' (parametrized by pytest_generate_tests)."""
    return str(getattr(request, "param", "sqlite"))


@pytest.fixture(scope="session")
def pg_admin() -> Iterator[Engine]:
    """An engine on the CELLBATCH_TEST_PG database; drops this session's schemas at the end."""
    if not PG_URL:
        pytest.skip(PG_SKIP)
    engine = create_engine(PG_URL, isolation_level="AUTOCOMMIT")
    yield engine
    with engine.connect() as conn:
        leftovers = conn.execute(
            text("SELECT nspname FROM pg_namespace WHERE nspname LIKE :prefix"),
            {"prefix": f"{SESSION_TOKEN}%"},
        ).scalars()
        for name in list(leftovers):
            conn.execute(text(f'DROP SCHEMA "{name}" CASCADE'))
    engine.dispose()


def pg_schema_url(schema: str) -> str:
    """The CELLBATCH_TEST_PG URL with its search_path set to `schema`."""
    url = make_url(PG_URL).update_query_dict({"options": f"-csearch_path={schema}"})
    return url.render_as_string(hide_password=False)


@pytest.fixture
def new_pg_url(pg_admin: Engine) -> Iterator[Callable[[], str]]:
    """Return a factory of URLs, each on a fresh, empty schema (all dropped afterwards)."""
    made: list[str] = []

    def make() -> str:
        schema = f"{SESSION_TOKEN}_{uuid.uuid4().hex[:8]}"
        with pg_admin.connect() as conn:
            conn.execute(text(f'CREATE SCHEMA "{schema}"'))
        made.append(schema)
        return pg_schema_url(schema)

    yield make
    with pg_admin.connect() as conn:
        for schema in made:
            conn.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))


@pytest.fixture
def pg_url(new_pg_url: Callable[[], str]) -> str:
    """A URL whose search_path is a fresh, empty schema of this test (dropped afterwards)."""
    return new_pg_url()


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    return tmp_path / "data" / "ebr.sqlite"


@pytest.fixture
def store_url(backend: str, tmp_path: Path, request: pytest.FixtureRequest) -> str:
    """Where the test's store lives: the `db_path` file, or a fresh PostgreSQL schema."""
    if backend == "postgresql":
        return str(request.getfixturevalue("pg_url"))
    return str(tmp_path / "data" / "ebr.sqlite")


@pytest.fixture
def store(store_url: str) -> Iterator[Store]:
    opened = Store.open(store_url)
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
    store: Store, store_url: str, open_batch: OpenBatch
) -> tuple[Store, Any, str, int]:
    """A finished batch of 20 entries with 3 sample blocks (blocks at seq 4, 9, 14).

    Returns (store, location, batch_id, last_seq): location is the SQLite file's Path,
    or the PostgreSQL URL.
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
    location = store_url if store.engine.dialect.name == "postgresql" else Path(store_url)
    return store, location, "B-001", 20


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


@pytest.fixture(scope="session")
def record_db(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Store, Path]]:
    """A store holding a simulation batch (SIM) and a GMP batch (GMP), built once for
    every export test."""
    from tests.ebr.records import GMP, SIM, make_batch

    path = tmp_path_factory.mktemp("export") / "ebr.sqlite"
    store = Store.open(path)

    async def build() -> None:
        await make_batch(store, SIM, simulation=True)
        await make_batch(store, GMP, simulation=False)

    asyncio.run(build())
    yield store, path
    store.close()
