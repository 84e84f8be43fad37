"""`cellbatch demo` end to end, as a newcomer runs it: a real subprocess, a real
OPC UA server, a real SQLite store; then the record is checked, exported and
tampered with the way a person with the sqlite3 shell would."""

from __future__ import annotations

import json
import os
import re
import shutil
import sqlite3
import subprocess
import sys
from collections import defaultdict
from datetime import datetime
from pathlib import Path

import pytest

from ebr.record.kinds import FIELDS, Kind
from tests.e2e.conftest import Demo
from tests.plantfiles import private_demo_plant

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(600)]  # the first test runs the demo

ROOT = Path(__file__).resolve().parents[2]
CELLBATCH = [sys.executable, "-m", "cellbatch"]


def cellbatch(*args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*CELLBATCH, *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )


def test_demo_reports_batch_wall_time_and_events(demo: Demo) -> None:
    assert re.search(r"1[0-2]\.\d\d simulated days in \d+\.\d s wall time", demo.stdout), (
        demo.stdout
    )
    events = int(re.search(r"(\d+) journal events", demo.stdout).group(1))  # type: ignore[union-attr]
    assert events == len(demo.export["journal"]) > 100
    assert (demo.out / f"{demo.batch_id}.csv").stat().st_size > 0
    assert (demo.out / f"{demo.batch_id}.pdf").read_bytes()[:5] == b"%PDF-"
    assert b"BatchProductionRecord" in (demo.out / f"{demo.batch_id}.batchml.xml").read_bytes()


def test_export_holds_recipe_identity(demo: Demo) -> None:
    created = demo.export["journal"][0]
    assert created["kind"] == "batch.created"
    recipe = created["data"]["recipe"]
    assert recipe["name"] == "car-t-expansion"
    assert recipe["version"] == "1.0.0"
    assert re.fullmatch(r"[0-9a-f]{64}", recipe["content_hash"])
    assert created["data"]["simulation"] is True


def test_every_entry_speaks_the_record_vocabulary(demo: Demo) -> None:
    """Each entry's kind is a ``Kind`` and carries at least the payload fields the
    vocabulary declares for it (``ebr/record/kinds.py``): writers and readers agree."""
    seen = set()
    for entry in demo.export["journal"]:
        kind = Kind(entry["kind"])  # ValueError: a kind outside the vocabulary
        seen.add(kind)
        missing = FIELDS.get(kind, frozenset()) - set(entry["data"])
        assert not missing, f"seq {entry['seq']} {kind}: missing {sorted(missing)}"
    assert Kind.BATCH_CREATED in seen and Kind.WRITE_INTENT in seen


def test_export_holds_every_state_change_in_order(demo: Demo) -> None:
    states = [e for e in demo.export["journal"] if e["kind"] in ("batch.state", "element.state")]
    batch = [e["data"]["to"] for e in states if e["kind"] == "batch.state"]
    assert batch == ["Running", "Complete"]
    # Every element that started also completed.
    started = {e["data"]["element"] for e in states if e["data"]["to"] == "Running"}
    completed = {e["data"]["element"] for e in states if e["data"]["to"] == "Complete"}
    assert started == completed
    assert len(started) > 20


def test_export_holds_every_setpoint_write_with_old_new_and_result(demo: Demo) -> None:
    journal = demo.export["journal"]
    intents = {e["seq"]: e for e in journal if e["kind"] == "write.intent"}
    results = [e for e in journal if e["kind"] == "write.result"]
    assert len(intents) == len(results) >= 20
    for result in results:
        intent = intents[result["data"]["intent"]]
        assert intent["seq"] < result["seq"], "intent journaled before acting"
        assert {"old", "new", "capability"} <= set(intent["data"])
        assert result["data"]["ok"] is True
        assert result["data"]["readback"] == pytest.approx(intent["data"]["new"])


def test_export_has_a_sample_every_simulated_minute_for_each_cpp(demo: Demo) -> None:
    created = demo.export["journal"][0]["data"]
    monitors = created["recipe"]["content"]["monitors"]
    cpp = {f"{m['unit']}.{m['tag']}" for m in monitors}
    assert {"bioreactor.temperature.pv", "bioreactor.ph.pv", "bioreactor.do.pv"} <= cpp
    times: dict[str, list[datetime]] = defaultdict(list)
    for s in demo.export["samples"]:
        times[s["tag"]].append(datetime.fromisoformat(s["time"].replace("Z", "+00:00")))
    states = [e for e in demo.export["journal"] if e["kind"] == "batch.state"]
    start = datetime.fromisoformat(states[0]["data"]["t"].replace("Z", "+00:00"))
    end = datetime.fromisoformat(states[-1]["data"]["t"].replace("Z", "+00:00"))
    assert (end - start).total_seconds() > 10 * 86400
    for tag in cpp:
        stamps = sorted(t for t in times[tag] if start <= t <= end)
        assert stamps, tag
        gaps = [
            (b - a).total_seconds() for a, b in zip([start, *stamps], [*stamps, end], strict=True)
        ]
        assert max(gaps) <= 60.0 + 1e-6, f"{tag}: a gap of {max(gaps)} s"


def test_verify_passes_on_the_demo_store(demo: Demo) -> None:
    proc = cellbatch("ebr", "verify", "--db", f"sqlite:///{demo.db}")
    assert proc.returncode == 0, proc.stderr
    proc = cellbatch("ebr", "verify", demo.batch_id, "--db", f"sqlite:///{demo.db}")
    assert proc.returncode == 0, proc.stderr


def test_ebr_list_shows_the_completed_batch(demo: Demo) -> None:
    proc = cellbatch("ebr", "list", "--json", "--db", f"sqlite:///{demo.db}")
    assert proc.returncode == 0, proc.stderr
    rows = json.loads(proc.stdout)
    assert {"id": demo.batch_id, "state": "Complete"}.items() <= rows[0].items()


def _tampered(demo: Demo, tmp_path: Path, sql: str) -> subprocess.CompletedProcess[str]:
    db = tmp_path / "tampered.sqlite"
    src = sqlite3.connect(demo.db)
    dst = sqlite3.connect(db)
    src.backup(dst)
    src.close()
    # The store's triggers refuse UPDATE and DELETE on the record (tested below); a
    # tamperer with file access drops them first, and the hash chain must still tell.
    for (name,) in dst.execute("SELECT name FROM sqlite_master WHERE type = 'trigger'").fetchall():
        dst.execute(f'DROP TRIGGER "{name}"')
    dst.executescript(sql)
    dst.commit()
    dst.close()
    return cellbatch("ebr", "verify", "--db", f"sqlite:///{db}")


TAMPERS = {
    "change": (
        "UPDATE journal SET data = replace(data, '\"ok\":true', '\"ok\":false') "
        "WHERE seq = (SELECT min(seq) FROM journal WHERE kind = 'write.result')",
        None,
    ),
    "delete": ("DELETE FROM journal WHERE seq = 40", 40),
    "delete-last": ("DELETE FROM journal WHERE seq = (SELECT max(seq) FROM journal)", None),
    "reorder": (
        "UPDATE journal SET seq = -1 WHERE seq = 30; UPDATE journal SET seq = 30 WHERE seq = 31;"
        " UPDATE journal SET seq = 31 WHERE seq = -1",
        30,
    ),
}


@pytest.mark.parametrize("how", list(TAMPERS))
def test_any_single_row_tampering_is_detected_and_named(
    demo: Demo, tmp_path: Path, how: str
) -> None:
    sql, seq = TAMPERS[how]
    proc = _tampered(demo, tmp_path, sql)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert demo.batch_id in proc.stderr
    if seq is not None:
        assert re.search(rf"\bseq {seq}\b", proc.stderr), proc.stderr
    assert "Traceback" not in proc.stderr


@pytest.mark.parametrize(
    "sql", ["UPDATE journal SET kind = 'x' WHERE seq = 5", "DELETE FROM journal WHERE seq = 5"]
)
def test_the_database_refuses_updates_and_deletes(demo: Demo, sql: str) -> None:
    db = sqlite3.connect(demo.db)
    try:
        with pytest.raises(sqlite3.IntegrityError, match="append-only"):
            db.execute(sql)
    finally:
        db.close()


def test_sim_serve_prints_every_endpoint_and_uals_browses(tmp_path: Path) -> None:
    """`sim serve` prints NAME URL per simulator, then `ready`; an independent OPC UA
    client (asyncua's CLI tools) browses and reads the bioreactors."""
    plant = private_demo_plant(tmp_path)
    server = subprocess.Popen(
        [*CELLBATCH, "sim", "serve", "--plant", str(plant), "--time-scale", "100"],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert server.stdout is not None
        lines = [server.stdout.readline().strip() for _ in range(5)]
        assert lines[-1] == "ready", lines
        endpoints = dict(line.split() for line in lines[:-1])
        assert endpoints["cell-processor"].startswith("modbus+tcp://127.0.0.1:")
        assert endpoints["pump-1"].startswith("serial:///dev/pts/")
        assert endpoints["balance-1"].startswith("serial:///dev/pts/")
        url = endpoints["bioreactors"]
        assert url.startswith("opc.tcp://127.0.0.1:")
        bindir = Path(sys.executable).parent
        ls = subprocess.run(
            [
                str(bindir / "uals"),
                "-u",
                url,
                "-l",
                "0",
                "-d",
                "3",
                "-p",
                "0:Objects,2:Bioreactors",
            ],
            capture_output=True,
            text=True,
            timeout=30,
        )
        assert "BR-01" in ls.stdout and "Temperature" in ls.stdout, ls.stdout + ls.stderr
        rd = subprocess.run(
            [str(bindir / "uaread"), "-u", url, "-n", "ns=2;s=BR-01.Temperature.PV"],
            capture_output=True,
            text=True,
            timeout=30,
        )
        assert re.search(r"\d+\.\d+", rd.stdout), rd.stdout + rd.stderr
    finally:
        server.terminate()
        assert server.wait(10) == 0
        shutil.rmtree(tmp_path, ignore_errors=True)
