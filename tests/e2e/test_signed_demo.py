"""The attacks of issue 16 on a demo store made with a signing key: each one leaves a
self-consistent hash chain, and `cellbatch ebr verify` (a separate process, without the
key) exits 2 naming it."""

from __future__ import annotations

import hashlib
import json
import os
import re
import sqlite3
import subprocess
import sys
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

import pytest

from ebr.record.canonical import canonical_json
from ebr.record.chain import entry_hash
from tests.ebr.test_ebr_signed import TS, copy, rechain
from tests.plantfiles import private_demo_plant

# The first test also waits for the module's demo run (the 120 s default is too short for
# it on a loaded machine).
pytestmark = [pytest.mark.e2e, pytest.mark.slow, pytest.mark.timeout(600)]
ROOT = Path(__file__).resolve().parents[2]


@dataclass
class SignedDemo:
    db: Path
    key: Path
    witness: Path
    batch_id: str
    env: dict[str, str]


def cellbatch(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "cellbatch", *args],
        cwd=ROOT, capture_output=True, text=True, timeout=240, env=env,
    )  # fmt: skip


@pytest.fixture(scope="module")
def signed_demo(tmp_path_factory: pytest.TempPathFactory) -> SignedDemo:
    out = tmp_path_factory.mktemp("signed-demo")
    db, key, witness = out / "demo.sqlite", out / "signing.pem", out / "witness.log"
    env = {k: v for k, v in os.environ.items() if not k.startswith("CELLBATCH_")}
    init = cellbatch(env, "keys", "init", "--db", f"sqlite:///{db}", "--key", str(key))
    assert init.returncode == 0, init.stderr
    env |= {"CELLBATCH_SIGNING_KEY": str(key), "CELLBATCH_WITNESS": str(witness)}
    plant = private_demo_plant(out)
    # 10,000×: at 40,000× on a loaded machine the culture overran and the batch held.
    run = cellbatch(env, "demo", "--out", str(out), "--plant", str(plant), "--db",
                    f"sqlite:///{db}", "--time-scale", "10000")  # fmt: skip
    assert run.returncode == 0, run.stdout + run.stderr
    match = re.search(r"^batch (CB-\S+): Complete$", run.stdout, re.M)
    assert match, run.stdout
    return SignedDemo(db, key, witness, match.group(1), env)


def attacked(demo: SignedDemo, tmp_path: Path, drop_guards: bool = True) -> sqlite3.Connection:
    """A copy of the demo store to attack (guards dropped, as a forger with the file can)."""
    target = tmp_path / "attacked.sqlite"
    copy(demo.db, target)
    conn = sqlite3.connect(target, isolation_level=None)
    if drop_guards:
        for (name,) in conn.execute("SELECT name FROM sqlite_master WHERE type = 'trigger'"):
            conn.execute(f'DROP TRIGGER "{name}"')
    return conn


def verify(demo: SignedDemo, db: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    return cellbatch(demo.env, "ebr", "verify", "--db", f"sqlite:///{db}", "--jobs", "1", *extra)


def found(proc: subprocess.CompletedProcess[str], batch_id: str, words: str) -> None:
    assert proc.returncode == 2, proc.stdout + proc.stderr
    lines = [line for line in proc.stderr.splitlines() if line.startswith(f"{batch_id}:")]
    assert lines and words in lines[0], proc.stderr
    assert "Traceback" not in proc.stderr


def test_the_signed_demo_store_verifies(signed_demo: SignedDemo) -> None:
    proc = verify(signed_demo, signed_demo.db, "--trust", str(signed_demo.key),
                  "--witness", str(signed_demo.witness))  # fmt: skip
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_forged_append_with_moved_head_triggers_intact(
    signed_demo: SignedDemo, tmp_path: Path
) -> None:
    batch = signed_demo.batch_id
    conn = attacked(signed_demo, tmp_path, drop_guards=False)
    seq, ts, digest = conn.execute(
        "SELECT seq, ts, hash FROM journal WHERE batch_id = ? ORDER BY seq DESC LIMIT 1", (batch,)
    ).fetchone()
    later = (datetime.strptime(ts, TS) + timedelta(seconds=1)).strftime(TS)
    data = '{"element":"x","ok":true}'
    forged = entry_hash(digest, batch, seq + 1, later, "write.result", data)
    conn.execute(
        "INSERT INTO journal (batch_id, seq, ts, kind, data, prev_hash, hash) "
        "VALUES (?, ?, ?, 'write.result', ?, ?, ?)",
        (batch, seq + 1, later, data, digest, forged),
    )
    conn.execute(
        "UPDATE batches SET head_seq = ?, head_hash = ? WHERE batch_id = ?",
        (seq + 1, forged, batch),
    )
    conn.close()
    found(verify(signed_demo, tmp_path / "attacked.sqlite"), batch, "not covered by a signed")


def test_edit_and_full_rechain(signed_demo: SignedDemo, tmp_path: Path) -> None:
    batch = signed_demo.batch_id
    conn = attacked(signed_demo, tmp_path)
    (seq,) = conn.execute(
        "SELECT min(seq) FROM journal WHERE batch_id = ? AND kind = 'write.result'", (batch,)
    ).fetchone()
    conn.execute(
        "UPDATE journal SET data = replace(data, '\"ok\":true', '\"ok\":false') "
        "WHERE batch_id = ? AND seq = ?",
        (batch, seq),
    )
    rechain(conn, batch, seq)
    conn.close()
    found(verify(signed_demo, tmp_path / "attacked.sqlite"), batch, "differs from the signed")


def test_sample_edit_with_digest_and_rechain(signed_demo: SignedDemo, tmp_path: Path) -> None:
    batch = signed_demo.batch_id
    conn = attacked(signed_demo, tmp_path)
    block_no, data, old = conn.execute(
        "SELECT block_no, data, sha256 FROM sample_blocks WHERE batch_id = ? "
        "ORDER BY block_no LIMIT 1",
        (batch,),
    ).fetchone()
    rows = json.loads(data)["rows"]
    rows[0][2] = 99.0
    new_data = canonical_json({"rows": rows})
    new = hashlib.sha256(new_data.encode()).hexdigest()
    conn.execute(
        "UPDATE sample_blocks SET data = ?, sha256 = ? WHERE batch_id = ? AND block_no = ?",
        (new_data, new, batch, block_no),
    )
    (seq,) = conn.execute(
        "SELECT seq FROM journal WHERE batch_id = ? AND kind = 'samples.block' AND data LIKE ?",
        (batch, f"%{old}%"),
    ).fetchone()
    conn.execute(
        "UPDATE journal SET data = replace(data, ?, ?) WHERE batch_id = ? AND seq = ?",
        (old, new, batch, seq),
    )
    rechain(conn, batch, seq)
    conn.close()
    found(verify(signed_demo, tmp_path / "attacked.sqlite"), batch, "differs from the signed")


def test_tail_cut_and_head_moved_back(signed_demo: SignedDemo, tmp_path: Path) -> None:
    batch = signed_demo.batch_id
    conn = attacked(signed_demo, tmp_path)
    (last,) = conn.execute("SELECT head_seq FROM batches WHERE batch_id = ?", (batch,)).fetchone()
    (cut,) = conn.execute(  # back to an older signed head; its later checkpoints deleted
        "SELECT max(seq) FROM checkpoints WHERE batch_id = ? AND seq < ?", (batch, last - 30)
    ).fetchone()
    conn.execute("DELETE FROM journal WHERE batch_id = ? AND seq > ?", (batch, cut))
    conn.execute("DELETE FROM checkpoints WHERE batch_id = ? AND seq > ?", (batch, cut))
    (blocks,) = conn.execute(
        "SELECT count(*) FROM journal WHERE batch_id = ? AND kind = 'samples.block'", (batch,)
    ).fetchone()
    conn.execute("DELETE FROM sample_blocks WHERE batch_id = ? AND block_no > ?", (batch, blocks))
    conn.execute(
        "UPDATE batches SET head_seq = ?, head_hash = (SELECT hash FROM journal WHERE "
        "batch_id = ? AND seq = ?) WHERE batch_id = ?",
        (cut, batch, cut, batch),
    )
    conn.close()
    found(verify(signed_demo, tmp_path / "attacked.sqlite"), batch, "sealed this batch at seq")


def test_whole_batch_deleted(signed_demo: SignedDemo, tmp_path: Path) -> None:
    batch = signed_demo.batch_id
    conn = attacked(signed_demo, tmp_path)
    for table in ("journal", "sample_blocks", "checkpoints", "batches"):
        conn.execute(f"DELETE FROM {table} WHERE batch_id = ?", (batch,))
    conn.close()
    found(verify(signed_demo, tmp_path / "attacked.sqlite"), batch, "deleted")


def test_store_rolled_back_to_an_older_copy(signed_demo: SignedDemo, tmp_path: Path) -> None:
    older = tmp_path / "older.sqlite"
    copy(signed_demo.db, older)
    later = tmp_path / "later.sqlite"
    copy(signed_demo.db, later)
    witness = tmp_path / "witness.log"
    witness.write_bytes(signed_demo.witness.read_bytes())
    env = {**signed_demo.env, "CELLBATCH_WITNESS": str(witness)}
    key = tmp_path / "key.pem"
    key.write_bytes(signed_demo.key.read_bytes())
    key.chmod(0o600)
    rotated = cellbatch(env, "keys", "rotate", "--db", f"sqlite:///{later}", "--key", str(key))
    assert rotated.returncode == 0, rotated.stderr  # a site entry, witnessed
    assert verify(signed_demo, older).returncode == 0  # consistent on its own
    found(verify(signed_demo, older, "--witness", str(witness)), "@site", "rolled back")
