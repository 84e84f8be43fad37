"""Lots: hand-overs with identity checks, the disposition package, and the QP's release
over the package hash — refused while a deviation is open, accepted after its closure."""

from __future__ import annotations

import itertools
import json
import shutil
import subprocess
from pathlib import Path

import pytest

from ebr import Store
from ebr.exports.lot_package import write_package
from ebr.people.users import Directory
from ebr.record.model import LOT_CHAIN
from ebr.record.query import read_journal
from ebr.record.verify import verify_batch
from ebr.review.deviations import DeviationDesk
from ebr.review.exceptions import load_rules
from ebr.review.lots import LotDesk, LotRefused, build_package, lot_decision
from ebr.review.release import QaDesk
from tests.ebr.lot_batches import COI, write_lot
from tests.ebr.test_users import ADMIN_PW, FAST_HASHER, PW, ready_user

RULES = load_rules()


@pytest.fixture
def people(store: Store) -> Directory:
    d = Directory(store, hasher=FAST_HASHER)
    d.init("admin", "Site Admin", ADMIN_PW)
    for name, role in (("olga", "operator"), ("quinn", "qa"), ("petra", "qp"), ("cleo", "qc")):
        ready_user(d, name, role)
    return d


def _hand_over(lots: LotDesk, ids: list[str]) -> None:
    for earlier, later in itertools.pairwise(ids):
        lots.handover(
            "olga", PW, COI, from_batch=earlier, to_batch=later, volume_ml=50,
            viable_cells=2.0e9, containers=[f"BAG-{later}"], scanned=COI,
        )  # fmt: skip


def _review_and_test(qa: QaDesk, ids: list[str]) -> None:
    values = {"viability": 91.0, "recovery": 88.0, "post_thaw_viability": 84.0}
    for batch_id in ids:
        qa.sign_review(batch_id, "quinn", PW, "record complete")
    for batch_id, tests in zip(
        ids, (["viability"], ["recovery"], ["post_thaw_viability", "sterility"]), strict=True
    ):
        for test in tests:
            value = values.get(test)
            if value is None:  # a text CQA (expect: negative)
                qa.record_result(batch_id, "cleo", PW, test, "negative")
            else:
                qa.record_result(batch_id, "cleo", PW, test, str(value), "%")


async def test_lot_release_is_refused_until_the_deviation_is_closed(
    store: Store, people: Directory, tmp_path: Path
) -> None:
    ids = await write_lot(store)
    lots = LotDesk(store, people, rules=RULES)
    qa = QaDesk(store, people, rules=RULES)
    first = build_package(store, COI, RULES)
    assert [b["batch_id"] for b in first.content["batches"]] == ids
    findings = " | ".join(first.findings)
    assert "not reviewed by QA" in findings and "QC sterility missing" in findings
    assert f"no hand-over recorded from {ids[0]} to {ids[1]}" in findings

    with pytest.raises(LotRefused, match="identity mismatch"):
        lots.handover(
            "olga", PW, COI, from_batch=ids[0], to_batch=ids[1], volume_ml=50,
            viable_cells=2e9, containers=["BAG-X"], scanned="COI-SOMEONE-ELSE",
        )  # fmt: skip
    _hand_over(lots, ids)
    _review_and_test(qa, ids)
    dev = DeviationDesk(store, people).open(
        "olga", PW, classification="minor", title="Label printer jam",
        description="Reprinted the cryo bag label", links={"lots": [COI]},
    )  # fmt: skip
    with pytest.raises(LotRefused, match=f"deviation {dev.deviation_id} \\(minor\\) is open"):
        lots.release("petra", PW, COI, "released")
    deviations = DeviationDesk(store, people)
    changes = {"impact": "none: label verified", "root_cause": "worn roller"}
    deviations.update("quinn", PW, dev.deviation_id, reason="investigated", changes=changes)
    deviations.close("quinn", PW, dev.deviation_id, "no impact on the product")
    with pytest.raises(Exception, match="cannot sign as 'released'"):
        lots.release("quinn", PW, COI, "released")
    package, signature = lots.release("petra", PW, COI, "released", "all batches in spec")
    assert package.findings == [] and signature.valid
    decision = lot_decision(store, build_package(store, COI, RULES))
    assert decision is not None and decision.decision == "released" and decision.signature.valid
    with pytest.raises(LotRefused, match="already released"):
        lots.release("petra", PW, COI, "rejected")
    kinds = [e.kind for e in read_journal(store, LOT_CHAIN)]
    assert kinds.count("lot.handover") == 2 and "identity.mismatch" in kinds
    assert kinds[-2:] == ["signature", "lot.decision"]
    assert verify_batch(store, LOT_CHAIN).ok

    json_path, pdf_path = write_package(package, tmp_path / "pkg", decision)
    document = json.loads(json_path.read_text())
    assert document["package_sha256"] == package.sha256
    assert [b["batch_id"] for b in document["batches"]] == ids
    assert len(document["handovers"]) == 2
    assert all(h["signature"]["valid"] for h in document["handovers"])
    assert document["deviations"][0]["status"] == "closed"
    assert document["batches"][2]["qc_results"][1] == {
        "cqa": "sterility", "unit": None, "method": "BacT/ALERT", "specification": "negative",
        "value": "negative", "outcome": "pass", "status": "pass",
    }  # fmt: skip
    assert pdf_path.read_bytes().startswith(b"%PDF")
    text = pdf_text(pdf_path)
    if text is not None:
        for name in (*ids, "Quinn", "Petra", "Olga", f"{ids[0]} → {ids[1]}", dev.deviation_id):
            assert name in text, name


def pdf_text(path: Path) -> str | None:
    """The PDF's text through poppler's pdftotext, or None when it is not installed."""
    tool = shutil.which("pdftotext")
    if tool is None:
        return None
    done = subprocess.run([tool, str(path), "-"], capture_output=True, text=True, check=True)
    return done.stdout


async def test_a_later_change_invalidates_the_lot_decision(store: Store, people: Directory) -> None:
    ids = await write_lot(store, "M")
    lots = LotDesk(store, people, rules=RULES)
    lots.release("petra", PW, COI, "rejected", "no hand-over records")
    decision = lot_decision(store, build_package(store, COI, RULES))
    assert decision is not None and decision.signature.valid
    _hand_over(lots, ids)  # the package the QP signed is no longer what the store says
    after = lot_decision(store, build_package(store, COI, RULES))
    assert after is not None and not after.signature.valid
    assert "changed since it was signed" in str(after.signature.problem)
