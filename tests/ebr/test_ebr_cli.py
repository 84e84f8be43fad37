"""The `ebr` command group, driven through click's CliRunner."""

from __future__ import annotations

import json
import re
import sqlite3
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result

from cellbatch.ebr_cli import ebr
from ebr import Store, verify_export

Populated = tuple[Store, Path, str, int]

pytestmark = pytest.mark.sqlite_only  # drives the SQLite file; PostgreSQL: test_ebr_postgres


def run(*args: str, env: dict[str, str] | None = None) -> Result:
    return CliRunner(env=env).invoke(ebr, list(args))


def assert_plain_error(result: Result, *fragments: str) -> None:
    """Exit 1, a short message on stderr, and no traceback anywhere."""
    assert result.exit_code == 1, result.output
    assert "Traceback" not in result.output
    assert isinstance(result.exception, SystemExit)
    lines = result.stderr.strip().splitlines()
    assert 1 <= len(lines) <= 2 and lines[0].startswith("error: ")
    for fragment in fragments:
        assert fragment in result.stderr


def test_list_table(populated: Populated) -> None:
    _store, path, *_ = populated
    result = run("list", "--db", str(path))
    assert result.exit_code == 0, result.output
    header, line = result.stdout.splitlines()
    assert header.split() == [
        "ID", "STATE", "RECIPE", "COI", "MODE", "EXC", "DISPOSITION", "ENTRIES",
    ]  # fmt: skip
    cells = line.split()
    assert cells[:5] == ["B-001", "Running", "cart-expansion@3.1", "COI-2026-000123", "GMP"]
    assert cells[-3:] == ["in", "process", "20"]
    open_count, total = map(int, cells[5].split("/"))
    assert 0 <= open_count <= total


def test_list_json(populated: Populated) -> None:
    _store, path, *_ = populated
    result = run("list", "--json", "--db", f"sqlite:///{path}")
    assert result.exit_code == 0
    batches = json.loads(result.stdout)
    assert isinstance(batches, list) and len(batches) == 1
    assert batches[0]["id"] == "B-001" and batches[0]["state"] == "Running"
    assert batches[0]["entries"] == 20 and batches[0]["simulation"] is False
    assert batches[0]["disposition"] == "in process"
    assert batches[0]["open_exceptions"] <= batches[0]["exceptions"]


def test_db_from_environment(populated: Populated) -> None:
    _store, path, *_ = populated
    result = run("list", "--json", env={"CELLBATCH_DB": str(path)})
    assert result.exit_code == 0 and json.loads(result.stdout)[0]["id"] == "B-001"


def test_verify_intact_exits_0(populated: Populated) -> None:
    _store, path, *_ = populated
    for args in (("verify",), ("verify", "B-001")):
        result = run(*args, "--db", str(path))
        assert result.exit_code == 0, result.output
        verdict, summary = result.stdout.strip().splitlines()
        assert verdict == "B-001: intact — 20 entries, 3 sample blocks checked"
        assert re.fullmatch(
            r"1 batch\(es\), 20 entries verified in \d+\.\d\d s \(1 process\)", summary
        )
        assert result.stderr == ""


def test_verify_tampered_exits_2_with_first_bad_record_on_stderr(
    populated: Populated, shell: Callable[..., Any]
) -> None:
    _store, path, *_ = populated
    shell("UPDATE journal SET kind = 'x.y' WHERE batch_id = 'B-001' AND seq = 13")
    result = run("verify", "--db", str(path))
    assert result.exit_code == 2
    assert "B-001: TAMPERED" in result.stdout
    assert result.stderr.strip() == (
        "B-001: journal entry seq 13 (x.y): hash mismatch — entry content was altered"
    )


def test_export_json_to_stdout_and_file(populated: Populated, tmp_path: Path) -> None:
    _store, path, *_ = populated
    result = run("export", "B-001", "--format", "json", "--db", str(path))
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    assert doc["batch"]["batch_id"] == "B-001" and verify_export(doc).ok

    out = tmp_path / "out" / "B-001.json"
    out.parent.mkdir()
    result = run("export", "B-001", "--out", str(out), "--db", str(path))
    assert result.exit_code == 0 and result.stdout == ""
    assert verify_export(json.loads(out.read_text(encoding="utf-8"))).ok
    assert list(out.parent.iterdir()) == [out]


def test_export_csv(populated: Populated, tmp_path: Path) -> None:
    _store, path, *_ = populated
    result = run("export", "B-001", "--format", "CSV", "--db", str(path))
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert lines[0] == "batch_id,tag,time,value,unit,quality"
    assert lines[1] == "B-001,TIC-101.PV,2026-03-01T08:00:00.000000Z,37,degC,good"
    assert len(lines) == 43
    out = tmp_path / "samples.csv"
    assert (
        run("export", "B-001", "--format", "csv", "--out", str(out), "--db", str(path)).exit_code
        == 0
    )
    assert out.read_text(encoding="utf-8").splitlines() == lines


def test_unknown_batch_is_a_plain_error(populated: Populated, tmp_path: Path) -> None:
    _store, path, *_ = populated
    assert_plain_error(run("verify", "B-404", "--db", str(path)), "unknown batch B-404")
    out = tmp_path / "x.json"
    assert_plain_error(
        run("export", "B-404", "--out", str(out), "--db", str(path)), "unknown batch B-404"
    )
    assert not out.exists() and not (tmp_path / "x.json.partial").exists()


def test_unsupported_format_is_a_plain_error(populated: Populated) -> None:
    _store, path, *_ = populated
    assert_plain_error(
        run("export", "B-001", "--format", "xml", "--db", str(path)), "unsupported export format"
    )


@pytest.mark.parametrize("command", [("list",), ("verify",), ("export", "B-001")])
def test_garbage_file_as_database_is_a_plain_error(
    tmp_path: Path, command: tuple[str, ...]
) -> None:
    garbage = tmp_path / "garbage.sqlite"
    garbage.write_bytes(b"\x00\x01 definitely not sqlite " * 100)
    assert_plain_error(run(*command, "--db", str(garbage)), "not a database")


def test_missing_database_is_a_plain_error_and_not_created(tmp_path: Path) -> None:
    path = tmp_path / "absent.sqlite"
    assert_plain_error(run("list", "--db", str(path)), "no eBR database")
    assert not path.exists()


def test_corrupt_database_is_a_plain_error(populated: Populated) -> None:
    store, path, *_ = populated
    store.close()
    conn = sqlite3.connect(path)
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    conn.close()
    data = bytearray(path.read_bytes())
    page = 4096
    for offset in range(page, len(data), 7):  # scribble over every page but the header page
        data[offset] = 0xA5
    path.write_bytes(bytes(data))
    result = run("verify", "--db", str(path))
    assert_plain_error(result, "malformed")


def test_empty_database(tmp_path: Path) -> None:
    path = tmp_path / "empty.sqlite"
    Store.open(path).close()
    assert run("list", "--db", str(path)).stdout.strip() == "no batches"
    assert run("list", "--json", "--db", str(path)).stdout.strip() == "[]"
    assert run("verify", "--db", str(path)).exit_code == 0


def test_export_of_a_tampered_batch_warns_and_carries_the_finding(
    populated: Populated, shell: Callable[..., Any]
) -> None:
    _store, path, *_ = populated
    shell("DELETE FROM journal WHERE batch_id = 'B-001' AND seq = 20")
    result = run("export", "B-001", "--db", str(path))
    assert result.exit_code == 0
    assert result.stderr.startswith("warning: B-001 failed verification: head: journal ends")
    assert json.loads(result.stdout)["verification"]["ok"] is False
