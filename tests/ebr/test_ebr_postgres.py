"""PostgreSQL specifics: database-level guards, tampering by a DBA who bypasses them,
two writers on one batch, and several controller processes writing to one database.

(The store, journal and verification suites also run on PostgreSQL: see conftest.py.)
Skipped unless CELLBATCH_TEST_PG is set.
"""

from __future__ import annotations

import asyncio
import multiprocessing
import time
from collections.abc import Callable
from typing import Any

import psycopg
import pytest
from click.testing import CliRunner
from sqlalchemy.engine import make_url

from cellbatch.ebr_cli import ebr
from ebr import Journal, JournalCommitError, Store, read_journal, verify_all, verify_batch
from tests.ebr.conftest import PG_SKIP, PG_URL, OpenBatch

pytestmark = [pytest.mark.skipif(not PG_URL, reason=PG_SKIP), pytest.mark.postgresql_only]

Populated = tuple[Store, str, str, int]
PgShell = Callable[..., list[Any]]


def _connect(url: str) -> psycopg.Connection[Any]:
    """A plain psycopg connection (no eBR code) to the schema behind an eBR test URL."""
    parsed = make_url(url)
    return psycopg.connect(
        host=parsed.host,
        port=parsed.port,
        user=parsed.username,
        password=parsed.password,
        dbname=parsed.database,
        options=str(parsed.query["options"]),
    )


@pytest.fixture
def pg_shell(pg_url: str) -> PgShell:
    """Run SQL like a DBA with psql who switches the guards off for the session
    (session_replication_role = replica skips ordinary triggers)."""

    def run(sql: str, *params: Any) -> list[Any]:
        with _connect(pg_url) as conn:
            conn.execute("SET session_replication_role = replica")
            cursor = conn.execute(sql, params or None)
            return cursor.fetchall() if cursor.description else []

    return run


def test_commits_are_durable_whatever_the_server_default(pg_url: str) -> None:
    parsed = make_url(pg_url)
    lax = parsed.update_query_dict(
        {"options": f"{parsed.query['options']} -csynchronous_commit=off"}
    ).render_as_string(hide_password=False)
    with Store.open(lax) as store, store.transaction() as conn:
        assert conn.exec_driver_sql("SHOW synchronous_commit").scalar() == "on"


@pytest.mark.parametrize(
    "statement",
    [
        "UPDATE journal SET data = '{}' WHERE seq = 1",
        "DELETE FROM journal WHERE seq = 1",
        "TRUNCATE journal CASCADE",
        "UPDATE sample_blocks SET data = '{}'",
        "DELETE FROM sample_blocks",
        "TRUNCATE sample_blocks",
        "DELETE FROM batches",
        "TRUNCATE batches CASCADE",
        "UPDATE batches SET coi = 'COI-OTHER'",
        "UPDATE batches SET head_seq = head_seq - 1",
        "UPDATE batches SET head_seq = head_seq + 1, simulation = true",
    ],
)
def test_database_refuses_updates_and_deletes(populated: Populated, statement: str) -> None:
    _store, url, *_ = populated
    with _connect(url) as conn, pytest.raises(psycopg.errors.IntegrityConstraintViolation) as err:
        conn.execute(statement)
    assert any(word in str(err.value) for word in ("append-only", "never deleted", "only"))


def test_head_may_not_move_to_a_missing_entry(populated: Populated) -> None:
    """The head moves forward only onto an entry that exists with that hash (0002)."""
    _store, url, *_ = populated
    with (
        pytest.raises(psycopg.errors.IntegrityConstraintViolation, match="may only name"),
        _connect(url) as conn,
    ):
        conn.execute("UPDATE batches SET head_seq = head_seq + 1")


def test_edited_entry_is_detected(populated: Populated, pg_shell: PgShell) -> None:
    store, *_ = populated
    pg_shell(
        "UPDATE journal SET data = replace(data, '\"value\":37.5', '\"value\":137.5') "
        "WHERE batch_id = 'B-001' AND seq = 7"
    )
    assert str(verify_batch(store, "B-001").first_problem) == (
        "journal entry seq 7 (write.result): hash mismatch — entry content was altered"
    )


def test_deleted_entry_is_detected(populated: Populated, pg_shell: PgShell) -> None:
    store, *_ = populated
    pg_shell("DELETE FROM journal WHERE batch_id = 'B-001' AND seq = 11")
    assert str(verify_batch(store, "B-001").first_problem) == (
        "seq 11: missing — expected seq 11, found 12 (an entry was deleted or reordered)"
    )


def test_reordered_entries_are_detected(populated: Populated, pg_shell: PgShell) -> None:
    store, *_ = populated
    pg_shell("UPDATE journal SET seq = -1 WHERE batch_id = 'B-001' AND seq = 5")
    pg_shell("UPDATE journal SET seq = 5 WHERE batch_id = 'B-001' AND seq = 6")
    pg_shell("UPDATE journal SET seq = 6 WHERE batch_id = 'B-001' AND seq = -1")
    assert str(verify_batch(store, "B-001").first_problem) == (
        "seq 5: missing — expected seq 5, found 6 (an entry was deleted or reordered)"
    )


def test_edited_sample_block_and_batch_row_are_detected(
    populated: Populated, pg_shell: PgShell
) -> None:
    store, *_ = populated
    pg_shell("UPDATE sample_blocks SET data = replace(data, '37.5', '39.5') WHERE block_no = 2")
    pg_shell("UPDATE batches SET coi = 'COI-2026-999999'")
    messages = [p.message for p in verify_batch(store, "B-001").problems]
    assert "sample block 2: digest mismatch — block data was altered" in messages
    assert any(m.startswith("batch record: coi 'COI-2026-999999' differs") for m in messages)


def test_cli_verify_on_postgresql(populated: Populated, pg_shell: PgShell) -> None:
    _store, url, *_ = populated
    result = CliRunner().invoke(ebr, ["verify", "--db", url])
    assert result.exit_code == 0 and "B-001: intact" in result.stdout
    pg_shell("DELETE FROM journal WHERE batch_id = 'B-001' AND seq = 20")
    result = CliRunner().invoke(ebr, ["verify", "--db", url])
    assert result.exit_code == 2 and "trailing entries deleted" in result.stderr


async def test_two_writers_racing_on_one_batch_never_fork_it(
    store: Store, pg_url: str, open_batch: OpenBatch
) -> None:
    """Two journals (as two controllers would) both resume B-001 and write at once: one
    wins each race, the other fails loudly, and the stored chain stays one chain."""
    async with Journal(store) as first:
        await open_batch(first)
    with Store.open(pg_url) as other:
        async with Journal(store) as a, Journal(other) as b:
            await a.resume_batch("B-001")
            await b.resume_batch("B-001")
            outcomes = await asyncio.gather(
                *(a.append("B-001", "tick", {"writer": "a", "n": n}) for n in range(20)),
                *(b.append("B-001", "tick", {"writer": "b", "n": n}) for n in range(20)),
                return_exceptions=True,
            )
    failures = [o for o in outcomes if isinstance(o, BaseException)]
    assert failures and all(isinstance(f, JournalCommitError) for f in failures)
    writers = {e.data["writer"] for e in read_journal(store, "B-001")[1:]}
    assert len(writers) == 1  # only the winner's entries were committed
    assert verify_batch(store, "B-001").ok


WORKERS = 4
ENTRIES = 500


def _append_worker(url: str, batch_id: str, count: int) -> float:
    """One controller process: open a batch, append `count` entries ten at a time."""

    async def main() -> float:
        with Store.open(url) as store:
            async with Journal(store) as journal:
                await journal.open_batch(
                    batch_id,
                    recipe_name="cart-expansion",
                    recipe_version="3.1",
                    recipe_hash="ab" * 32,
                    product="CAR-T",
                    coi=f"COI-{batch_id}",
                    simulation=True,
                    data={},
                )
                started = time.perf_counter()
                for start in range(1, count, 10):
                    await asyncio.gather(
                        *(
                            journal.append(batch_id, "element.state", {"n": n})
                            for n in range(start, min(start + 10, count))
                        )
                    )
                return time.perf_counter() - started

    return asyncio.run(main())


def test_four_processes_write_one_database(pg_url: str) -> None:
    """Four controller processes (spawned) each write ~500 entries to their own batch in
    one fresh PostgreSQL schema, all at once (they also race to create the schema)."""
    batch_ids = [f"P-{n}" for n in range(WORKERS)]
    context = multiprocessing.get_context("spawn")
    with context.Pool(WORKERS) as pool:
        elapsed = pool.starmap(_append_worker, [(pg_url, b, ENTRIES) for b in batch_ids])
    with Store.open(pg_url, create=False) as store:
        results = verify_all(store)
    assert [(r.batch_id, r.ok, r.entries_checked) for r in results] == [
        (b, True, ENTRIES) for b in batch_ids
    ]
    rate = WORKERS * (ENTRIES - 1) / max(elapsed)
    print(f"4 processes x {ENTRIES} entries: {rate:.0f} entries/s together")
