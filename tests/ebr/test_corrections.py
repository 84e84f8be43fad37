"""Corrections of typed entries (R4): a new signed entry with a reason, verified again
where the original needed it; the original stays; review and exports show both."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from cellbatch.ebr_cli import ebr as ebr_cli
from ebr import Store
from ebr.exports.json import export_json
from ebr.people.users import Directory
from ebr.record.query import read_journal
from ebr.record.verify import verify_batch
from ebr.review.corrections import correct
from ebr.review.exceptions import load_rules
from ebr.review.release import QaDesk, ReleaseRefused
from tests.ebr.review_batches import TRIGGERS, write
from tests.ebr.test_users import ADMIN_PW, FAST_HASHER, PW, ready_user


@pytest.fixture
def desk(store: Store) -> QaDesk:
    people = Directory(store, hasher=FAST_HASHER)
    people.init("admin", "Site Admin", ADMIN_PW)
    for name, role in (("anna", "operator"), ("bob", "operator"), ("quinn", "qa")):
        ready_user(people, name, role)
    return QaDesk(store, people, rules=load_rules())


def _answer_seq(store: Store, batch: str) -> int:
    return next(e.seq for e in read_journal(store, batch) if e.kind == "prompt.answered")


async def test_a_verified_count_is_corrected_by_two_signatures(store: Store, desk: QaDesk) -> None:
    await write(store, TRIGGERS["manual_entry"]("B-COR"))
    seq = _answer_seq(store, "B-COR")
    fix = {"viable_density": 1.2e6}
    with pytest.raises(ReleaseRefused, match="needs a reason"):
        correct(desk, "B-COR", seq, fix, " ", ("anna", PW), ("bob", PW))
    with pytest.raises(ReleaseRefused, match="needed a second person"):
        correct(desk, "B-COR", seq, fix, "typo", ("anna", PW))
    with pytest.raises(ReleaseRefused, match="another person"):
        correct(desk, "B-COR", seq, fix, "typo", ("anna", PW), ("anna", PW))
    with pytest.raises(ReleaseRefused, match="cannot correct colour"):
        correct(desk, "B-COR", seq, {"colour": "red"}, "typo", ("anna", PW), ("bob", PW))
    with pytest.raises(ReleaseRefused, match="not a typed entry"):
        correct(desk, "B-COR", 2, fix, "typo", ("anna", PW), ("bob", PW))
    entry = correct(desk, "B-COR", seq, fix, "transcription error", ("anna", PW), ("bob", PW))
    assert entry.data["old"] == {"viable_density": 2.1e6} and entry.data["new"] == fix
    journal = read_journal(store, "B-COR")
    original = next(e for e in journal if e.seq == seq)
    assert original.data["values"]["viable_density"] == 2.1e6  # never edited
    signed = [e.data for e in journal if e.kind == "signature" and e.seq > entry.seq]
    assert [(s["username"], s["meaning"]) for s in signed] == [
        ("anna", "performed"),
        ("bob", "verified"),
    ]
    status = desk.status("B-COR")
    assert all(s.valid for s in status.signatures)
    (found,) = [s.exception for s in status.exceptions if s.exception.rule == "correction"]
    assert "2100000 → 1200000" in found.title and "transcription error" in found.detail
    exported = [e for e in export_json(store, "B-COR")["journal"] if e["seq"] in (seq, entry.seq)]
    assert len(exported) == 2  # the export holds the original and the correction
    assert verify_batch(store, "B-COR").ok


@pytest.mark.sqlite_only
async def test_correct_from_the_command_line(store: Store, desk: QaDesk, tmp_path: Path) -> None:
    await write(store, TRIGGERS["manual_entry"]("B-CLI"))
    seq = _answer_seq(store, "B-CLI")
    url = str(store.engine.url)
    env = {"CELLBATCH_PASSWORD": PW, "CELLBATCH_VERIFIER_PASSWORD": PW}
    args = ["correct", "B-CLI", str(seq), "--set", "viability=93.5", "--reason", "misread",
            "--user", "anna", "--db", url]  # fmt: skip
    refused = CliRunner().invoke(ebr_cli, args, env=env)
    assert refused.exit_code == 1 and "second person" in refused.stderr
    done = CliRunner().invoke(ebr_cli, [*args, "--verifier", "bob"], env=env)
    assert done.exit_code == 0, done.output
    assert f"seq {seq} corrected" in done.stdout and "91.5 → 93.5" in done.stdout
