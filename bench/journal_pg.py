"""Durable journal appends on PostgreSQL through the store vs raw psycopg doing the same work.

Runs when CELLBATCH_BENCH_PG (or CELLBATCH_TEST_PG) holds a SQLAlchemy URL such as
`postgresql+psycopg://postgres@127.0.0.1:5432/test`; prints "skipped: …" otherwise. Each
run gets fresh schemas (`cellbatch_bench_<pid>_…`), dropped afterwards. The raw side is
described in bench/appends.py: psycopg alone, same rows into the same migrated schema,
the same head update per transaction, `synchronous_commit = on` as the store sets it.
"""

from __future__ import annotations

import asyncio
import os
import statistics
import time
from collections.abc import Iterator
from contextlib import contextmanager

import psycopg
from sqlalchemy.engine import URL, make_url

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
from ebr import Store

ENV = ("CELLBATCH_BENCH_PG", "CELLBATCH_TEST_PG")
_INSERT = (
    "INSERT INTO journal (batch_id, seq, ts, kind, data, prev_hash, hash) "
    "VALUES (%s, %s, %s, %s, %s, %s, %s)"
)
_ADVANCE = (
    "UPDATE batches SET head_seq = %s, head_hash = %s "
    "WHERE batch_id = %s AND head_seq = %s AND head_hash = %s"
)
_HEADER_COLUMNS = ("recipe_name", "recipe_version", "recipe_hash", "product", "coi", "simulation")


def _conninfo(url: URL) -> str:
    """The libpq connection string of a SQLAlchemy URL."""
    return url.set(drivername="postgresql").render_as_string(hide_password=False)


def _in_schema(url: URL, schema: str) -> str:
    return url.update_query_dict({"options": f"-csearch_path={schema}"}).render_as_string(
        hide_password=False
    )


@contextmanager
def _schemas(url: URL, *names: str) -> Iterator[None]:
    """Create the schemas, and drop them (with everything in them) afterwards."""
    with psycopg.connect(_conninfo(url), autocommit=True) as admin:
        for name in names:
            admin.execute(f'CREATE SCHEMA "{name}"')
        try:
            yield
        finally:
            for name in names:
                admin.execute(f'DROP SCHEMA IF EXISTS "{name}" CASCADE')


def raw_psycopg(url: URL, schema: str, entries: int, group: int) -> float:
    """The same rows with plain psycopg into the store's schema; return entries/s."""
    with psycopg.connect(_conninfo(url), options=f"-csearch_path={schema}") as db:
        db.execute("SET synchronous_commit TO on")
        db.commit()
        chain = RawChain()
        created = chain.created_row()
        db.execute(
            "INSERT INTO batches (batch_id, created_at, recipe_name, recipe_version,"
            " recipe_hash, product, coi, simulation, head_seq, head_hash)"
            " VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s)",
            (BATCH_ID, created[2], *(HEADER[name] for name in _HEADER_COLUMNS), 0, GENESIS),
        )
        db.execute(_INSERT, created)
        db.execute(_ADVANCE, (1, chain.hash, BATCH_ID, 0, GENESIS))
        db.commit()
        done = 0
        t0 = time.perf_counter()
        with db.cursor() as cursor:
            while done < entries:
                old_seq, old_hash = chain.seq, chain.hash
                rows = [
                    chain.row(KIND, raw_text(payload(i)))
                    for i in range(done, min(done + group, entries))
                ]
                cursor.executemany(_INSERT, rows)
                cursor.execute(_ADVANCE, (chain.seq, chain.hash, BATCH_ID, old_seq, old_hash))
                if cursor.rowcount != 1:
                    raise RuntimeError("raw psycopg: batch head moved under the bench")
                db.commit()
                done += len(rows)
        return entries / (time.perf_counter() - t0)


def run(results: Results) -> None:
    """PostgreSQL journal appends side by side with raw psycopg, or a 'skipped' line."""
    text = next((os.environ[name] for name in ENV if os.environ.get(name)), None)
    if text is None:
        print(
            f"journal appends, PostgreSQL: skipped: set {ENV[0]} (or {ENV[1]}) to a URL", flush=True
        )
        return
    url = make_url(text)
    prefix = f"cellbatch_bench_{os.getpid()}"
    try:
        psycopg.connect(_conninfo(url), connect_timeout=5).close()
    except psycopg.Error as exc:
        print(f"journal appends, PostgreSQL: skipped: cannot connect: {exc}".strip(), flush=True)
        return
    runs: list[StoreRun] = []
    raw: list[float] = []
    entries = WRITERS * APPENDS_PER_WRITER
    for n in range(ROUNDS):
        ours, theirs = f"{prefix}_store_{n}", f"{prefix}_raw_{n}"
        with _schemas(url, ours, theirs):
            Store.open(_in_schema(url, theirs)).close()  # the same migrated schema, empty
            if n % 2:
                raw.append(raw_psycopg(url, theirs, entries, WRITERS))
                runs.append(asyncio.run(store_appends(_in_schema(url, ours))))
            else:
                runs.append(asyncio.run(store_appends(_in_schema(url, ours))))
                raw.append(raw_psycopg(url, theirs, entries, WRITERS))
            same_rows(_in_schema(url, ours), _in_schema(url, theirs))
            assert round(runs[-1].group) == WRITERS, f"the store grouped {runs[-1].group:.1f}"
    latencies = [x for r in runs for x in r.latencies]
    results.add(
        f"journal appends, PostgreSQL ({WRITERS} writers × {APPENDS_PER_WRITER})",
        statistics.median(r.rate for r in runs),
        "entries/s",
        baseline=f"raw psycopg, same schema and rows, groups of {WRITERS}",
        baseline_value=statistics.median(raw),
    )
    results.add(
        "journal append → recorded p50, PostgreSQL", statistics.median(latencies) * 1e3, "ms"
    )
    results.add(
        "journal append → recorded p99, PostgreSQL",
        statistics.quantiles(latencies, n=100)[98] * 1e3,
        "ms",
    )
