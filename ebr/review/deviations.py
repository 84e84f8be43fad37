"""Deviations and CAPA: records in their own hash chain, closed only by QA with a signature.

A deviation is what its entries on the ``@deviations`` chain say (``DEVIATION_CHAIN``,
hash-chained and verified like any batch; kept out of the batch list):

- ``deviation.opened`` — ID ``DEV-0001``…, classification (minor, major, critical),
  title, description, links (batches, lots, exceptions as ``BATCH_ID/EXCEPTION_ID``),
  source ``manual`` (a person, authenticated) or ``automatic`` (from a batch's
  critical exception or unplanned hold, see :meth:`DeviationDesk.open_automatic`);
- ``deviation.updated`` — changed fields (classification, description, impact,
  root_cause) and added links, with the reason and who;
- ``capa.added`` / ``capa.status`` — corrective and preventive actions (owner, due
  date) and their status (open, closed, carried over);
- ``signature`` + ``deviation.closed`` — QA's ``approved`` signature over the
  deviation as it stands (:func:`closure_content`), accepted only once every CAPA is
  closed or carried over and an impact and root cause are recorded.

Nothing is ever changed in place: the state is the fold of the chain
(:func:`deviations`), and a closure signature is re-checked against the state the
chain gives up to it, so an edit of an earlier entry shows the signature invalid.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import date
from typing import Any

from ebr.people.signatures import (
    SIGNATURE,
    Signature,
    authenticate_signer,
    check_signature,
    signature_data,
)
from ebr.people.users import Directory, User
from ebr.record.clock import Clock, utc_now
from ebr.record.errors import EbrError
from ebr.record.kinds import Kind
from ebr.record.ledger import append_entries, create_chain
from ebr.record.model import DEVIATION_CHAIN, BatchHeader, Entry
from ebr.record.query import journal_entries
from ebr.record.store import Store
from ebr.review.exceptions import ReviewException, Rules, review

CLASSIFICATIONS = ("minor", "major", "critical")
CAPA_STATES = ("open", "closed", "carried over")
FIELDS = ("classification", "title", "description", "impact", "root_cause")
"""Fields an update may change."""
LINKS = ("batches", "lots", "exceptions")
AUTOMATIC_RULES = frozenset({"interruption"})
"""Rules whose exceptions open a deviation whatever their severity (holds, stops…)."""
NOT_AUTOMATIC = frozenset({"simulation"})
"""Critical rules that never open a deviation (a simulated record is not GMP data)."""
_DEV_ID = re.compile(r"^DEV-(\d{4,})$")


class DeviationError(EbrError):
    """A deviation action was refused; the message says why."""


@dataclass
class Capa:
    """One corrective or preventive action."""

    capa_id: str
    action: str
    owner: str
    due: str
    status: str = "open"
    history: list[dict[str, Any]] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        """JSON view."""
        return {
            "capa_id": self.capa_id,
            "action": self.action,
            "owner": self.owner,
            "due": self.due,
            "status": self.status,
            "history": self.history,
        }


@dataclass
class Deviation:
    """A deviation as its entries on the chain say, with its CAPA and closure."""

    deviation_id: str
    classification: str
    title: str
    description: str
    source: str
    opened_at: str
    opened_by: str
    impact: str | None = None
    root_cause: str | None = None
    links: dict[str, list[str]] = field(default_factory=lambda: {k: [] for k in LINKS})
    capas: dict[str, Capa] = field(default_factory=dict)
    history: list[dict[str, Any]] = field(default_factory=list)
    closure: Signature | None = None
    closed_at: str | None = None

    @property
    def status(self) -> str:
        """open, or closed (with a valid QA signature)."""
        return "closed" if self.closure is not None and self.closure.valid else "open"

    @property
    def open(self) -> bool:
        """Whether the deviation still needs work or its closure."""
        return self.status == "open"

    def links_to(self, *, batch: str | None = None, lot: str | None = None) -> bool:
        """Whether it names this batch (directly or by an exception of it) or this lot."""
        if lot is not None and lot in self.links["lots"]:
            return True
        if batch is not None:
            if batch in self.links["batches"]:
                return True
            return any(exc.split("/", 1)[0] == batch for exc in self.links["exceptions"])
        return False

    def content(self) -> dict[str, Any]:
        """The deviation's substance (what a closure signature binds to)."""
        return {
            "deviation_id": self.deviation_id,
            "classification": self.classification,
            "title": self.title,
            "description": self.description,
            "impact": self.impact,
            "root_cause": self.root_cause,
            "links": {k: sorted(v) for k, v in self.links.items()},
            "capas": [
                {k: v for k, v in capa.to_dict().items() if k != "history"}
                for capa in self.capas.values()
            ],
        }

    def to_dict(self) -> dict[str, Any]:
        """JSON view: substance, status, history and the closure signature."""
        return {
            **self.content(),
            "status": self.status,
            "source": self.source,
            "opened_at": self.opened_at,
            "opened_by": self.opened_by,
            "capas": [capa.to_dict() for capa in self.capas.values()],
            "history": self.history,
            "closed_at": self.closed_at,
            "closure": None if self.closure is None else self.closure.to_dict(),
        }


def closure_content(deviation: Deviation) -> dict[str, Any]:
    """What QA's closure signature binds to."""
    return {"chain": DEVIATION_CHAIN, "deviation": deviation.content()}


def deviations(store: Store) -> dict[str, Deviation]:
    """Every deviation in the store, by ID, in the order opened."""
    with store.snapshot() as conn:
        try:
            entries = journal_entries(conn, DEVIATION_CHAIN)
        except EbrError:
            return {}
    return fold(entries)


def fold(entries: Iterable[Entry]) -> dict[str, Deviation]:
    """The deviations a ``@deviations`` chain's entries describe."""
    found: dict[str, Deviation] = {}
    pending_signature: Entry | None = None
    for entry in entries:
        data = entry.data
        dev = found.get(str(data.get("deviation_id")))
        if entry.kind == Kind.DEVIATION_OPENED and dev is None:
            dev = Deviation(
                deviation_id=str(data["deviation_id"]),
                classification=str(data["classification"]),
                title=str(data["title"]),
                description=str(data["description"]),
                source=str(data["source"]),
                opened_at=entry.ts,
                opened_by=str(data.get("user") or "cellbatch (automatic)"),
                impact=data.get("impact"),
            )
            for key in LINKS:
                dev.links[key] = [str(v) for v in data.get("links", {}).get(key, [])]
            found[dev.deviation_id] = dev
        elif entry.kind == Kind.DEVIATION_UPDATED and dev is not None:
            for key, value in dict(data.get("changes", {})).items():
                if key in FIELDS:
                    setattr(dev, key, value)
            for key, values in dict(data.get("add_links", {})).items():
                if key in LINKS:
                    dev.links[key].extend(str(v) for v in values if str(v) not in dev.links[key])
            dev.history.append(_history(entry))
        elif entry.kind == Kind.CAPA_ADDED and dev is not None:
            capa = Capa(str(data["capa_id"]), str(data["action"]), str(data["owner"]), data["due"])
            capa.history.append(_history(entry))
            dev.capas[capa.capa_id] = capa
        elif entry.kind == Kind.CAPA_STATUS and dev is not None:
            target = dev.capas.get(str(data.get("capa_id")))
            if target is not None:
                target.status = str(data["status"])
                target.history.append(_history(entry))
        elif entry.kind == SIGNATURE:
            pending_signature = entry
        elif entry.kind == Kind.DEVIATION_CLOSED and dev is not None:
            sig = pending_signature
            if sig is None or sig.data.get("signature_id") != data.get("signature_id"):
                dev.closure = Signature(entry, False, "the closure has no signature")
            else:
                dev.closure = check_signature(sig, closure_content(dev))
            dev.closed_at = entry.ts
        if entry.kind != SIGNATURE:
            pending_signature = None
    return found


def _history(entry: Entry) -> dict[str, Any]:
    return {"ts": entry.ts, "seq": entry.seq, "kind": str(entry.kind), **entry.data}


def automatic_candidates(exceptions: Iterable[ReviewException]) -> list[ReviewException]:
    """Exceptions that open a deviation by themselves: critical ones and unplanned holds."""
    return [
        exc
        for exc in exceptions
        if exc.rule not in NOT_AUTOMATIC
        and (exc.severity == "critical" or exc.rule in AUTOMATIC_RULES)
    ]


class DeviationDesk:
    """Opens, updates and closes deviations in one store."""

    def __init__(self, store: Store, directory: Directory, *, clock: Clock = utc_now) -> None:
        """Act on `store`, authenticating people against `directory`."""
        self.store = store
        self.directory = directory
        self.clock = clock

    def all(self) -> dict[str, Deviation]:
        """Every deviation now."""
        return deviations(self.store)

    def get(self, deviation_id: str) -> Deviation:
        """One deviation (DeviationError if unknown)."""
        found = self.all().get(deviation_id)
        if found is None:
            raise DeviationError(f"no deviation {deviation_id}")
        return found

    def open(
        self,
        username: str,
        password: str,
        *,
        classification: str,
        title: str,
        description: str,
        impact: str | None = None,
        links: Mapping[str, Iterable[str]] | None = None,
    ) -> Deviation:
        """Open a deviation by hand (the person is authenticated and recorded)."""
        user = self._person(username, password, "open a deviation")
        return self._open(classification, title, description, impact, links, "manual", user)

    def open_automatic(
        self,
        batch_id: str,
        rules: Rules | None = None,
        *,
        username: str | None = None,
        password: str = "",
    ) -> list[Deviation]:
        """Open one deviation per critical exception or hold of a batch not yet linked.

        `username`, authenticated with `password` as for opening by hand, is recorded as
        the person who opened them (the CLI always names one); without it, the system.
        """
        user = None
        if username is not None:
            user = self._person(username, password, f"open deviations from batch {batch_id}")
        exceptions = automatic_candidates(review(self.store, batch_id, rules))
        linked = {exc for dev in self.all().values() for exc in dev.links["exceptions"]}
        opened: list[Deviation] = []
        for exc in exceptions:
            ref = f"{batch_id}/{exc.id}"
            if ref in linked:
                continue
            cls = exc.severity if exc.severity in CLASSIFICATIONS else "major"
            links = {"batches": [batch_id], "exceptions": [ref]}
            text = f"{exc.category}: {exc.detail}" if exc.detail else exc.category
            opened.append(self._open(cls, exc.title, text, None, links, "automatic", user))
        return opened

    def update(
        self,
        username: str,
        password: str,
        deviation_id: str,
        *,
        reason: str,
        changes: Mapping[str, str] | None = None,
        add_links: Mapping[str, Iterable[str]] | None = None,
    ) -> Deviation:
        """Change fields or add links, with a reason (refused once closed)."""
        dev = self._open_one(deviation_id)
        changes = {k: v for k, v in (changes or {}).items() if v is not None}
        for key in changes:
            if key not in FIELDS:
                raise DeviationError(f"{key!r} is not a field of a deviation ({', '.join(FIELDS)})")
        if "classification" in changes:
            _check_classification(changes["classification"])
        links = _links(add_links)
        if not changes and not any(links.values()):
            raise DeviationError("nothing to update")
        if not reason.strip():
            raise DeviationError("an update needs a reason")
        user = self._person(username, password, f"update {deviation_id}")
        data = {
            "deviation_id": dev.deviation_id,
            "changes": changes,
            "add_links": {k: v for k, v in links.items() if v},
            "reason": reason,
            "user": user.username,
        }
        self._append([(Kind.DEVIATION_UPDATED, data)])
        return self.get(deviation_id)

    def add_capa(
        self, username: str, password: str, deviation_id: str, *, action: str, owner: str, due: str
    ) -> Capa:
        """Add a corrective or preventive action with its owner and due date (YYYY-MM-DD)."""
        dev = self._open_one(deviation_id)
        if not action.strip() or not owner.strip():
            raise DeviationError("a CAPA action needs a description and an owner")
        try:
            date.fromisoformat(due)
        except ValueError:
            raise DeviationError(f"due date {due!r} is not YYYY-MM-DD") from None
        user = self._person(username, password, f"add a CAPA to {deviation_id}")
        capa_id = f"{deviation_id}-CAPA-{len(dev.capas) + 1}"
        data = {
            "deviation_id": deviation_id,
            "capa_id": capa_id,
            "action": action,
            "owner": owner,
            "due": due,
            "user": user.username,
        }
        self._append([(Kind.CAPA_ADDED, data)])
        return self.get(deviation_id).capas[capa_id]

    def set_capa(
        self,
        username: str,
        password: str,
        deviation_id: str,
        capa_id: str,
        *,
        status: str,
        comment: str,
    ) -> Capa:
        """Move a CAPA action to open, closed or carried over (with a comment)."""
        dev = self._open_one(deviation_id)
        if capa_id not in dev.capas:
            raise DeviationError(f"{deviation_id} has no CAPA {capa_id}")
        if status not in CAPA_STATES:
            raise DeviationError(f"CAPA status must be one of: {', '.join(CAPA_STATES)}")
        if not comment.strip():
            raise DeviationError("a CAPA status change needs a comment")
        user = self._person(username, password, f"update {capa_id}")
        data = {
            "deviation_id": deviation_id,
            "capa_id": capa_id,
            "status": status,
            "comment": comment,
            "user": user.username,
        }
        self._append([(Kind.CAPA_STATUS, data)])
        return self.get(deviation_id).capas[capa_id]

    def close(self, username: str, password: str, deviation_id: str, comment: str) -> Signature:
        """QA closes the deviation with an ``approved`` signature over its content."""
        dev = self._open_one(deviation_id)
        missing = [name for name in ("impact", "root_cause") if not getattr(dev, name)]
        if missing:
            raise DeviationError(
                f"{deviation_id} cannot be closed without: {', '.join(missing)} "
                "(cellbatch deviation update)"
            )
        still_open = [c.capa_id for c in dev.capas.values() if c.status == "open"]
        if still_open:
            raise DeviationError(
                f"{deviation_id} has open CAPA action(s): {', '.join(still_open)}; "
                "close or carry them over first"
            )
        subject = {"type": "deviation", "deviation_id": deviation_id}
        self._ensure_chain()
        user = authenticate_signer(
            self.directory, DEVIATION_CHAIN, username, password, "approved", subject
        )
        if "qa" not in user.roles:
            raise DeviationError(f"{username}: only QA closes a deviation")
        sig = signature_data(user, "approved", subject, closure_content(dev), comment)
        closed = {
            "deviation_id": deviation_id,
            "comment": comment,
            "signature_id": sig["signature_id"],
        }
        entries = self._append([(SIGNATURE, sig), (Kind.DEVIATION_CLOSED, closed)])
        return Signature(entries[0], True)

    # -- helpers ---------------------------------------------------------------------

    def _open(
        self,
        classification: str,
        title: str,
        description: str,
        impact: str | None,
        links: Mapping[str, Iterable[str]] | None,
        source: str,
        user: User | None,
    ) -> Deviation:
        _check_classification(classification)
        if not title.strip() or not description.strip():
            raise DeviationError("a deviation needs a title and a description")
        self._ensure_chain()
        number = 1 + max((_number(d) for d in self.all()), default=0)
        deviation_id = f"DEV-{number:04d}"
        data = {
            "deviation_id": deviation_id,
            "classification": classification,
            "title": title,
            "description": description,
            "impact": impact,
            "links": _links(links),
            "source": source,
            "user": None if user is None else user.username,
        }
        self._append([(Kind.DEVIATION_OPENED, data)])
        return self.get(deviation_id)

    def _open_one(self, deviation_id: str) -> Deviation:
        dev = self.get(deviation_id)
        if not dev.open:
            raise DeviationError(f"{deviation_id} is closed")
        return dev

    def _person(self, username: str, password: str, purpose: str) -> User:
        user = self.directory.authenticate(username, password, purpose)
        if not user.can_sign():
            raise DeviationError(f"{username}: admin accounts cannot change GMP records")
        return user

    def _ensure_chain(self) -> None:
        header = BatchHeader(DEVIATION_CHAIN, "cellbatch.deviations", "1", "", "", "", False)
        create_chain(self.store, header, {"purpose": "deviations and CAPA"}, clock=self.clock)

    def _append(self, items: list[tuple[str, Mapping[str, Any]]]) -> list[Entry]:
        self._ensure_chain()
        return append_entries(self.store, DEVIATION_CHAIN, items, clock=self.clock)


def _check_classification(value: str) -> None:
    if value not in CLASSIFICATIONS:
        raise DeviationError(f"classification must be one of: {', '.join(CLASSIFICATIONS)}")


def _links(links: Mapping[str, Iterable[str]] | None) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {key: [] for key in LINKS}
    for key, values in (links or {}).items():
        if key not in LINKS:
            raise DeviationError(f"unknown link type {key!r} ({', '.join(LINKS)})")
        for value in values:
            value = str(value).strip()
            if not value:
                continue
            if key == "exceptions" and "/" not in value:
                raise DeviationError(f"exception link {value!r} must be BATCH_ID/EXCEPTION_ID")
            if value not in out[key]:
                out[key].append(value)
    return out


def _number(deviation_id: str) -> int:
    match = _DEV_ID.match(deviation_id)
    return int(match.group(1)) if match else 0
