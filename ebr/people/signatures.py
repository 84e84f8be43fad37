"""Electronic signatures (21 CFR 11.50, 11.70, 11.200): what a signature holds and checks.

A signature is a journal entry of kind `signature` in the chain of what was signed
(a batch, or the site chain for recipes). Its data holds the signer's user ID,
username and printed name, the meaning, an optional comment, the subject (what was
signed, by reference) and `signed_hash`: the SHA-256 of the canonical JSON of exactly
the content signed. The UTC time is the entry's record time. Later, the content is
re-derived from the record and hashed again; a signature whose content changed shows
as invalid (R9).

Who may sign what: `MEANING_ROLES`. Admin accounts never sign (R6). Signing needs the
password every time; a `SigningSession` (HMI) asks for ID and password the first time
and after the idle timeout, the password alone in between (R10).
"""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from ebr.people.users import AuthError, Directory, User
from ebr.record.canonical import canonical_json
from ebr.record.clock import Clock, utc_now
from ebr.record.errors import EbrError
from ebr.record.kinds import Kind
from ebr.record.ledger import append_entries
from ebr.record.model import Entry

SIGNATURE = Kind.SIGNATURE
SIGNATURE_FAILED = Kind.SIGNATURE_FAILED
MEANINGS = ("performed", "verified", "reviewed", "approved", "released")
MEANING_ROLES: Mapping[str, frozenset[str]] = {
    "performed": frozenset({"operator", "supervisor", "qa", "qp"}),
    "verified": frozenset({"operator", "supervisor", "qa", "qp"}),
    "reviewed": frozenset({"qa", "qp"}),
    "approved": frozenset({"qa", "qp"}),
    "released": frozenset({"qp"}),
}


class SignatureError(EbrError):
    """A signature was refused (wrong role, same person, nothing to sign…)."""


def content_hash(content: Mapping[str, Any]) -> str:
    """SHA-256 hex of the canonical JSON of `content`: what a signature binds to."""
    return hashlib.sha256(canonical_json(dict(content)).encode("utf-8")).hexdigest()


def check_may_sign(user: User, meaning: str) -> None:
    """Raise SignatureError unless `user` may sign with `meaning`."""
    if meaning not in MEANING_ROLES:
        raise SignatureError(f"unknown signature meaning {meaning!r}")
    if not user.can_sign():
        raise SignatureError(f"{user.username}: admin accounts cannot sign GMP records")
    if not user.roles & MEANING_ROLES[meaning]:
        allowed = ", ".join(sorted(MEANING_ROLES[meaning]))
        raise SignatureError(
            f"{user.username} ({', '.join(sorted(user.roles))}) cannot sign as {meaning!r}; "
            f"that needs one of: {allowed}"
        )


def signature_data(
    user: User,
    meaning: str,
    subject: Mapping[str, Any],
    content: Mapping[str, Any],
    comment: str | None = None,
) -> dict[str, Any]:
    """The data of a `signature` entry by `user` over `content` (role checked first)."""
    check_may_sign(user, meaning)
    return {
        "signature_id": f"SIG-{uuid.uuid4().hex[:12].upper()}",
        "user_id": user.user_id,
        "username": user.username,
        "printed_name": user.printed_name,
        "meaning": meaning,
        "comment": comment,
        "subject": dict(subject),
        "signed_hash": content_hash(content),
    }


def failure_data(username: str, meaning: str, reason: str, subject: Mapping[str, Any]) -> dict:
    """The data of a `signature.failed` entry."""
    return {"username": username, "meaning": meaning, "reason": reason, "subject": dict(subject)}


def authenticate_signer(
    directory: Directory,
    chain_id: str,
    username: str,
    password: str,
    meaning: str,
    subject: Mapping[str, Any],
) -> User:
    """The account signing `subject` with `meaning` in the chain `chain_id`.

    Authenticates and checks the role; a failed or refused attempt is journaled in that
    chain as `signature.failed` (the login failure itself goes to the site chain) and
    the AuthError or SignatureError is raised.
    """
    try:
        user = directory.authenticate(username, password, f"sign {meaning} {chain_id}")
        check_may_sign(user, meaning)
    except (AuthError, SignatureError) as exc:
        reason = "wrong role" if isinstance(exc, SignatureError) else "authentication failed"
        failed = failure_data(username, meaning, reason, subject)
        append_entries(
            directory.store, chain_id, [(SIGNATURE_FAILED, failed)], clock=directory.clock
        )
        raise
    return user


@dataclass(frozen=True)
class Signature:
    """A recorded signature, with whether its content still hashes to what was signed."""

    entry: Entry
    valid: bool
    problem: str | None = None

    @property
    def data(self) -> Mapping[str, Any]:
        """The signature entry's data."""
        return self.entry.data

    def to_dict(self) -> dict[str, Any]:
        """JSON view: the signature, its record time and validity."""
        extra = {"ts": self.entry.ts, "seq": self.entry.seq, "valid": self.valid}
        return {**self.entry.data, **extra, "problem": self.problem}

    def line(self) -> str:
        """One line as Part 11 wants a signature shown: name, time, meaning (and validity)."""
        d = self.entry.data
        mark = "" if self.valid else f"  INVALID: {self.problem}"
        return (
            f"{d['printed_name']} ({d['username']}, {d['user_id']})  {self.entry.ts}  "
            f"{d['meaning']}{mark}"
        )


def check_signature(entry: Entry, content: Mapping[str, Any] | None) -> Signature:
    """Compare a signature entry with the content it refers to as the record holds it now."""
    if content is None:
        return Signature(entry, False, "the signed content is no longer in the record")
    if content_hash(content) != entry.data.get("signed_hash"):
        return Signature(entry, False, "the signed content has changed since signing")
    return Signature(entry, True)


def batch_content(batch_id: str, through_seq: int, chain_hash: str) -> dict[str, Any]:
    """What a signature over the whole record up to `through_seq` binds to."""
    return {"batch_id": batch_id, "through_seq": through_seq, "chain_hash": chain_hash}


def entry_content(entry: Entry) -> dict[str, Any]:
    """What a signature over one journal entry (e.g. a manual entry) binds to."""
    return {"batch_id": entry.batch_id, "seq": entry.seq, "kind": entry.kind, "data": entry.data}


IDLE_TIMEOUT = timedelta(minutes=15)
"""After this long without signing, the next signature needs the user ID again."""


class SigningSession:
    """One person's signing session at a terminal: ID + password first, then password."""

    def __init__(
        self,
        directory: Directory,
        *,
        idle_timeout: timedelta = IDLE_TIMEOUT,
        clock: Clock = utc_now,
    ) -> None:
        """Start with nobody signed in."""
        self.directory = directory
        self.idle_timeout = idle_timeout
        self.clock = clock
        self.user: User | None = None
        self._last: datetime | None = None

    @property
    def needs_user_id(self) -> bool:
        """True when the next signature must give the user ID as well as the password."""
        return (
            self.user is None or self._last is None or self.clock() - self._last > self.idle_timeout
        )

    def authenticate(self, password: str, purpose: str, username: str | None = None) -> User:
        """Authenticate the signer for one signature (raises AuthError)."""
        if self.needs_user_id:
            if not username:
                raise AuthError("the first signature of a session needs user ID and password")
        elif username and self.user is not None and username != self.user.username:
            raise AuthError(f"this session belongs to {self.user.username}; sign in again")
        name = username or (self.user.username if self.user else "")
        user = self.directory.authenticate(name, password, purpose)
        self.user = user
        self._last = self.clock()
        return user

    def end(self) -> None:
        """Sign out."""
        self.user = None
        self._last = None
