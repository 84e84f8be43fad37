"""Signed checkpoints, the site batch index and witnesses: attacks that a hash chain
alone cannot see, each performed on a store file with the sqlite3 module, each found
by `cellbatch ebr verify` (exit 2, naming it) without the signing key."""

from __future__ import annotations

import asyncio
import hashlib
import json
import sqlite3
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from cellbatch.cli import cli
from ebr import Journal, Store
from ebr.record.canonical import canonical_json
from ebr.record.chain import entry_hash
from ebr.record.signing import KEY_ENV, WITNESS_ENV, load_signer

TS = "%Y-%m-%dT%H:%M:%S.%fZ"
DROP_GUARDS = [
    "DROP TRIGGER journal_no_update",
    "DROP TRIGGER journal_no_delete",
    "DROP TRIGGER sample_blocks_no_update",
    "DROP TRIGGER sample_blocks_no_delete",
    "DROP TRIGGER batches_no_delete",
    "DROP TRIGGER batches_head_only",
    "DROP TRIGGER batches_head_exists",
    "DROP TRIGGER checkpoints_no_delete",
]


def run(*args: str, env: dict[str, str] | None = None) -> Result:
    return CliRunner(env=env or {}).invoke(cli, list(args))


def verify(db: Path, *extra: str) -> Result:
    return run("ebr", "verify", "--db", str(db), "--jobs", "1", *extra)


async def write_batch(db: Path, key: Path, batch_id: str, entries: int = 30) -> None:
    """A batch written by the real journal, signed with `key`, then sealed."""
    with Store.open(db) as store:
        async with Journal(store, signer=load_signer(key)) as journal:
            await journal.open_batch(
                batch_id,
                recipe_name="cart-expansion",
                recipe_version="3.1",
                recipe_hash="c0ffee" * 10 + "beef",
                product="CAR-T",
                coi="COI-1",
                simulation=True,
                data={"operator": "a.smith"},
            )
            start = datetime(2026, 3, 1, 8, tzinfo=UTC)
            for n in range(entries):
                journal.append_nowait(batch_id, "write.result", {"n": n, "ok": True})
                if n % 10 == 9:
                    rows = [
                        (
                            "temperature.pv",
                            start + timedelta(minutes=n + i),
                            37.0 + i / 10,
                            "degC",
                            "good",
                        )
                        for i in range(5)
                    ]
                    await journal.append_samples(batch_id, rows)
            await journal.append(batch_id, "batch.state", {"to": "Complete"})
            await journal.seal_batch(batch_id)


@pytest.fixture
def site(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[Path, Path, Path]]:
    """(store, key file, witness file): a keyed store holding two sealed batches."""
    db, key, witness = tmp_path / "s.sqlite", tmp_path / "k.pem", tmp_path / "witness.log"
    monkeypatch.setenv(WITNESS_ENV, str(witness))
    monkeypatch.delenv(KEY_ENV, raising=False)
    result = run("keys", "init", "--db", str(db), "--key", str(key))
    assert result.exit_code == 0, result.output
    asyncio.run(write_batch(db, key, "B-001"))
    asyncio.run(write_batch(db, key, "B-002", entries=12))
    yield db, key, witness


def shell(db: Path) -> sqlite3.Connection:
    conn = sqlite3.connect(db, isolation_level=None)
    return conn


def copy(source: Path, target: Path) -> None:
    """Copy an SQLite store with the online backup API (as a restore would)."""
    src, dst = sqlite3.connect(source), sqlite3.connect(target)
    try:
        src.backup(dst)
    finally:
        src.close()
        dst.close()


def tampered(result: Result, batch_id: str, words: str) -> None:
    assert result.exit_code == 2, result.output
    lines = [line for line in result.stderr.splitlines() if line.startswith(f"{batch_id}:")]
    assert lines and words in lines[0], result.stderr
    assert "Traceback" not in result.output


def rechain(conn: sqlite3.Connection, batch_id: str, from_seq: int) -> None:
    """What a forger with the hash rule does: recompute every hash from `from_seq`."""
    (prev,) = conn.execute(
        "SELECT hash FROM journal WHERE batch_id = ? AND seq = ?", (batch_id, from_seq - 1)
    ).fetchone()
    rows = conn.execute(
        "SELECT seq, ts, kind, data FROM journal WHERE batch_id = ? AND seq >= ? ORDER BY seq",
        (batch_id, from_seq),
    ).fetchall()
    for seq, ts, kind, data in rows:
        digest = entry_hash(prev, batch_id, seq, ts, kind, data)
        conn.execute(
            "UPDATE journal SET prev_hash = ?, hash = ? WHERE batch_id = ? AND seq = ?",
            (prev, digest, batch_id, seq),
        )
        prev = digest
    conn.execute(
        "UPDATE batches SET head_hash = ?, head_seq = (SELECT max(seq) FROM journal "
        "WHERE batch_id = ?) WHERE batch_id = ?",
        (prev, batch_id, batch_id),
    )


def test_signed_store_verifies_and_is_anchored_by_its_key(site: tuple[Path, Path, Path]) -> None:
    db, key, witness = site
    result = verify(db, "--trust", str(key), "--witness", str(witness))
    assert result.exit_code == 0, result.output
    assert "@site: intact" in result.output and "B-001: intact" in result.output
    listed = run("keys", "list", "--db", str(db))
    assert load_signer(key).key_id in listed.output


def test_forged_append_with_recomputed_hash_and_moved_head(site: tuple[Path, Path, Path]) -> None:
    """Triggers intact: the forger appends a well-chained entry and moves the head."""
    db, _key, _ = site
    conn = shell(db)
    seq, ts, digest = conn.execute(
        "SELECT seq, ts, hash FROM journal WHERE batch_id = 'B-001' ORDER BY seq DESC LIMIT 1"
    ).fetchone()
    later = (datetime.strptime(ts, TS) + timedelta(seconds=1)).strftime(TS)
    data = '{"capability":"temperature.sp","value":45}'
    forged = entry_hash(digest, "B-001", seq + 1, later, "write.intent", data)
    conn.execute(
        "INSERT INTO journal (batch_id, seq, ts, kind, data, prev_hash, hash) "
        "VALUES ('B-001', ?, ?, 'write.intent', ?, ?, ?)",
        (seq + 1, later, data, digest, forged),
    )
    conn.execute(
        "UPDATE batches SET head_seq = ?, head_hash = ? WHERE batch_id = 'B-001'",
        (seq + 1, forged),
    )
    conn.close()
    tampered(verify(db), "B-001", f"seq {seq + 1}–{seq + 1} are not covered by a signed checkpoint")


def test_edit_and_full_rechain(site: tuple[Path, Path, Path]) -> None:
    db, _key, _ = site
    conn = shell(db)
    for statement in DROP_GUARDS:
        conn.execute(statement)
    conn.execute(
        "UPDATE journal SET data = '{\"n\":99,\"ok\":true}' WHERE batch_id = 'B-001' AND seq = 5"
    )
    rechain(conn, "B-001", 5)
    conn.close()
    tampered(verify(db), "B-001", "hash differs from the signed checkpoint")


def test_sample_edit_with_block_digest_and_rechain(site: tuple[Path, Path, Path]) -> None:
    db, _key, _ = site
    conn = shell(db)
    for statement in DROP_GUARDS:
        conn.execute(statement)
    block_no, data, old = conn.execute(
        "SELECT block_no, data, sha256 FROM sample_blocks WHERE batch_id = 'B-001' "
        "ORDER BY block_no LIMIT 1"
    ).fetchone()
    rows = json.loads(data)["rows"]
    rows[0][2] = 39.5  # a temperature excursion made to vanish (or appear)
    new_data = canonical_json({"rows": rows})
    new = hashlib.sha256(new_data.encode()).hexdigest()
    conn.execute(
        "UPDATE sample_blocks SET data = ?, sha256 = ? WHERE batch_id = 'B-001' AND block_no = ?",
        (new_data, new, block_no),
    )
    (seq,) = conn.execute(
        "SELECT seq FROM journal WHERE batch_id = 'B-001' AND kind = 'samples.block' "
        "AND data LIKE ?",
        (f"%{old}%",),
    ).fetchone()
    conn.execute(
        "UPDATE journal SET data = replace(data, ?, ?) WHERE batch_id = 'B-001' AND seq = ?",
        (old, new, seq),
    )
    rechain(conn, "B-001", seq)
    conn.close()
    tampered(verify(db), "B-001", "hash differs from the signed checkpoint")


def test_tail_cut_and_head_moved_back(site: tuple[Path, Path, Path]) -> None:
    """Entries and their checkpoints deleted: the seal on the site chain remains."""
    db, _key, _ = site
    conn = shell(db)
    for statement in DROP_GUARDS:
        conn.execute(statement)
    (last,) = conn.execute("SELECT head_seq FROM batches WHERE batch_id = 'B-001'").fetchone()
    (cut,) = conn.execute(  # back to a signed head: only the seal on @site still differs
        "SELECT max(seq) FROM checkpoints WHERE batch_id = 'B-001' AND seq < ?", (last - 5,)
    ).fetchone()
    conn.execute("DELETE FROM journal WHERE batch_id = 'B-001' AND seq > ?", (cut,))
    conn.execute("DELETE FROM checkpoints WHERE batch_id = 'B-001' AND seq > ?", (cut,))
    conn.execute(
        "DELETE FROM sample_blocks WHERE batch_id = 'B-001' AND block_no > "
        "(SELECT count(*) FROM journal WHERE batch_id = 'B-001' AND kind = 'samples.block')"
    )
    conn.execute(
        "UPDATE batches SET head_seq = ?, head_hash = (SELECT hash FROM journal WHERE "
        "batch_id = 'B-001' AND seq = ?) WHERE batch_id = 'B-001'",
        (cut, cut),
    )
    conn.close()
    tampered(verify(db), "B-001", f"sealed this batch at seq {last}")


def test_whole_batch_deleted(site: tuple[Path, Path, Path]) -> None:
    db, _key, _ = site
    conn = shell(db)
    for statement in DROP_GUARDS:
        conn.execute(statement)
    for table in ("journal", "sample_blocks", "checkpoints", "batches"):
        conn.execute(f"DELETE FROM {table} WHERE batch_id = 'B-002'")
    conn.close()
    tampered(verify(db), "B-002", "deleted — the site chain records its creation")
    tampered(verify(db, "B-002"), "B-002", "deleted")


def test_store_rolled_back_to_an_older_copy(site: tuple[Path, Path, Path], tmp_path: Path) -> None:
    """An older, self-consistent copy verifies on its own; the witness file finds it."""
    db, key, witness = site
    older = tmp_path / "older.sqlite"
    copy(db, older)
    asyncio.run(write_batch(db, key, "B-003", entries=5))
    copy(older, db)  # the store put back as it was
    plain = verify(db)
    assert plain.exit_code == 0, plain.output  # consistent: nothing inside shows it
    tampered(verify(db, "--witness", str(witness)), "@site", "the store was rolled back")


def test_store_with_replaced_keys_is_not_anchored_by_the_trusted_key(
    site: tuple[Path, Path, Path], tmp_path: Path
) -> None:
    db, key, _ = site
    other_db, other_key = tmp_path / "other.sqlite", tmp_path / "other.pem"
    assert run("keys", "init", "--db", str(other_db), "--key", str(other_key)).exit_code == 0
    asyncio.run(write_batch(other_db, other_key, "B-001"))
    assert verify(other_db).exit_code == 0
    tampered(verify(other_db, "--trust", str(key)), "@site", "not a --trust key")
    public = tmp_path / "public.pem"
    public.write_text(run("keys", "public", "--key", str(key)).output)
    assert verify(db, "--trust", str(public)).exit_code == 0


def test_forged_key_entry_is_not_trusted(site: tuple[Path, Path, Path], tmp_path: Path) -> None:
    """A key added to the site chain without an endorsement signs nothing valid."""
    db, _key, _ = site
    intruder = tmp_path / "intruder.pem"
    result = run("keys", "init", "--db", str(db), "--key", str(intruder))
    assert result.exit_code == 1 and "must be endorsed" in result.stderr


def test_journal_insert_that_does_not_extend_the_chain_is_refused(
    site: tuple[Path, Path, Path],
) -> None:
    db, _key, _ = site
    conn = shell(db)
    with pytest.raises(sqlite3.IntegrityError, match="must extend the chain"):
        conn.execute(
            "INSERT INTO journal (batch_id, seq, ts, kind, data, prev_hash, hash) "
            "VALUES ('B-001', 1000, '2030-01-01T00:00:00.000000Z', 'x.y', '{}', ?, ?)",
            ("ab" * 32, "cd" * 32),
        )
    with pytest.raises(sqlite3.IntegrityError, match="may only name a journal entry"):
        conn.execute("UPDATE batches SET head_seq = 1000 WHERE batch_id = 'B-001'")
    conn.close()


def test_rotated_key_signs_from_then_on(site: tuple[Path, Path, Path]) -> None:
    db, key, _ = site
    old = load_signer(key).key_id
    result = run("keys", "rotate", "--db", str(db), "--key", str(key))
    assert result.exit_code == 0, result.output
    assert load_signer(key).key_id != old
    asyncio.run(write_batch(db, key, "B-004", entries=5))
    assert verify(db).exit_code == 0
    listed = run("keys", "list", "--db", str(db), "--json")
    keys = json.loads(listed.output)
    assert [k["retired_at"] is not None for k in keys] == [True, False]


def test_unsigned_writer_on_a_keyed_store_is_found(site: tuple[Path, Path, Path]) -> None:
    """Once a store has keys, a writer without one leaves unsigned entries: reported."""

    async def unsigned() -> None:
        with Store.open(db) as store:
            async with Journal(store) as journal:
                await journal.resume_batch("B-002")
                await journal.append("B-002", "batch.state", {"to": "Held"})

    db, _key, _ = site
    asyncio.run(unsigned())
    tampered(verify(db), "B-002", "not covered by a signed checkpoint")


def test_export_carries_the_signed_head(site: tuple[Path, Path, Path], tmp_path: Path) -> None:
    db, key, _ = site
    out = tmp_path / "B-001.json"
    result = run("ebr", "export", "B-001", "--db", str(db), "--format", "json", "--out", str(out))
    assert result.exit_code == 0, result.output
    doc = json.loads(out.read_text())
    assert doc["signed_head"]["seq"] == doc["batch"]["head_seq"]
    ok = run("ebr", "verify", "--file", str(out), "--trust", str(key))
    assert ok.exit_code == 0, ok.output
    # rewrite the export: drop the last entry and move the head back (a consistent chain)
    doc["journal"].pop()
    doc["batch"]["head_seq"] -= 1
    doc["batch"]["head_hash"] = doc["journal"][-1]["hash"]
    out.write_text(json.dumps(doc))
    tampered(run("ebr", "verify", "--file", str(out)), "B-001", "not the batch head")
    out.write_text("{]")
    bad = run("ebr", "verify", "--file", str(out))
    assert bad.exit_code == 1 and f"{out}:1:2: not JSON" in bad.stderr


async def test_signed_journal_on_either_backend(
    store: Store, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The same on SQLite and PostgreSQL: signed, sealed, verified; an unsigned tail found."""
    from ebr.record.keys import init_key
    from ebr.record.ledger import append_entries
    from ebr.record.verify import verify_store

    monkeypatch.delenv(KEY_ENV, raising=False)
    monkeypatch.delenv(WITNESS_ENV, raising=False)
    key = tmp_path / "k.pem"
    init_key(store, key)
    signer = load_signer(key)
    async with Journal(store, signer=signer) as journal:
        await journal.open_batch(
            "B-PG",
            recipe_name="r",
            recipe_version="1",
            recipe_hash="h",
            product="p",
            coi="c",
            simulation=True,
            data={},
        )
        await journal.append("B-PG", "batch.state", {"to": "Complete"})
        await journal.seal_batch("B-PG")
    append_entries(store, "B-PG", [("review.disposition", {"comment": "ok"})], signer=signer)
    assert all(result.ok for result in verify_store(store).results)
    append_entries(store, "B-PG", [("review.disposition", {"comment": "forged"})])  # no key
    found = {r.batch_id: r for r in verify_store(store).results}
    assert "not covered by a signed checkpoint" in str(found["B-PG"].first_problem)
