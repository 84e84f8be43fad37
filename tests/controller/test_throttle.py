"""Failed network sign-ins are throttled per account and per client address, and do not
lock anyone out."""

from __future__ import annotations

from pathlib import Path

import pytest

from controller.throttle import SignInThrottle
from ebr import Store
from ebr.people.users import AuthError, Directory
from tests.ebr.test_users import FAST_HASHER


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_backoff_doubles_after_the_free_attempts_and_a_success_clears_it() -> None:
    clock = Clock()
    throttle = SignInThrottle(free=3, base_s=1.0, cap_s=8.0, clock=clock)
    for _ in range(3):
        assert throttle.wait_s("olga") == 0
        throttle.failed("olga")
    assert throttle.wait_s("olga") == 1.0 and throttle.wait_s("vera") == 0
    clock.now += 1.0
    throttle.failed("olga")
    assert throttle.wait_s("olga") == 2.0
    for _ in range(10):
        throttle.failed("olga")
    assert throttle.wait_s("olga") == 8.0  # capped
    throttle.succeeded("olga")
    assert throttle.wait_s("olga") == 0


def test_network_guesses_do_not_lock_an_account(tmp_path: Path) -> None:
    with Store.open(tmp_path / "s.sqlite") as store:
        directory = Directory(store, hasher=FAST_HASHER)
        admin = directory.init("admin", "Admin", "site-secret-12")
        olga = directory.add(admin, "olga", "Olga", ["operator"], "temporary-pw-9")
        directory.change_password(olga, "p-secret-44x")
        for _ in range(8):
            with pytest.raises(AuthError, match="authentication failed"):
                directory.authenticate("olga", "guess-1234", "sign in", lockout=False)
        assert directory.authenticate("olga", "p-secret-44x", "sign in").username == "olga"
        for _ in range(5):  # a trusted terminal's failures still lock (Part 11)
            with pytest.raises(AuthError):
                directory.authenticate("olga", "guess-1234", "sign in")
        locked = directory.get("olga")
        assert locked is not None and locked.locked


def test_a_clients_count_is_forgotten_only_after_a_quiet_spell() -> None:
    clock = Clock()
    throttle = SignInThrottle(free=2, base_s=5.0, forget_s=60.0, clock=clock)
    assert [throttle.failed("10.0.0.7") for _ in range(2)] == [1, 2]
    assert throttle.wait_s("10.0.0.7") == 5.0
    clock.now += 59.0
    assert throttle.failures("10.0.0.7") == 2  # still counted: the next failure waits 10 s
    assert throttle.failed("10.0.0.7") == 3 and throttle.wait_s("10.0.0.7") == 10.0
    clock.now += 60.0
    assert throttle.failures("10.0.0.7") == 0 and throttle.wait_s("10.0.0.7") == 0
