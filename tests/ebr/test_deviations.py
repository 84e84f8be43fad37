"""Deviations and CAPA in their own hash chain: opened by hand or from a batch's critical
exceptions and holds, updated with reasons, closed only by QA once every CAPA is done."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from ebr import Store
from ebr.people.signatures import SignatureError
from ebr.people.users import Directory
from ebr.record.model import DEVIATION_CHAIN
from ebr.record.query import list_batches, read_journal
from ebr.record.verify import verify_batch
from ebr.review.deviations import DeviationDesk, DeviationError, deviations
from ebr.review.exceptions import load_rules
from tests.ebr.review_batches import TRIGGERS, write
from tests.ebr.test_users import ADMIN_PW, FAST_HASHER, PW, ready_user

RULES = load_rules()


@pytest.fixture
def people(store: Store) -> Directory:
    d = Directory(store, hasher=FAST_HASHER)
    d.init("admin", "Site Admin", ADMIN_PW)
    for name, role in (("olga", "operator"), ("quinn", "qa"), ("petra", "qp")):
        ready_user(d, name, role)
    return d


@pytest.fixture
def desk(store: Store, people: Directory) -> DeviationDesk:
    return DeviationDesk(store, people)


def test_a_deviation_is_closed_only_by_qa_after_every_capa(
    desk: DeviationDesk, store: Store
) -> None:
    dev = desk.open(
        "olga",
        PW,
        classification="major",
        title="Bag leak at day 3",
        description="Medium seen on the rocker tray",
        links={"batches": ["B-1"], "lots": ["COI-7"]},
    )
    assert dev.deviation_id == "DEV-0001" and dev.open and dev.source == "manual"
    with pytest.raises(DeviationError, match="without: impact, root_cause"):
        desk.close("quinn", PW, dev.deviation_id, "done")
    desk.update(
        "olga",
        PW,
        dev.deviation_id,
        reason="investigation",
        changes={"impact": "no product contact", "root_cause": "bag weld defect"},
        add_links={"exceptions": ["B-1/alarm-12"]},
    )
    capa = desk.add_capa(
        "quinn", PW, dev.deviation_id, action="Supplier audit", owner="quinn", due="2027-01-31"
    )
    with pytest.raises(DeviationError, match="open CAPA"):
        desk.close("quinn", PW, dev.deviation_id, "done")
    desk.set_capa("quinn", PW, dev.deviation_id, capa.capa_id, status="closed", comment="audited")
    with pytest.raises(SignatureError, match="cannot sign as 'approved'"):
        desk.close("olga", PW, dev.deviation_id, "done")
    with pytest.raises(DeviationError, match="only QA"):
        desk.close("petra", PW, dev.deviation_id, "done")
    desk.close("quinn", PW, dev.deviation_id, "root cause fixed")
    closed = desk.get(dev.deviation_id)
    assert closed.status == "closed" and closed.closure is not None and closed.closure.valid
    assert closed.links_to(batch="B-1") and closed.links_to(lot="COI-7")
    assert closed.links["exceptions"] == ["B-1/alarm-12"]
    with pytest.raises(DeviationError, match="is closed"):
        desk.update("olga", PW, dev.deviation_id, reason="x", changes={"impact": "y"})
    assert verify_batch(store, DEVIATION_CHAIN).ok
    assert all(s.batch_id != DEVIATION_CHAIN for s in list_batches(store))
    kinds = [e.kind for e in read_journal(store, DEVIATION_CHAIN)]
    assert kinds[-2:] == ["signature", "deviation.closed"]


def test_bad_input_is_refused(desk: DeviationDesk) -> None:
    with pytest.raises(DeviationError, match="classification must be one of"):
        desk.open("olga", PW, classification="huge", title="t", description="d")
    dev = desk.open("olga", PW, classification="minor", title="t", description="d")
    with pytest.raises(DeviationError, match="not YYYY-MM-DD"):
        desk.add_capa("olga", PW, dev.deviation_id, action="a", owner="o", due="soon")
    with pytest.raises(DeviationError, match="BATCH_ID/EXCEPTION_ID"):
        desk.update("olga", PW, dev.deviation_id, reason="r", add_links={"exceptions": ["x"]})
    with pytest.raises(DeviationError, match="no deviation DEV-0099"):
        desk.get("DEV-0099")
    with pytest.raises(DeviationError, match="admin accounts"):
        desk.open("admin", ADMIN_PW, classification="minor", title="t", description="d")


async def test_holds_and_critical_exceptions_open_deviations_once(
    desk: DeviationDesk, store: Store
) -> None:
    held = TRIGGERS["interruption"]("B-held")
    identity = TRIGGERS["identity"]("B-coi")
    simulated = TRIGGERS["simulation"]("B-sim")
    for script in (held, identity, simulated):
        await write(store, script)
    opened = desk.open_automatic("B-held", RULES) + desk.open_automatic("B-coi", RULES)
    assert opened and all(d.source == "automatic" for d in opened)
    assert {d.links["batches"][0] for d in opened} == {"B-held", "B-coi"}
    assert any(d.classification == "critical" for d in opened)
    assert desk.open_automatic("B-sim", RULES) == []  # simulation mode alone is no deviation
    assert desk.open_automatic("B-held", RULES) == []  # already linked: not opened twice


def test_an_edited_entry_invalidates_the_closure(
    desk: DeviationDesk, store: Store, db_path: Path
) -> None:
    if not str(store.engine.url).startswith("sqlite"):
        pytest.skip("tampers through sqlite3")
    dev = desk.open("olga", PW, classification="minor", title="t", description="d")
    desk.update(
        "olga", PW, dev.deviation_id, reason="r", changes={"impact": "i", "root_cause": "c"}
    )
    desk.close("quinn", PW, dev.deviation_id, "ok")
    conn = sqlite3.connect(db_path)
    conn.execute("DROP TRIGGER IF EXISTS journal_no_update")
    for (name,) in conn.execute("SELECT name FROM sqlite_master WHERE type='trigger'").fetchall():
        conn.execute(f"DROP TRIGGER {name}")
    conn.execute(
        'UPDATE journal SET data = replace(data, \'"impact":"i"\', \'"impact":"none"\') '
        "WHERE batch_id = ? AND kind = 'deviation.updated'",
        (DEVIATION_CHAIN,),
    )
    conn.commit()
    conn.close()
    tampered = deviations(store)[dev.deviation_id]
    assert tampered.closure is not None and not tampered.closure.valid
    assert tampered.open
    assert not verify_batch(store, DEVIATION_CHAIN).ok


@pytest.mark.sqlite_only
async def test_deviations_from_a_batch_are_opened_by_an_authenticated_person(
    desk: DeviationDesk, store: Store, db_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`deviation open --from-batch` names who opens them (password checked) like the
    other deviation commands; without --user it is refused before anything is written."""
    from click.testing import CliRunner

    from cellbatch.cli import cli

    await write(store, TRIGGERS["interruption"]("B-held"))
    db = ("--db", f"sqlite:///{db_path}")
    anonymous = CliRunner().invoke(cli, ["deviation", "open", "--from-batch", "B-held", *db])
    assert anonymous.exit_code == 2 and "--from-batch needs --user" in anonymous.output
    monkeypatch.setenv("CELLBATCH_PASSWORD", "wrong-password-1")
    wrong = ["deviation", "open", "--from-batch", "B-held", "--user", "olga", *db]
    assert CliRunner().invoke(cli, wrong).exit_code == 1
    assert desk.all() == {}
    monkeypatch.setenv("CELLBATCH_PASSWORD", PW)
    done = CliRunner().invoke(cli, wrong)
    assert done.exit_code == 0 and "deviation(s) opened from batch B-held" in done.output
    opened = desk.all().values()
    assert opened and all(d.source == "automatic" and d.opened_by == "olga" for d in opened)
