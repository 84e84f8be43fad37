"""`cellbatch ebr verify --file EXPORT.json` (no database): exit 0 on an intact export,
2 naming the entry, sample or signature edited; a record failing verification shows
INVALID in `ebr list` and the exports and cannot be released (issue 12.5)."""

from __future__ import annotations

import copy
import json
import sqlite3
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from cellbatch.ebr_cli import ebr as ebr_cli
from ebr import Store
from ebr.exports.json import export_json
from ebr.people.users import Directory
from ebr.record.canonical import canonical_json
from ebr.record.chain import GENESIS_HASH, entry_hash
from ebr.review.exceptions import load_rules
from ebr.review.release import INVALID, QaDesk, ReleaseRefused
from ebr.review.specs import load_specs
from tests.ebr.review_batches import TRIGGERS, write
from tests.ebr.test_users import ADMIN_PW, FAST_HASHER, PW, ready_user

pytestmark = pytest.mark.sqlite_only
SPECS = load_specs(Path(__file__).with_name("specs-test.toml"))


async def _released(store: Store) -> tuple[str, QaDesk]:
    """A reviewed and released batch (signatures over exceptions, results, the record)."""
    people = Directory(store, hasher=FAST_HASHER)
    people.init("admin", "Site Admin", ADMIN_PW)
    for name, role in (("quinn", "qa"), ("petra", "qp"), ("cleo", "qc")):
        ready_user(people, name, role)
    desk = QaDesk(store, people, rules=load_rules(), specs=SPECS)
    batch = "B-OFF"
    await write(store, TRIGGERS["comment"](batch))
    for item in desk.status(batch).exceptions:
        desk.dispose(batch, "quinn", PW, item.exception.id, "read")
    desk.sign_review(batch, "quinn", PW)
    for test, value, unit in (
        ("endotoxin", "0.4", "EU/mL"),
        ("identity", "conforms", None),
        ("sterility", "pass", None),
        ("mycoplasma", "pass", None),
    ):
        desk.record_result(batch, "cleo", PW, test, value, unit)
    desk.release(batch, "petra", PW, "released")
    return batch, desk


def _verify(path: Path) -> Any:
    return CliRunner().invoke(ebr_cli, ["verify", "--file", str(path)])


def _rechain(doc: dict[str, Any]) -> None:
    """What someone with the file would do: recompute every hash and the head."""
    previous = GENESIS_HASH
    batch_id = doc["batch"]["batch_id"]
    for e in doc["journal"]:
        e["prev_hash"] = previous
        previous = e["hash"] = entry_hash(
            previous, batch_id, e["seq"], e["ts"], e["kind"], canonical_json(e["data"])
        )
    doc["batch"]["head_hash"] = previous


async def test_verify_file_finds_an_edited_entry_sample_or_signature(
    store: Store, tmp_path: Path
) -> None:
    batch, _desk = await _released(store)
    doc = export_json(store, batch)
    intact = tmp_path / "intact.json"
    intact.write_text(json.dumps(doc))
    ok = _verify(intact)
    assert ok.exit_code == 0, ok.output
    assert "B-OFF: intact" in ok.stdout and "signature(s) checked" in ok.stdout
    signatures = [e for e in doc["journal"] if e["kind"] == "signature"]
    assert f"{len(signatures)} signature(s)" in ok.stdout

    def tampered(name: str, edit: Any) -> str:
        changed = copy.deepcopy(doc)
        edit(changed)
        path = tmp_path / f"{name}.json"
        path.write_text(json.dumps(changed))
        result = _verify(path)
        assert result.exit_code == 2, (name, result.output)
        assert "TAMPERED" in result.stdout
        return result.stderr

    entry = next(e for e in doc["journal"] if e["kind"] == "write.intent")
    seq = entry["seq"]
    message = tampered("entry", lambda d: d["journal"][seq - 1]["data"].update(new=999))
    assert f"seq {seq}" in message and "hash mismatch" in message
    message = tampered("sample", lambda d: d["sample_blocks"][0]["rows"][0].__setitem__(2, 99.9))
    assert "sample block" in message
    sig = signatures[-1]
    message = tampered(
        "signature",
        lambda d: d["journal"][sig["seq"] - 1]["data"].update(printed_name="Someone Else"),
    )
    assert f"seq {sig['seq']}" in message

    def rewrite(d: dict[str, Any]) -> None:
        d["journal"][seq - 1]["data"]["new"] = 999
        _rechain(d)

    message = tampered("rewritten", rewrite)
    assert "signature SIG-" in message and "changed since signing" in message


async def test_a_tampered_record_is_invalid_everywhere(
    store: Store, db_path: Path, tmp_path: Path
) -> None:
    from ebr.exports.report.analysis import analyse

    batch, desk = await _released(store)
    assert desk.status(batch).disposition == "released"
    with sqlite3.connect(db_path) as conn:
        conn.execute("DROP TRIGGER IF EXISTS journal_no_update")
        conn.execute(
            "UPDATE journal SET data = replace(data, '500', '650') "
            "WHERE batch_id = ? AND kind = 'write.intent'",
            (batch,),
        )
    listed = CliRunner().invoke(ebr_cli, ["list", "--db", str(db_path)])
    assert listed.exit_code == 0, listed.output
    assert "INVALID (run verify)" in listed.stdout and "released" not in listed.stdout
    as_json = CliRunner().invoke(ebr_cli, ["list", "--db", str(db_path), "--json"])
    (row,) = json.loads(as_json.stdout)
    assert row["disposition"] == INVALID
    status = desk.status(batch)
    assert status.disposition == INVALID and not status.valid
    record = analyse(store, batch)
    assert record.qa is not None and record.qa.disposition == INVALID
    with pytest.raises(ReleaseRefused, match="RECORD-INVALID"):
        desk.release(batch, "petra", PW, "rejected")
