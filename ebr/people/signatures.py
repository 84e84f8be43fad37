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

from ebr.people.duties import RULES, DutyRefused
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
SUBJECT_ROLES: Mapping[str, frozenset[str]] = {"qc_result": frozenset({"qc"})}
"""Subjects only some roles may sign whatever the meaning (SOD-QC-ONLY)."""
SUBJECT_RULES: Mapping[str, str] = {"qc_result": "SOD-QC-ONLY"}


class SignatureError(EbrError):
    """A signature was refused (wrong role, same person, nothing to sign…); `rule` names
    the separation-of-duties rule (ebr.people.duties.RULES) when one refused it."""

    def __init__(self, message: str, rule: str | None = None) -> None:
        """`message` says why; `rule` is a key of RULES or None."""
        self.rule = rule
        super().__init__(f"refused by {rule} ({RULES[rule]}): {message}" if rule else message)


def content_hash(content: Mapping[str, Any]) -> str:
    """SHA-256 hex of the canonical JSON of `content`: what a signature binds to."""
    return hashlib.sha256(canonical_json(dict(content)).encode("utf-8")).hexdigest()


def check_may_sign(user: User, meaning: str, subject_type: str | None = None) -> None:
    """Raise SignatureError unless `user` may sign with `meaning` (a subject of
    `subject_type`, when that type is restricted to some roles: SUBJECT_ROLES)."""
    if meaning not in MEANING_ROLES:
        raise SignatureError(f"unknown signature meaning {meaning!r}")
    if not user.can_sign():
        raise SignatureError(
            f"{user.username}: admin accounts cannot sign GMP records", "SOD-ADMIN-NEVER-SIGNS"
        )
    needed = SUBJECT_ROLES.get(subject_type or "", MEANING_ROLES[meaning])
    if not user.roles & needed:
        raise SignatureError(
            f"{user.username} ({', '.join(sorted(user.roles))}) cannot sign as {meaning!r}"
            f"{f' a {subject_type}' if subject_type in SUBJECT_ROLES else ''}; "
            f"that needs one of: {', '.join(sorted(needed))}",
            SUBJECT_RULES.get(subject_type or "", "SOD-ROLE"),
        )


def signature_data(
    user: User,
    meaning: str,
    subject: Mapping[str, Any],
    content: Mapping[str, Any],
    comment: str | None = None,
) -> dict[str, Any]:
    """The data of a `signature` entry by `user` over `content` (role checked first)."""
    check_may_sign(user, meaning, subject.get("type"))
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


def failure_data(
    username: str,
    meaning: str,
    reason: str,
    subject: Mapping[str, Any],
    rule: str | None = None,
) -> dict[str, Any]:
    """The data of a `signature.failed` entry (`rule`: the duty rule that refused it)."""
    data = {"username": username, "meaning": meaning, "reason": reason, "subject": dict(subject)}
    return {**data, "rule": rule} if rule else data


def record_refusal(
    directory: Directory,
    chain_id: str,
    username: str,
    meaning: str,
    subject: Mapping[str, Any],
    refusal: DutyRefused,
) -> None:
    """Journal a signature refused by a duty rule in `chain_id`, then raise it."""
    failed = failure_data(username, meaning, "refused", subject, refusal.rule)
    append_entries(directory.store, chain_id, [(SIGNATURE_FAILED, failed)], clock=directory.clock)
    raise refusal


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
        check_may_sign(user, meaning, subject.get("type"))
    except (AuthError, SignatureError) as exc:
        reason = "wrong role" if isinstance(exc, SignatureError) else "authentication failed"
        rule = exc.rule if isinstance(exc, SignatureError) else None
        failed = failure_data(username, meaning, reason, subject, rule)
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
