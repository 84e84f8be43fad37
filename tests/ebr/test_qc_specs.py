"""QC release tests with specifications: results judged against the product's spec, an
out-of-specification result is a critical exception and blocks release (QC-OOS)."""

from __future__ import annotations

from pathlib import Path

import pytest

from ebr import Store
from ebr.people.users import Directory
from ebr.record.query import read_journal
from ebr.review.exceptions import load_rules
from ebr.review.release import QaDesk, ReleaseRefused
from ebr.review.specs import IN_SPEC, OOS, SpecError, load_specs
from tests.ebr.review_batches import TRIGGERS, write
from tests.ebr.test_users import ADMIN_PW, FAST_HASHER, PW, ready_user

SPECS = load_specs(Path(__file__).with_name("specs-test.toml"))


def test_results_are_judged_against_the_specification() -> None:
    endotoxin = SPECS.test("CAR-T", "endotoxin")
    assert endotoxin.evaluate("0.4", "EU/mL") == (0.4, IN_SPEC)
    assert endotoxin.evaluate("5", "EU/mL") == (5.0, IN_SPEC)
    assert endotoxin.evaluate("7.5", "EU/mL") == (7.5, OOS)
    with pytest.raises(SpecError, match="in 'EU/mL'"):
        endotoxin.evaluate("0.4", "EU/ml")
    with pytest.raises(SpecError, match="not a number"):
        endotoxin.evaluate("low", "EU/mL")
    sterility = SPECS.test("CAR-T", "sterility")
    assert sterility.evaluate("Pass") == ("pass", IN_SPEC)
    assert sterility.evaluate("fail") == ("fail", OOS)
    with pytest.raises(SpecError, match="pass or fail"):
        sterility.evaluate("no growth")
    identity = SPECS.test("CAR-T", "identity")
    assert identity.evaluate("Conforms")[1] == IN_SPEC
    assert identity.evaluate("does not conform")[1] == OOS
    with pytest.raises(SpecError, match="no release test 'potency'"):
        SPECS.test("CAR-T", "potency")


def test_the_packaged_specifications_cover_the_cryopreserved_product() -> None:
    tests = load_specs().tests("Autologous anti-CD19 CAR-T, cryopreserved")
    assert {"sterility", "endotoxin", "viability"} <= set(tests)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('[[spec]]\nproduct = "P"\nname = "x"\nmethod = "m"\nkind = "numeric"\nlow = 1\n', "unit"),
        ('[[spec]]\nproduct = "P"\nname = "x"\nmethod = "m"\nkind = "weight"\n', "kind must"),
        ('[[spec]]\nproduct = "P"\nname = "x"\nkind = "passfail"\n', "'method' must"),
        ('[[spec]]\nproduct = "P"\nname = "x"\nmethod = "m"\nkind = "text"\n', "accepted"),
        ("[other]\n", "unknown table"),
    ],
)
def test_a_bad_specifications_file_is_named(tmp_path: Path, text: str, message: str) -> None:
    site = tmp_path / "site-specs.toml"
    site.write_text(text)
    with pytest.raises(SpecError, match=message) as caught:
        load_specs(site)
    assert str(site) in str(caught.value)


@pytest.fixture
def desk(store: Store) -> QaDesk:
    people = Directory(store, hasher=FAST_HASHER)
    people.init("admin", "Site Admin", ADMIN_PW)
    for name, role in (("quinn", "qa"), ("petra", "qp"), ("cleo", "qc")):
        ready_user(people, name, role)
    return QaDesk(store, people, rules=load_rules(), specs=SPECS)


async def _reviewed(store: Store, desk: QaDesk, batch: str) -> None:
    await write(store, TRIGGERS["comment"](batch))
    for item in desk.status(batch).exceptions:
        desk.dispose(batch, "quinn", PW, item.exception.id, "read")
    desk.sign_review(batch, "quinn", PW)


async def test_out_of_specification_blocks_release(store: Store, desk: QaDesk) -> None:
    await _reviewed(store, desk, "B-OOS")
    desk.record_result("B-OOS", "cleo", PW, "endotoxin", "7.5", "EU/mL", "CoA 123")
    desk.record_result("B-OOS", "cleo", PW, "identity", "conforms")
    status = desk.status("B-OOS")
    (oos,) = [s for s in status.exceptions if s.exception.rule == "qc_result"]
    assert oos.exception.severity == "critical" and "7.5 EU/mL" in oos.exception.detail
    result = status.results["endotoxin"]
    assert (result["verdict"], result["specification"]["high"]) == (OOS, 5)
    desk.dispose("B-OOS", "quinn", PW, oos.exception.id, "investigated, DEV-9", "DEV-9")
    with pytest.raises(ReleaseRefused, match="QC-OOS"):
        desk.release("B-OOS", "petra", PW, "released", pending=["sterility", "mycoplasma"])
    desk.release("B-OOS", "petra", PW, "rejected", comment="endotoxin OOS")
    assert desk.status("B-OOS").disposition == "rejected"


async def test_in_specification_results_lift_released_pending(store: Store, desk: QaDesk) -> None:
    await _reviewed(store, desk, "B-OK")
    with pytest.raises(ReleaseRefused, match="no result yet"):
        desk.release("B-OK", "petra", PW, "released")
    with pytest.raises(ReleaseRefused, match="no release test 'potency'"):
        desk.release("B-OK", "petra", PW, "released", pending=["potency"])
    desk.record_result("B-OK", "cleo", PW, "endotoxin", "0.2", "EU/mL")
    desk.record_result("B-OK", "cleo", PW, "identity", "conforms")
    desk.release("B-OK", "petra", PW, "released", pending=["sterility", "mycoplasma"])
    desk.record_result("B-OK", "cleo", PW, "sterility", "pass")
    with pytest.raises(ReleaseRefused, match="still waits for: mycoplasma"):
        desk.release("B-OK", "petra", PW, "released")
    desk.record_result("B-OK", "cleo", PW, "mycoplasma", "pass")
    desk.release("B-OK", "petra", PW, "released")
    assert desk.status("B-OK").disposition == "released"
    results = [e.data for e in read_journal(store, "B-OK") if e.kind == "qc.result"]
    assert [(r["test"], r["verdict"]) for r in results][:1] == [("endotoxin", IN_SPEC)]
    assert results[0]["method"] == "Ph. Eur. 2.6.14 LAL" and results[0]["unit"] == "EU/mL"
