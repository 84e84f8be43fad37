"""People: user accounts, roles, passwords and authentication (21 CFR 11.100/11.300).

Accounts are not rows that can be edited: they are the projection of the site audit
chain (`SITE_CHAIN`, hash-chained and verified like any batch). Every change — user
created, password set, roles changed, disabled, locked, unlocked — and every login or
signature attempt, good or failed, is an entry there, so the history of an account is
its audit trail (R12, R13) and user IDs are never reused (R11): IDs are numbered from
the chain and a username, once taken, stays taken even after the account is disabled.

Rules (`PasswordPolicy`): a minimum length with letters and digits, not containing
the username, not one of the last few passwords; passwords age out; an admin-set
password must be changed by its owner before first use; `lockout_after` consecutive
failures lock the account until an admin unlocks it. Admin accounts administer users
and hold no other role: they can never sign GMP records (R6).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import Any

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

from ebr.people.duties import ADMIN, ROLES, DutyRefused
from ebr.record.clock import Clock, parse_ts, utc_now
from ebr.record.errors import EbrError
from ebr.record.kinds import Kind
from ebr.record.ledger import append_site
from ebr.record.model import SITE_CHAIN, Entry
from ebr.record.query import journal_entries
from ebr.record.store import Store

USERNAME = re.compile(r"[a-z][a-z0-9._-]{1,31}")


class AuthError(EbrError):
    """Authentication or authorisation refused (the message says why, never which part)."""


class UserAdminError(EbrError):
    """A user-administration request is invalid (unknown user, bad role, weak password…)."""


@dataclass(frozen=True)
class PasswordPolicy:
    """Password and lockout rules of the site."""

    min_length: int = 10
    max_age: timedelta = timedelta(days=90)
    history: int = 3
    lockout_after: int = 5
    alert_after: int = 3
    """Failed attempts for one username within `alert_window` that raise an alert (R12)."""
    alert_window: timedelta = timedelta(hours=24)

    def check(self, username: str, password: str) -> None:
        """Raise UserAdminError naming the first rule `password` breaks."""
        if len(password) < self.min_length:
            raise UserAdminError(f"password must have at least {self.min_length} characters")
        if not re.search(r"[A-Za-z]", password) or not re.search(r"[0-9]", password):
            raise UserAdminError("password must contain letters and digits")
        if username.lower() in password.lower():
            raise UserAdminError("password must not contain the username")


@dataclass(frozen=True)
class User:
    """One account as the site chain says it is now."""

    user_id: str
    username: str
    printed_name: str
    roles: frozenset[str]
    password_hash: str
    password_set_at: datetime
    must_change: bool = False
    disabled: bool = False
    locked: bool = False
    failures: int = 0
    history: tuple[str, ...] = field(default=(), repr=False)

    @property
    def status(self) -> str:
        """active, disabled or locked."""
        return "disabled" if self.disabled else "locked" if self.locked else "active"

    def can_sign(self) -> bool:
        """Whether this account may sign GMP records at all (admins never may)."""
        return ADMIN not in self.roles and not self.disabled

    def to_dict(self) -> dict[str, Any]:
        """Public view of the account (no password material)."""
        return {
            "user_id": self.user_id,
            "username": self.username,
            "printed_name": self.printed_name,
            "roles": sorted(self.roles),
            "status": self.status,
            "password_set_at": self.password_set_at.isoformat(),
            "must_change": self.must_change,
        }


def check_roles(roles: Iterable[str]) -> frozenset[str]:
    """Return `roles` as a set if valid: known names, at least one, admin never combined."""
    chosen = frozenset(roles)
    unknown = sorted(chosen - set(ROLES))
    if unknown:
        raise UserAdminError(f"unknown role {unknown[0]!r}; roles are {', '.join(ROLES)}")
    if not chosen:
        raise UserAdminError("a user needs at least one role")
    if ADMIN in chosen and len(chosen) > 1:
        raise UserAdminError("the admin role cannot be combined with other roles")
    return chosen


class Directory:
    """The user accounts of one store: read them, change them, authenticate against them."""

    def __init__(
        self,
        store: Store,
        *,
        policy: PasswordPolicy | None = None,
        hasher: PasswordHasher | None = None,
        clock: Clock = utc_now,
        terminal: str = "cli",
    ) -> None:
        """Work on `store`'s site chain (created on first change)."""
        self.store = store
        self.policy = policy or PasswordPolicy()
        self.hasher = hasher or PasswordHasher()
        self.clock = clock
        self.terminal = terminal

    # -- reading -------------------------------------------------------------------

    def users(self) -> list[User]:
        """Every account ever created, in creation order."""
        return list(self._project().values())

    def get(self, username: str) -> User | None:
        """The account with this username, or None."""
        return self._project().get(username)

    def _require(self, username: str) -> User:
        user = self.get(username)
        if user is None:
            raise UserAdminError(f"no user {username!r}")
        return user

    def _project(self) -> dict[str, User]:
        by_id: dict[str, User] = {}
        for entry in site_entries(self.store, "user."):
            _apply(by_id, entry, self.policy)
        return {user.username: user for user in by_id.values()}

    # -- changes -------------------------------------------------------------------

    def init(self, username: str, printed_name: str, password: str) -> User:
        """Create the bootstrap admin of a store that has no users yet."""
        if self.users():
            raise UserAdminError("users are already initialised in this store")
        self._record(
            Kind.USER_CREATED,
            self._new_user_data(username, printed_name, {ADMIN}, password, "U0001", None),
        )
        return self._require(username)

    def add(
        self,
        admin: User,
        username: str,
        printed_name: str,
        roles: Iterable[str],
        password: str,
    ) -> User:
        """Create an account (admin only); its password must be changed before first use."""
        self._check_admin(admin)
        taken = self.users()
        if any(user.username == username for user in taken):
            raise UserAdminError(f"username {username!r} is taken (usernames are never reused)")
        user_id = f"U{len(taken) + 1:04d}"
        data = self._new_user_data(
            username, printed_name, check_roles(roles), password, user_id, admin
        )
        data["must_change"] = True
        self._record(Kind.USER_CREATED, data)
        return self._require(username)

    def change_password(self, user: User, new_password: str) -> User:
        """Set a new password for `user`, who has just authenticated (own change)."""
        self._check_new_password(user, new_password)
        self._record(
            Kind.USER_PASSWORD_SET,
            {
                "user_id": user.user_id,
                "password_hash": self.hasher.hash(new_password),
                "must_change": False,
                "by": user.user_id,
            },
        )
        return self._require(user.username)

    def reset_password(self, admin: User, username: str, password: str) -> User:
        """Admin sets a temporary password; the owner must change it before first use.

        An admin cannot reset their own password this way (SOD-SELF, journaled): the
        owner's own change (`change_password`) applies every rule.
        """
        self._check_admin(admin)
        user = self._require(username)
        if user.user_id == admin.user_id:
            self._refuse(
                admin, f"reset {username}", user, "SOD-SELF", "resetting one's own password"
            )
        self._check_new_password(user, password)
        self._record(
            Kind.USER_PASSWORD_SET,
            {
                "user_id": user.user_id,
                "password_hash": self.hasher.hash(password),
                "must_change": True,
                "by": admin.user_id,
            },
        )
        return self._require(username)

    def set_roles(self, admin: User, username: str, roles: Iterable[str], reason: str) -> User:
        """Change an account's roles (admin only; a reason is required).

        Refused and journaled (`user.refused`): an admin changing their own roles
        (SOD-SELF), and any change that would give an admin account a signing role or
        turn a signing account into an admin (SOD-ADMIN-NEVER-SIGNS): those are separate
        people with separate accounts.
        """
        self._check_admin(admin)
        user = self._require(username)
        chosen = check_roles(roles)
        if not reason.strip():
            raise UserAdminError("a reason is required to change roles")
        action = f"roles {username} -> {','.join(sorted(chosen))}"
        if user.user_id == admin.user_id:
            self._refuse(admin, action, user, "SOD-SELF", f"{admin.username} changing own roles")
        if (ADMIN in user.roles) != (ADMIN in chosen):
            detail = (
                f"{username} is an admin account and cannot be granted {', '.join(sorted(chosen))}"
                if ADMIN in user.roles
                else f"{username} holds signing roles and cannot become an admin"
            )
            self._refuse(admin, action, user, "SOD-ADMIN-NEVER-SIGNS", detail)
        self._record(
            Kind.USER_ROLES_CHANGED,
            {
                "user_id": user.user_id,
                "old": sorted(user.roles),
                "new": sorted(chosen),
                "by": admin.user_id,
                "reason": reason,
            },
        )
        return self._require(username)

    def disable(self, admin: User, username: str, reason: str) -> User:
        """Disable an account for good (admin only; its ID and username stay taken)."""
        self._check_admin(admin)
        user = self._require(username)
        if user.user_id == admin.user_id:
            raise UserAdminError("an admin cannot disable their own account")
        if user.disabled:
            raise UserAdminError(f"user {username!r} is already disabled")
        if not reason.strip():
            raise UserAdminError("a reason is required to disable a user")
        self._record(
            Kind.USER_DISABLED, {"user_id": user.user_id, "by": admin.user_id, "reason": reason}
        )
        return self._require(username)

    def unlock(self, admin: User, username: str, reason: str) -> User:
        """Unlock an account locked by failed attempts (admin only)."""
        self._check_admin(admin)
        user = self._require(username)
        if not user.locked:
            raise UserAdminError(f"user {username!r} is not locked")
        self._record(
            Kind.USER_UNLOCKED, {"user_id": user.user_id, "by": admin.user_id, "reason": reason}
        )
        return self._require(username)

    # -- authentication ------------------------------------------------------------

    def authenticate(
        self,
        username: str,
        password: str,
        purpose: str,
        *,
        allow_must_change: bool = False,
        lockout: bool = True,
        client: str | None = None,
    ) -> User:
        """Return the account if `password` is right and the account may be used now.

        Every outcome is journaled on the site chain; failures count towards lockout
        unless `lockout` is False (guesses from an unauthenticated network client: those
        are throttled by the caller instead, so nobody can lock a person out remotely).
        The error never tells whether the username or the password was wrong.
        `client` (a network client's address) is journaled with a failure.
        """
        user = self.get(username)
        reason = self._refusal(user, password, allow_must_change)
        if reason is None:
            assert user is not None
            self._record(Kind.USER_LOGIN, {"user_id": user.user_id, "purpose": purpose})
            return user
        self.record_failure(username, purpose, reason, lockout=lockout, client=client)
        if reason in ("password expired", "password must be changed"):
            raise AuthError(
                f"{username}: {reason}; change it with `cellbatch users passwd --user {username}`"
            )
        if reason in ("account disabled", "account locked"):
            raise AuthError(f"{username}: {reason}")
        raise AuthError("authentication failed: unknown user or wrong password")

    def record_failure(
        self,
        username: str,
        purpose: str,
        reason: str,
        *,
        lockout: bool = True,
        client: str | None = None,
    ) -> None:
        """Journal a failed attempt; lock the account when it reaches the lockout count
        (an attempt journaled with `lockout: false` does not count)."""
        user = self.get(username)
        failed: dict[str, Any] = {
            "username": username,
            "user_id": user.user_id if user else None,
            "purpose": purpose,
            "reason": reason,
        }
        if not lockout:
            failed["lockout"] = False
        if client is not None:
            failed["client"] = client
        items: list[tuple[str, Mapping[str, Any]]] = [(Kind.USER_AUTH_FAILED, failed)]
        if (
            lockout
            and user is not None
            and not user.locked
            and not user.disabled
            and reason == "wrong password"
            and user.failures + 1 >= self.policy.lockout_after
        ):
            items.append(
                (Kind.USER_LOCKED, {"user_id": user.user_id, "failures": user.failures + 1})
            )
        recent = self._recent_failures(username) + 1
        if recent == self.policy.alert_after:
            items.append(
                (
                    Kind.USER_ALERT,
                    {
                        "username": username,
                        "user_id": user.user_id if user else None,
                        "failures": recent,
                        "window_s": self.policy.alert_window.total_seconds(),
                        "last_purpose": purpose,
                    },
                )
            )
        self._record_many(items)

    def _recent_failures(self, username: str) -> int:
        """Failed attempts for `username` within the alert window (any reason)."""
        since = self.clock() - self.policy.alert_window
        return sum(
            1
            for entry in site_entries(self.store, Kind.USER_AUTH_FAILED)
            if entry.data.get("username") == username and parse_ts(entry.ts) >= since
        )

    def record_client_alert(self, client: str, failures: int, last_username: str) -> None:
        """Journal that a network client's failed sign-ins (across accounts) reached the
        count at which its attempts are throttled (R12)."""
        self._record(
            Kind.CLIENT_ALERT,
            {"client": client, "failures": failures, "last_username": last_username[:64]},
        )

    def alerts(self) -> list[Entry]:
        """Alerts raised for repeated failed logins or signatures of one account, or
        sign-ins from one network client (R12), newest last, within the alert window."""
        since = self.clock() - self.policy.alert_window
        return [
            e
            for e in site_entries(self.store, Kind.USER_ALERT, Kind.CLIENT_ALERT)
            if parse_ts(e.ts) >= since
        ]

    def _refusal(self, user: User | None, password: str, allow_must_change: bool) -> str | None:
        if user is None:
            return "unknown user"
        if user.disabled:
            return "account disabled"
        if user.locked:
            return "account locked"
        if not self._matches(user.password_hash, password):
            return "wrong password"
        if self.clock() - user.password_set_at > self.policy.max_age and not allow_must_change:
            return "password expired"
        if user.must_change and not allow_must_change:
            return "password must be changed"
        return None

    def _matches(self, password_hash: str, password: str) -> bool:
        try:
            return self.hasher.verify(password_hash, password)
        except (VerifyMismatchError, VerificationError, InvalidHashError):
            return False

    # -- helpers -------------------------------------------------------------------

    def _new_user_data(
        self,
        username: str,
        printed_name: str,
        roles: Iterable[str],
        password: str,
        user_id: str,
        admin: User | None,
    ) -> dict[str, Any]:
        if not USERNAME.fullmatch(username):
            raise UserAdminError(
                f"invalid username {username!r}: 2-32 characters, lower-case letters, "
                "digits, '.', '_' or '-', starting with a letter"
            )
        if not printed_name.strip() or len(printed_name) > 200:
            raise UserAdminError("the printed name must be 1-200 characters")
        self.policy.check(username, password)
        return {
            "user_id": user_id,
            "username": username,
            "printed_name": printed_name.strip(),
            "roles": sorted(check_roles(roles)),
            "password_hash": self.hasher.hash(password),
            "must_change": False,
            "by": admin.user_id if admin else None,
        }

    def _check_new_password(self, user: User, password: str) -> None:
        self.policy.check(user.username, password)
        recent = (user.password_hash, *user.history)[: self.policy.history]
        if any(self._matches(old, password) for old in recent):
            raise UserAdminError(
                f"password must differ from the last {self.policy.history} passwords"
            )

    def _check_admin(self, admin: User) -> None:
        if ADMIN not in admin.roles or admin.disabled:
            raise AuthError(f"{admin.username}: user administration needs the admin role")

    def _refuse(self, actor: User, action: str, target: User, rule: str, detail: str) -> None:
        self.refuse(actor, action, DutyRefused(rule, detail), target)

    def refuse(
        self, actor: User, action: str, refusal: DutyRefused, target: User | None = None
    ) -> None:
        """Journal a request refused by a duty rule on the site chain (`user.refused`:
        who, what, the rule), then raise `refusal`."""
        self._record(
            Kind.USER_REFUSED,
            {
                "user_id": (target or actor).user_id,
                "by": actor.user_id,
                "action": action,
                "rule": refusal.rule,
                "message": str(refusal),
            },
        )
        raise refusal

    def _record(self, kind: str, data: Mapping[str, Any]) -> Entry:
        return self._record_many([(kind, data)])[0]

    def _record_many(self, items: list[tuple[str, Mapping[str, Any]]]) -> list[Entry]:
        stamped = [(kind, {**data, "terminal": self.terminal}) for kind, data in items]
        return append_site(self.store, stamped, clock=self.clock)


def site_entries(store: Store, *prefixes: str) -> list[Entry]:
    """Entries of the site chain whose kind starts with one of `prefixes`, in order."""
    with store.snapshot() as conn:
        entries = journal_entries(conn, SITE_CHAIN)
    return [entry for entry in entries if entry.kind.startswith(prefixes)]


def _apply(by_id: dict[str, User], entry: Entry, policy: PasswordPolicy) -> None:
    """Fold one site-chain entry into the accounts it changes."""
    data = entry.data
    if entry.kind == Kind.USER_CREATED:
        by_id[data["user_id"]] = User(
            user_id=data["user_id"],
            username=data["username"],
            printed_name=data["printed_name"],
            roles=frozenset(data["roles"]),
            password_hash=data["password_hash"],
            password_set_at=parse_ts(entry.ts),
            must_change=bool(data.get("must_change", False)),
        )
        return
    user = by_id.get(str(data.get("user_id")))
    if user is None:
        return
    if entry.kind == Kind.USER_PASSWORD_SET:
        user = replace(
            user,
            password_hash=data["password_hash"],
            password_set_at=parse_ts(entry.ts),
            must_change=bool(data["must_change"]),
            history=(user.password_hash, *user.history)[: policy.history],
        )
    elif entry.kind == Kind.USER_ROLES_CHANGED:
        user = replace(user, roles=frozenset(data["new"]))
    elif entry.kind == Kind.USER_DISABLED:
        user = replace(user, disabled=True)
    elif entry.kind == Kind.USER_LOCKED:
        user = replace(user, locked=True)
    elif entry.kind == Kind.USER_UNLOCKED:
        user = replace(user, locked=False, failures=0)
    elif entry.kind == Kind.USER_LOGIN:
        user = replace(user, failures=0)
    elif (
        entry.kind == Kind.USER_AUTH_FAILED
        and data.get("reason") == "wrong password"
        and data.get("lockout", True) is not False
    ):
        user = replace(user, failures=user.failures + 1)
    by_id[user.user_id] = user


def alert_text(alert: Mapping[str, Any]) -> str:
    """One line for an alert's fields (`alerts()` entry data with its `ts`) (R12)."""
    if alert.get("client") is not None and alert.get("username") is None:
        who = f"network client {alert.get('client')}"
        last = alert.get("last_username")
        what = f"{alert.get('failures')} failed sign-ins (last as {last!r}); throttled"
    else:
        who = str(alert.get("username"))
        what = f"{alert.get('failures')} failed login or signature attempts"
    return f"ALERT {alert.get('ts')}  {who}: {what}"
