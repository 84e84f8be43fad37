"""Separation of duties (R6, R15) and simulation-is-never-product: every escalation path
is refused with the rule named, and the refusal is journaled."""

from __future__ import annotations

from pathlib import Path

import pytest

from ebr import Store
from ebr.people.duties import DutyRefused, check_may_act, require_reason
from ebr.people.lifecycle import RecipeId, approve
from ebr.people.signatures import SignatureError
from ebr.people.users import AuthError, Directory
from ebr.record.model import SITE_CHAIN
from ebr.record.query import read_journal
from ebr.review.exceptions import load_rules
from ebr.review.release import NOT_FOR_USE, QaDesk
from ebr.review.specs import load_specs
from tests.ebr.review_batches import TRIGGERS, write
from tests.ebr.test_users import ADMIN_PW, FAST_HASHER, PW, ready_user

RECIPE = RecipeId("expansion", "1", "ab" * 32)
SPECS = load_specs(Path(__file__).with_name("specs-test.toml"))


@pytest.fixture
def people(store: Store) -> Directory:
    d = Directory(store, hasher=FAST_HASHER)
    d.init("admin", "Site Admin", ADMIN_PW)
    admin = d.authenticate("admin", ADMIN_PW, "test")
    d.add(admin, "root", "Second Admin", ["admin"], "temporary-pw-9")
    for name, role in (("olga", "operator"), ("quinn", "qa"), ("petra", "qp"), ("cleo", "qc")):
        ready_user(d, name, role)
    return d


def _refusals(store: Store, chain: str, kind: str) -> list[str]:
    return [str(e.data.get("rule")) for e in read_journal(store, chain) if e.kind == kind]


def test_admin_cannot_grant_itself_or_another_admin_a_signing_role(
    store: Store, people: Directory
) -> None:
    admin = people.authenticate("admin", ADMIN_PW, "test")
    with pytest.raises(DutyRefused, match="SOD-SELF"):
        people.set_roles(admin, "admin", ["qa"], "I need to approve a recipe")
    with pytest.raises(DutyRefused, match="SOD-ADMIN-NEVER-SIGNS"):
        people.set_roles(admin, "root", ["qa"], "short of QA staff")
    with pytest.raises(DutyRefused, match="SOD-ADMIN-NEVER-SIGNS"):
        people.set_roles(admin, "quinn", ["admin"], "promote")
    with pytest.raises(DutyRefused, match="SOD-SELF"):
        people.reset_password(admin, "admin", "new-admin-pw-77")
    assert people.get("admin").roles == {"admin"}  # type: ignore[union-attr]
    assert people.get("root").roles == {"admin"}  # type: ignore[union-attr]
    assert _refusals(store, SITE_CHAIN, "user.refused") == [
        "SOD-SELF",
        "SOD-ADMIN-NEVER-SIGNS",
        "SOD-ADMIN-NEVER-SIGNS",
        "SOD-SELF",
    ]


def test_admin_cannot_sign_a_recipe_approval(store: Store, people: Directory) -> None:
    with pytest.raises(SignatureError, match="SOD-ADMIN-NEVER-SIGNS"):
        approve(store, people, "admin", ADMIN_PW, RECIPE)
    assert _refusals(store, SITE_CHAIN, "signature.failed") == ["SOD-ADMIN-NEVER-SIGNS"]
    approve(store, people, "quinn", PW, RECIPE)


async def test_only_qc_enters_qc_results(store: Store, people: Directory) -> None:
    script = TRIGGERS["comment"]("B-QC")
    await write(store, script)
    desk = QaDesk(store, people, rules=load_rules(), specs=SPECS)
    for name in ("olga", "quinn", "petra"):
        with pytest.raises(SignatureError, match="SOD-QC-ONLY"):
            desk.record_result("B-QC", name, PW, "sterility", "pass")
    assert _refusals(store, "B-QC", "signature.failed") == ["SOD-QC-ONLY"] * 3
    assert not desk.status("B-QC").results
    desk.record_result("B-QC", "cleo", PW, "sterility", "pass")
    assert set(desk.status("B-QC").results) == {"sterility"}


async def test_a_simulation_record_is_never_released(store: Store, people: Directory) -> None:
    script = TRIGGERS["simulation"]("B-SIM")
    await write(store, script)
    desk = QaDesk(store, people, rules=load_rules(), specs=SPECS)
    for item in desk.status("B-SIM").exceptions:
        desk.dispose("B-SIM", "quinn", PW, item.exception.id, "simulation run, training")
    desk.sign_review("B-SIM", "quinn", PW)
    with pytest.raises(DutyRefused, match="SIM-NOT-PRODUCT"):
        desk.release("B-SIM", "petra", PW, "released")
    with pytest.raises(DutyRefused, match="SIM-NOT-PRODUCT"):
        desk.release("B-SIM", "petra", PW, "released", pending=["sterility"])
    assert _refusals(store, "B-SIM", "signature.failed") == ["SIM-NOT-PRODUCT"] * 2
    assert desk.status("B-SIM").disposition == "in review"
    desk.release("B-SIM", "petra", PW, NOT_FOR_USE, comment="operator training run")
    assert desk.status("B-SIM").disposition == NOT_FOR_USE
    with pytest.raises(Exception, match="already not for use"):
        desk.release("B-SIM", "petra", PW, "released")


def test_commands_check_roles_and_reasons() -> None:
    check_may_act("olga", {"operator"}, "restart")
    check_may_act("sam", {"supervisor"}, "override")
    with pytest.raises(DutyRefused, match="SOD-ROLE"):
        check_may_act("olga", {"operator"}, "override")
    with pytest.raises(DutyRefused, match="SOD-ROLE"):
        check_may_act("quinn", {"qa"}, "start")
    with pytest.raises(DutyRefused, match="SOD-ADMIN-NEVER-SIGNS"):
        check_may_act("admin", {"admin"}, "hold")
    with pytest.raises(DutyRefused, match="REASON-REQUIRED"):
        require_reason("hold", "  ")
    assert require_reason("hold", " pump noise ") == "pump noise"


@pytest.mark.sqlite_only
def test_repeated_failed_attempts_raise_one_journaled_alert(
    store: Store, people: Directory, store_url: str
) -> None:
    from click.testing import CliRunner

    from cellbatch.users_cli import users as users_cli

    for _ in range(4):
        with pytest.raises(AuthError):
            people.authenticate("olga", "not-her-pw-1", "sign performed B-1")
    (alert,) = people.alerts()
    assert alert.data["username"] == "olga" and alert.data["failures"] == 3
    assert _refusals(store, SITE_CHAIN, "user.alert") == ["None"]  # one entry, no rule
    shown = CliRunner().invoke(users_cli, ["audit", "--db", store_url])
    assert shown.exit_code == 0, shown.output
    assert "ALERT" in shown.stdout and "olga: 3 failed attempts" in shown.stdout
    assert shown.stdout.count("wrong password") == 4
