"""User accounts on the site chain: roles, passwords, aging, lockout, disabling (R6, R10–R13)."""

from __future__ import annotations

from datetime import timedelta

import pytest
from argon2 import PasswordHasher

from ebr import Store
from ebr.people.lifecycle import LifecycleError, RecipeId, approve, recipe_status, retire
from ebr.people.signatures import SignatureError, SigningSession, check_may_sign
from ebr.people.users import AuthError, Directory, UserAdminError
from ebr.record.model import SITE_CHAIN
from ebr.record.query import list_batches, read_journal
from ebr.record.verify import verify_batch
from tests.ebr.conftest import FakeClock

FAST_HASHER = PasswordHasher(time_cost=1, memory_cost=1024, parallelism=1)
"""Real argon2id with small costs so the suite stays quick (the CLI uses the defaults)."""
ADMIN_PW = "site-key-2026"
PW = "first-pass-123"


def directory(store: Store, clock: FakeClock | None = None) -> Directory:
    """A directory on `store` with a cheap hasher and a hand-moved clock."""
    return Directory(store, hasher=FAST_HASHER, clock=clock or FakeClock())


def ready_user(d: Directory, username: str, *roles: str, password: str = PW) -> None:
    """Add a user as the admin and let them set their own password."""
    admin = d.authenticate("admin", ADMIN_PW, "test")
    d.add(admin, username, username.title(), roles, "temporary-pw-9")
    user = d.authenticate(username, "temporary-pw-9", "test", allow_must_change=True)
    d.change_password(user, password)


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def users(store: Store, clock: FakeClock) -> Directory:
    d = directory(store, clock)
    d.init("admin", "Site Admin", ADMIN_PW)
    return d


def test_init_creates_one_admin_and_refuses_a_second_init(users: Directory) -> None:
    (admin,) = users.users()
    assert (admin.user_id, admin.roles, admin.status) == ("U0001", frozenset({"admin"}), "active")
    with pytest.raises(UserAdminError, match="already initialised"):
        users.init("root", "Root", ADMIN_PW)


def test_every_change_is_journaled_on_a_verified_site_chain_hidden_from_batches(
    store: Store, users: Directory
) -> None:
    ready_user(users, "olga", "operator")
    kinds = [e.kind for e in read_journal(store, SITE_CHAIN)]
    assert kinds[0] == "batch.created"
    assert {"user.created", "user.login", "user.password_set"} <= set(kinds)
    assert verify_batch(store, SITE_CHAIN).ok
    assert all(s.batch_id != SITE_CHAIN for s in list_batches(store))
    assert "password_hash" not in users.get("olga").to_dict()  # type: ignore[union-attr]


def test_new_users_must_change_the_admin_set_password_before_use(users: Directory) -> None:
    admin = users.authenticate("admin", ADMIN_PW, "test")
    users.add(admin, "quinn", "Quinn QA", ["qa"], "temporary-pw-9")
    with pytest.raises(AuthError, match="must be changed"):
        users.authenticate("quinn", "temporary-pw-9", "test")
    quinn = users.authenticate("quinn", "temporary-pw-9", "test", allow_must_change=True)
    with pytest.raises(UserAdminError, match="differ from the last"):
        users.change_password(quinn, "temporary-pw-9")
    users.change_password(quinn, "my-own-pw-41")
    assert users.authenticate("quinn", "my-own-pw-41", "test").username == "quinn"


@pytest.mark.parametrize(
    ("password", "message"),
    [
        ("short1", "at least 10"),
        ("onlyletters", "letters and digits"),
        ("1234567890", "letters and digits"),
        ("xx-olga-2026", "username"),
    ],
)
def test_password_rules(users: Directory, password: str, message: str) -> None:
    admin = users.authenticate("admin", ADMIN_PW, "test")
    with pytest.raises(UserAdminError, match=message):
        users.add(admin, "olga", "Olga", ["operator"], password)


def test_roles_are_checked_and_admin_stands_alone(users: Directory) -> None:
    admin = users.authenticate("admin", ADMIN_PW, "test")
    with pytest.raises(UserAdminError, match="unknown role"):
        users.add(admin, "olga", "Olga", ["chef"], PW)
    with pytest.raises(UserAdminError, match="cannot be combined"):
        users.add(admin, "olga", "Olga", ["admin", "qa"], PW)
    ready_user(users, "olga", "operator")
    olga = users.authenticate("olga", PW, "test")
    with pytest.raises(AuthError, match="admin role"):
        users.add(olga, "mallory", "Mallory", ["qp"], PW)


def test_passwords_age_out(users: Directory, clock: FakeClock) -> None:
    ready_user(users, "olga", "operator")
    clock.advance(days=91)
    with pytest.raises(AuthError, match="expired"):
        users.authenticate("olga", PW, "test")
    olga = users.authenticate("olga", PW, "test", allow_must_change=True)
    users.change_password(olga, "brand-new-pw-7")
    assert users.authenticate("olga", "brand-new-pw-7", "test").username == "olga"


def test_lockout_after_repeated_failures_until_an_admin_unlocks(
    store: Store, users: Directory
) -> None:
    ready_user(users, "olga", "operator")
    for _ in range(5):
        with pytest.raises(AuthError, match="wrong password"):
            users.authenticate("olga", "not-her-pw-1", "test")
    with pytest.raises(AuthError, match="locked"):
        users.authenticate("olga", PW, "test")
    kinds = [e.kind for e in read_journal(store, SITE_CHAIN)]
    assert kinds.count("user.auth_failed") == 6 and kinds.count("user.locked") == 1
    admin = users.authenticate("admin", ADMIN_PW, "test")
    users.unlock(admin, "olga", "identity confirmed by phone")
    assert users.authenticate("olga", PW, "test").status == "active"


def test_a_good_login_resets_the_failure_count(users: Directory) -> None:
    ready_user(users, "olga", "operator")
    for _ in range(4):
        with pytest.raises(AuthError):
            users.authenticate("olga", "not-her-pw-1", "test")
    users.authenticate("olga", PW, "test")
    for _ in range(4):
        with pytest.raises(AuthError):
            users.authenticate("olga", "not-her-pw-1", "test")
    assert users.get("olga").status == "active"  # type: ignore[union-attr]


def test_unknown_users_fail_like_wrong_passwords(users: Directory) -> None:
    with pytest.raises(AuthError, match="unknown user or wrong password"):
        users.authenticate("nobody", PW, "test")


def test_disabled_users_keep_their_id_and_name_forever(users: Directory) -> None:
    ready_user(users, "olga", "operator")
    admin = users.authenticate("admin", ADMIN_PW, "test")
    users.disable(admin, "olga", "left the company")
    with pytest.raises(AuthError, match="disabled"):
        users.authenticate("olga", PW, "test")
    with pytest.raises(UserAdminError, match="never reused"):
        users.add(admin, "olga", "Another Olga", ["operator"], PW)
    users.add(admin, "olga2", "Another Olga", ["operator"], PW)
    assert [u.user_id for u in users.users()] == ["U0001", "U0002", "U0003"]
    with pytest.raises(UserAdminError, match="own account"):
        users.disable(admin, "admin", "oops")


def test_role_changes_need_a_reason_and_are_journaled(store: Store, users: Directory) -> None:
    ready_user(users, "quinn", "qa")
    admin = users.authenticate("admin", ADMIN_PW, "test")
    with pytest.raises(UserAdminError, match="reason"):
        users.set_roles(admin, "quinn", ["qa", "qp"], " ")
    users.set_roles(admin, "quinn", ["qa", "qp"], "QP certification 2026-11")
    assert users.get("quinn").roles == {"qa", "qp"}  # type: ignore[union-attr]
    (change,) = [e for e in read_journal(store, SITE_CHAIN) if e.kind == "user.roles_changed"]
    assert change.data["old"] == ["qa"] and change.data["new"] == ["qa", "qp"]


def test_who_may_sign_what(users: Directory) -> None:
    ready_user(users, "olga", "operator")
    ready_user(users, "petra", "qp")
    admin = users.authenticate("admin", ADMIN_PW, "test")
    olga = users.authenticate("olga", PW, "test")
    petra = users.authenticate("petra", PW, "test")
    with pytest.raises(SignatureError, match="admin accounts cannot sign"):
        check_may_sign(admin, "performed")
    with pytest.raises(SignatureError, match="cannot sign as 'released'"):
        check_may_sign(olga, "released")
    check_may_sign(olga, "verified")
    check_may_sign(petra, "released")


def test_signing_session_wants_the_id_first_and_after_idle_timeout(
    users: Directory, clock: FakeClock
) -> None:
    ready_user(users, "olga", "operator")
    session = SigningSession(users, idle_timeout=timedelta(minutes=15), clock=clock)
    with pytest.raises(AuthError, match="needs user ID"):
        session.authenticate(PW, "sign")
    session.authenticate(PW, "sign", username="olga")
    clock.advance(minutes=5)
    assert not session.needs_user_id
    assert session.authenticate(PW, "sign").username == "olga"
    clock.advance(minutes=16)
    assert session.needs_user_id
    with pytest.raises(AuthError, match="needs user ID"):
        session.authenticate(PW, "sign")


def test_recipe_lifecycle_draft_approved_retired(store: Store, users: Directory) -> None:
    ready_user(users, "quinn", "qa")
    ready_user(users, "olga", "operator")
    recipe = RecipeId("car-t-expansion", "1.0", "ab" * 32)
    assert recipe_status(store, recipe) == "draft"
    with pytest.raises(SignatureError):
        approve(store, users, "olga", PW, recipe)
    approve(store, users, "quinn", PW, recipe, "reviewed against the MBR")
    assert recipe_status(store, recipe) == "approved"
    assert recipe_status(store, RecipeId("car-t-expansion", "1.0", "cd" * 32)) == "draft"
    with pytest.raises(LifecycleError, match="already approved"):
        approve(store, users, "quinn", PW, recipe)
    with pytest.raises(LifecycleError, match="reason"):
        retire(store, users, "quinn", PW, recipe, "")
    retire(store, users, "quinn", PW, recipe, "superseded by 1.1")
    assert recipe_status(store, recipe) == "retired"
    kinds = [e.kind for e in read_journal(store, SITE_CHAIN)]
    assert "signature.failed" in kinds and kinds.count("signature") == 2
    assert verify_batch(store, SITE_CHAIN).ok
