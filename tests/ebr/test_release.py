"""QA's signed work on an ended batch: dispositions, review, release (R9, R14, R15).

Refusal paths: wrong role, wrong password, lockout, an admin signing, release with open
exceptions, the reviewer releasing, missing or failed pending results; and a signature
whose content changed afterwards shows as invalid.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from ebr import Store
from ebr.people.duties import DutyRefused
from ebr.people.signatures import SignatureError
from ebr.people.users import AuthError, Directory
from ebr.record.errors import StoreError
from ebr.record.query import read_journal
from ebr.record.verify import verify_batch
from ebr.review.exceptions import load_rules
from ebr.review.release import PENDING, QaDesk, ReleaseRefused, qa_status
from ebr.review.specs import load_specs
from tests.ebr.review_batches import TRIGGERS, clean, write
from tests.ebr.test_users import ADMIN_PW, FAST_HASHER, PW, ready_user

RULES = load_rules()
SPECS = load_specs(Path(__file__).with_name("specs-test.toml"))
OTHER_TESTS = ("endotoxin", "0.4", "EU/mL"), ("identity", "conforms", None)


def in_spec_others(desk: QaDesk, batch: str) -> None:
    """Record the in-specification results of the tests a release does not wait for."""
    for test, value, unit in OTHER_TESTS:
        desk.record_result(batch, "cleo", PW, test, value, unit)


@pytest.fixture
def people(store: Store) -> Directory:
    d = Directory(store, hasher=FAST_HASHER)
    d.init("admin", "Site Admin", ADMIN_PW)
    staff = (("olga", "operator"), ("quinn", "qa"), ("petra", "qp"), ("paul", "qp"), ("cleo", "qc"))
    for name, role in staff:
        ready_user(d, name, role)
    return d


@pytest.fixture
def desk(store: Store, people: Directory) -> QaDesk:
    return QaDesk(store, people, rules=RULES, specs=SPECS)


async def _batch(store: Store, rule: str = "alarm") -> str:
    script = TRIGGERS[rule](f"B-{rule}")
    await write(store, script)
    return script.batch_id


async def test_release_flow_from_exceptions_to_release(store: Store, desk: QaDesk) -> None:
    batch = await _batch(store, "parameter")
    status = desk.status(batch)
    assert status.disposition == "in review" and status.open_exceptions
    with pytest.raises(ReleaseRefused, match="open exception"):
        desk.release(batch, "petra", PW, "released")
    with pytest.raises(ReleaseRefused, match="open exception"):
        desk.sign_review(batch, "quinn", PW)
    for item in status.exceptions:
        desk.dispose(batch, "quinn", PW, item.exception.id, "within validated range", "DEV-7")
    with pytest.raises(ReleaseRefused, match="already dispositioned"):
        desk.dispose(batch, "quinn", PW, status.exceptions[0].exception.id, "again")
    with pytest.raises(ReleaseRefused, match="no valid QA review"):
        desk.release(batch, "petra", PW, "released")
    desk.sign_review(batch, "quinn", PW, "record complete")
    with pytest.raises(ReleaseRefused, match="no result yet for release test"):
        desk.release(batch, "petra", PW, "released", pending=["sterility"])
    in_spec_others(desk, batch)
    desk.release(batch, "petra", PW, "released", pending=["sterility", "mycoplasma"])
    assert desk.status(batch).disposition == PENDING
    with pytest.raises(ReleaseRefused, match="still waits for: mycoplasma, sterility"):
        desk.release(batch, "petra", PW, "released")
    desk.record_result(batch, "cleo", PW, "sterility", "pass", comment="14-day, no growth")
    desk.record_result(batch, "cleo", PW, "mycoplasma", "pass")
    desk.release(batch, "petra", PW, "released")
    final = desk.status(batch)
    assert final.disposition == "released" and not final.open_exceptions
    assert all(signature.valid for signature in final.signatures)
    meanings = [s.data["meaning"] for s in final.signatures]
    assert meanings.count("reviewed") == len(status.exceptions) + 1
    assert meanings[-6:] == ["performed", "performed", "released", "performed", "performed",
                             "released"]  # fmt: skip
    with pytest.raises(ReleaseRefused, match="already released"):
        desk.release(batch, "paul", PW, "rejected")
    assert verify_batch(store, batch).ok


async def test_only_a_qp_other_than_the_reviewer_releases(store: Store, desk: QaDesk) -> None:
    batch = await _batch(store, "comment")
    for item in desk.status(batch).exceptions:
        desk.dispose(batch, "petra", PW, item.exception.id, "seen")
    desk.sign_review(batch, "petra", PW)
    in_spec_others(desk, batch)
    waits = ["sterility", "mycoplasma"]
    with pytest.raises(DutyRefused, match="SOD-REVIEWER-RELEASES"):
        desk.release(batch, "petra", PW, "released", pending=waits)
    with pytest.raises(SignatureError, match="cannot sign as 'released'"):
        desk.release(batch, "quinn", PW, "released", pending=waits)
    with pytest.raises(SignatureError, match="admin accounts cannot sign"):
        desk.release(batch, "admin", ADMIN_PW, "released", pending=waits)
    desk.release(batch, "paul", PW, "released", pending=waits)
    failed = [e for e in read_journal(store, batch) if e.kind == "signature.failed"]
    assert [(f.data["username"], f.data["reason"], f.data.get("rule")) for f in failed] == [
        ("petra", "refused", "SOD-REVIEWER-RELEASES"),
        ("quinn", "wrong role", "SOD-ROLE"),
        ("admin", "wrong role", "SOD-ADMIN-NEVER-SIGNS"),
    ]


async def test_operators_cannot_disposition_and_wrong_passwords_lock(
    store: Store, desk: QaDesk, people: Directory
) -> None:
    batch = await _batch(store)
    exception_id = desk.status(batch).exceptions[0].exception.id
    with pytest.raises(SignatureError, match="cannot sign as 'reviewed'"):
        desk.dispose(batch, "olga", PW, exception_id, "fine")
    for _ in range(5):
        with pytest.raises(AuthError):
            desk.dispose(batch, "quinn", "not-the-pw-1", exception_id, "fine")
    with pytest.raises(AuthError, match="locked"):
        desk.dispose(batch, "quinn", PW, exception_id, "fine")
    assert people.get("quinn").status == "locked"  # type: ignore[union-attr]
    kinds = [e.kind for e in read_journal(store, batch)]
    assert kinds.count("signature.failed") == 7
    assert desk.status(batch).exceptions[0].open


async def test_a_rejection_needs_no_closed_exceptions_but_a_qp(store: Store, desk: QaDesk) -> None:
    batch = await _batch(store, "identity")
    desk.release(batch, "paul", PW, "rejected", comment="COI mismatch")
    assert desk.status(batch).disposition == "rejected"
    with pytest.raises(ReleaseRefused, match="record is closed"):
        desk.dispose(batch, "quinn", PW, desk.status(batch).exceptions[0].exception.id, "x")


async def test_a_failed_result_only_allows_rejection(store: Store, desk: QaDesk) -> None:
    batch = await _batch(store, "comment")
    for item in desk.status(batch).exceptions:
        desk.dispose(batch, "quinn", PW, item.exception.id, "seen")
    desk.sign_review(batch, "quinn", PW)
    in_spec_others(desk, batch)
    desk.release(batch, "petra", PW, "released", pending=["mycoplasma", "sterility"])
    desk.record_result(batch, "cleo", PW, "mycoplasma", "fail")
    desk.record_result(batch, "cleo", PW, "sterility", "pass")
    with pytest.raises(ReleaseRefused, match="QC-OOS"):
        desk.release(batch, "petra", PW, "released")
    desk.release(batch, "petra", PW, "rejected")
    assert desk.status(batch).disposition == "rejected"


async def test_nothing_is_signed_before_the_batch_ends(store: Store, desk: QaDesk) -> None:
    script = clean("B-RUNNING")
    await write(store, script)
    with pytest.raises(ReleaseRefused, match="is Running; review and release start"):
        desk.release("B-RUNNING", "petra", PW, "rejected")


@pytest.mark.sqlite_only
async def test_a_signature_whose_content_changed_shows_invalid(
    db_path: Path, store: Store, desk: QaDesk
) -> None:
    batch = await _batch(store, "parameter")
    for item in desk.status(batch).exceptions:
        desk.dispose(batch, "quinn", PW, item.exception.id, "within validated range")
    desk.sign_review(batch, "quinn", PW)
    assert all(s.valid for s in desk.status(batch).signatures)
    # Someone with the file edits a formula value after the review (guards dropped).
    with sqlite3.connect(db_path) as conn:
        conn.execute("DROP TRIGGER IF EXISTS journal_no_update")
        (seq, data) = conn.execute(
            "SELECT seq, data FROM journal WHERE batch_id = ? AND kind = 'batch.created'",
            (batch,),
        ).fetchone()
        conn.execute(
            "UPDATE journal SET data = ? WHERE batch_id = ? AND seq = ?",
            (data.replace('"value":550', '"value":560'), batch, seq),
        )
    status = qa_status(store, batch, RULES)
    problems = {s.data["meaning"]: s.problem for s in status.signatures if not s.valid}
    assert problems and all("changed" in str(p) or "no longer" in str(p) for p in problems.values())
    assert "reviewed" in problems
    assert not verify_batch(store, batch).ok


async def test_exports_carry_exceptions_dispositions_and_signatures(
    store: Store, desk: QaDesk
) -> None:
    """The PDF's content and the BatchML copy show the review: signatures as Security
    events with the signer, dispositions as comments; the BatchML still validates."""
    from lxml import etree

    from ebr.exports.batchml import B2MML_NS, batchml_document
    from ebr.exports.pdf import render_pdf
    from ebr.exports.report.analysis import analyse
    from tests.ebr.test_export_batchml import _validate

    batch = await _batch(store, "comment")
    (item,) = desk.status(batch).exceptions
    desk.dispose(batch, "quinn", PW, item.exception.id, "operator note read", "DEV-42")
    desk.sign_review(batch, "quinn", PW)
    in_spec_others(desk, batch)
    for test in ("sterility", "mycoplasma"):
        desk.record_result(batch, "cleo", PW, test, "pass")
    desk.release(batch, "petra", PW, "released")
    record = analyse(store, batch)
    assert record.qa is not None and record.qa.disposition == "released"
    doc, data = render_pdf(record)
    assert data.startswith(b"%PDF") and doc.pages_count >= 5
    xml = batchml_document(record)
    _validate(xml)
    root = etree.fromstring(xml)
    ns = {"b": B2MML_NS}
    security = root.findall(".//b:Event[b:EventSubType='Security']", ns)
    people = {e.findtext("b:PersonID", namespaces=ns) for e in security}
    assert {"quinn", "petra"} <= people and len(security) >= 5
    texts = [
        c.findtext("b:CommentText", namespaces=ns) for c in root.iter(f"{{{B2MML_NS}}}Comment")
    ]
    assert any("operator note read" in str(t) for t in texts)


@pytest.mark.sqlite_only
async def test_list_and_pdf_survive_an_unreadable_record(db_path: Path, store: Store) -> None:
    """A sample block mangled by someone with the file: the review cannot be computed,
    `ebr list` says so instead of failing, and exports name the bad block."""
    from click.testing import CliRunner

    from cellbatch.ebr_cli import ebr as ebr_cli
    from ebr.exports.pdf import render_pdf
    from ebr.exports.report.analysis import analyse

    batch = await _batch(store, "excursion")
    with sqlite3.connect(db_path) as conn:
        conn.execute("DROP TRIGGER IF EXISTS sample_blocks_no_update")
        conn.execute("UPDATE sample_blocks SET data = 'garbage' WHERE batch_id = ?", (batch,))
    result = CliRunner().invoke(ebr_cli, ["list", "--db", str(db_path)])
    assert result.exit_code == 0, result.output
    assert "? (run verify)" in result.stdout
    with pytest.raises(StoreError, match="sample block 1 of batch B-excursion is unreadable"):
        render_pdf(analyse(store, batch))
