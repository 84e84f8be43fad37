"""QA's work on an ended batch: dispositions, the review signature, QC results, release.

The flow (shared/notes/domain.md): the batch ends and its record is locked to the
process → review by exception lists what deviated (ebr.review.exceptions) → QA dispositions
each exception with a signature (justified, optionally linked to a deviation) → QA
signs the review of the whole record → the QP signs the decision: released,
rejected, or released pending results (tests such as sterility that arrive after
infusion; each result is recorded with a signature, and the final release needs
them all in and passed). Release is refused while any exception is open (R15), to
anyone but a QP, and to the person who signed the review.

Everything is appended to the batch's own chain (ebr.record.ledger), a signature entry next
to the entry it signs, so the record carries its review and release with it.
Refused or failed signature attempts are journaled there too (`signature.failed`).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from ebr.people.duties import RULES, DutyRefused
from ebr.people.signatures import (
    SIGNATURE,
    SIGNATURE_FAILED,
    Signature,
    authenticate_signer,
    batch_content,
    check_signature,
    entry_content,
    record_refusal,
    signature_data,
)
from ebr.people.users import Directory, User
from ebr.record.canonical import canonical_json
from ebr.record.chain import GENESIS_HASH, entry_hash
from ebr.record.checks import VerifyResult
from ebr.record.clock import Clock, utc_now
from ebr.record.errors import EbrError
from ebr.record.kinds import Kind
from ebr.record.ledger import append_entries
from ebr.record.model import BATCH_STATE, BatchRecord, Entry
from ebr.record.query import batch_record, journal_entries
from ebr.record.store import Store
from ebr.record.verify import verify_connection
from ebr.review.cqas import recipe_cqas
from ebr.review.exceptions import ReviewException, Rules, review_connection
from ebr.review.specs import IN_SPEC, OOS, Specifications, load_specs

FINAL_STATES = frozenset({"Complete", "Stopped", "Aborted"})
DISPOSITION = Kind.REVIEW_DISPOSITION
DECISION = Kind.BATCH_DECISION
QC_RESULT = Kind.QC_RESULT
RELEASED = "released"
REJECTED = "rejected"
NOT_FOR_USE = "not for use"
INVALID = "INVALID"
PENDING = "released pending results"
DECISIONS = (RELEASED, REJECTED, NOT_FOR_USE)
CLOSED = frozenset({RELEASED, REJECTED, NOT_FOR_USE})


class ReleaseRefused(EbrError):
    """A QA action was refused; the message says why."""


@dataclass(frozen=True)
class ExceptionStatus:
    """One review exception and its disposition, if any."""

    exception: ReviewException
    disposition: Entry | None = None
    signature: Signature | None = None

    @property
    def open(self) -> bool:
        """Open until dispositioned with a valid signature."""
        return self.signature is None or not self.signature.valid

    def to_dict(self) -> dict[str, Any]:
        """JSON view: the exception, its disposition and signature."""
        return {
            **self.exception.to_dict(),
            "open": self.open,
            "disposition": None if self.disposition is None else self.disposition.data,
            "signature": None if self.signature is None else self.signature.to_dict(),
        }


@dataclass
class QaStatus:
    """Where a batch stands in review and release, derived from its journal."""

    record: BatchRecord
    state: str
    exceptions: list[ExceptionStatus]
    signatures: list[Signature]
    review: Signature | None = None
    decision: str | None = None
    pending: list[str] = field(default_factory=list)
    results: dict[str, Mapping[str, Any]] = field(default_factory=dict)
    failed_attempts: int = 0
    verification: VerifyResult | None = None

    @property
    def valid(self) -> bool:
        """False when the record fails verification (then nothing it says is trusted)."""
        return self.verification is None or self.verification.ok

    @property
    def ended(self) -> bool:
        """Whether the batch has reached a final state (its process record is locked)."""
        return self.state in FINAL_STATES

    @property
    def open_exceptions(self) -> list[ExceptionStatus]:
        """Exceptions not yet dispositioned with a valid signature."""
        return [status for status in self.exceptions if status.open]

    @property
    def disposition(self) -> str:
        """INVALID (the record fails verification, whatever it says) / released /
        rejected / not for use / released pending results / in review / in process."""
        if not self.valid:
            return INVALID
        if self.decision is not None:
            return self.decision
        return "in review" if self.ended else "in process"

    def to_dict(self) -> dict[str, Any]:
        """JSON view of the whole review state."""
        return {
            "batch_id": self.record.header.batch_id,
            "state": self.state,
            "disposition": self.disposition,
            "verified": self.valid,
            "integrity_problem": (
                None if self.verification is None else self.verification.first_problem
            ),
            "open_exceptions": len(self.open_exceptions),
            "exceptions": [status.to_dict() for status in self.exceptions],
            "review": None if self.review is None else self.review.to_dict(),
            "pending_results": self.pending,
            "results": self.results,
            "signatures": [signature.to_dict() for signature in self.signatures],
        }


def qa_status(store: Store, batch_id: str, rules: Rules | None = None) -> QaStatus:
    """Read a batch and derive its exceptions, signatures and release state."""
    with store.snapshot() as conn:
        record = batch_record(conn, batch_id)
        verification = verify_connection(conn, batch_id)
        entries = journal_entries(conn, batch_id)
        exceptions = review_connection(conn, record, entries, rules)
    status = derive_status(record, entries, exceptions)
    status.verification = verification
    return status


def derive_status(
    record: BatchRecord, entries: list[Entry], exceptions: list[ReviewException]
) -> QaStatus:
    """Fold a batch's journal and its review exceptions into a QaStatus."""
    by_id = {exc.id: exc for exc in exceptions}
    # Recomputing the chain costs a pass over every entry: only for signatures over it.
    over_chain = any(_signs_the_chain(entry) for entry in entries)
    chain = _recomputed_hashes(record.header.batch_id, entries) if over_chain else {}
    by_seq = {entry.seq: entry for entry in entries}
    signatures: dict[str, Signature] = {}
    dispositions: dict[str, tuple[Entry, Signature | None]] = {}
    status = QaStatus(record, _last_state(entries), [], [])
    for entry in entries:
        data = entry.data
        if entry.kind == SIGNATURE:
            try:
                content = _signed_content(entry, record, by_seq, chain, by_id)
                signature = check_signature(entry, content)
            except (KeyError, TypeError, ValueError, AttributeError):
                signature = Signature(entry, False, "the signature entry is malformed")
            signatures[str(data.get("signature_id"))] = signature
            subject = data.get("subject")
            if (
                data.get("meaning") == "reviewed"
                and isinstance(subject, dict)
                and subject.get("type") == "batch"
            ):
                status.review = signature
        elif entry.kind == SIGNATURE_FAILED:
            status.failed_attempts += 1
        elif entry.kind == DISPOSITION:
            sig = signatures.get(str(data.get("signature_id")))
            dispositions[str(data.get("exception_id"))] = (entry, sig)
        elif entry.kind == DECISION:
            status.decision = str(data.get("decision"))
            pending = data.get("pending")
            status.pending = [str(p) for p in pending] if isinstance(pending, list) else []
        elif entry.kind == QC_RESULT:
            status.results[str(data.get("test"))] = data
    status.signatures = list(signatures.values())
    for exc in exceptions:
        entry_sig = dispositions.get(exc.id)
        status.exceptions.append(ExceptionStatus(exc, *(entry_sig if entry_sig else (None, None))))
    return status


def _last_state(entries: list[Entry]) -> str:
    state = "Idle"
    for entry in entries:
        if entry.kind == BATCH_STATE:
            state = str(entry.data.get("to", state))
    return state


def _signs_the_chain(entry: Entry) -> bool:
    """A signature over the record up to a seq (review, release decision)."""
    subject = entry.data.get("subject")
    return entry.kind == SIGNATURE and isinstance(subject, dict) and "through_seq" in subject


def _recomputed_hashes(batch_id: str, entries: list[Entry]) -> dict[int, str]:
    """Each entry's chain hash recomputed from the record's content (not the stored hash)."""
    hashes: dict[int, str] = {}
    previous = GENESIS_HASH
    for entry in entries:
        previous = entry_hash(
            previous, batch_id, entry.seq, entry.ts, entry.kind, canonical_json(entry.data)
        )
        hashes[entry.seq] = previous
    return hashes


def _signed_content(
    entry: Entry,
    record: BatchRecord,
    by_seq: Mapping[int, Entry],
    chain: Mapping[int, str],
    exceptions: Mapping[str, ReviewException],
) -> dict[str, Any] | None:
    """Re-derive from the record what a signature entry signed (None if it is gone)."""
    subject = entry.data["subject"]
    kind = subject.get("type")
    batch_id = record.header.batch_id
    if kind == "batch":
        seq = int(subject["through_seq"])
        return None if seq not in chain else batch_content(batch_id, seq, chain[seq])
    if kind == "entry":
        target = by_seq.get(int(subject["seq"]))
        return None if target is None else entry_content(target)
    if kind == "exception":
        exc = exceptions.get(str(subject["exception_id"]))
        disposition = by_seq.get(entry.seq + 1)
        if exc is None or disposition is None or disposition.kind != DISPOSITION:
            return None
        return exception_content(batch_id, exc, disposition.data)
    if kind == "qc_result":
        result = by_seq.get(entry.seq + 1)
        return None if result is None else {"batch_id": batch_id, "result": _unsigned(result)}
    if kind == "decision":
        decision = by_seq.get(entry.seq + 1)
        seq = int(subject["through_seq"])
        if decision is None or seq not in chain:
            return None
        return {**batch_content(batch_id, seq, chain[seq]), "decision": _unsigned(decision)}
    return None


def exception_content(
    batch_id: str, exc: ReviewException, disposition: Mapping[str, Any]
) -> dict[str, Any]:
    """What a disposition signature binds to: the exception as found and the justification."""
    return {
        "batch_id": batch_id,
        "exception": exc.to_dict(),
        "comment": disposition.get("comment"),
        "deviation_id": disposition.get("deviation_id"),
    }


def _out_of_spec(result: Mapping[str, Any]) -> bool:
    """A QC result whose verdict is not in specification (older records: outcome fail)."""
    return result.get("verdict") == OOS or result.get("outcome") != "pass"


def _unsigned(entry: Entry) -> dict[str, Any]:
    return {k: v for k, v in entry.data.items() if k != "signature_id"}


class QaDesk:
    """Performs QA's signed actions on ended batches of one store."""

    def __init__(
        self,
        store: Store,
        directory: Directory,
        *,
        rules: Rules | None = None,
        specs: Specifications | None = None,
        clock: Clock = utc_now,
    ) -> None:
        """Act on `store`, authenticating against `directory`; QC results are judged
        against `specs` (default: `load_specs()`)."""
        self.store = store
        self.directory = directory
        self.rules = rules
        self._specs = specs
        self.clock = clock

    @property
    def specs(self) -> Specifications:
        """The release-test specifications in force (loaded on first use)."""
        if self._specs is None:
            self._specs = load_specs()
        return self._specs

    def status(self, batch_id: str) -> QaStatus:
        """The batch's review and release state now."""
        return qa_status(self.store, batch_id, self.rules)

    def dispose(
        self,
        batch_id: str,
        username: str,
        password: str,
        exception_id: str,
        comment: str,
        deviation_id: str | None = None,
    ) -> Signature:
        """Sign off one exception with a justification (and optionally a deviation ID)."""
        status = self._ended(batch_id)
        found = {s.exception.id: s for s in status.exceptions}.get(exception_id)
        subject = {"type": "exception", "exception_id": exception_id}
        if found is None:
            raise ReleaseRefused(f"batch {batch_id} has no exception {exception_id}")
        if not found.open:
            raise ReleaseRefused(f"exception {exception_id} is already dispositioned")
        if status.decision in CLOSED:
            raise ReleaseRefused(f"batch {batch_id} is {status.decision}; the record is closed")
        if not comment.strip():
            raise ReleaseRefused("a disposition needs a comment (the justification)")
        user = self._signer(batch_id, username, password, "reviewed", subject)
        disposition = {
            "exception_id": exception_id,
            "rule": found.exception.rule,
            "comment": comment,
            "deviation_id": deviation_id,
        }
        content = exception_content(batch_id, found.exception, disposition)
        sig = signature_data(user, "reviewed", subject, content, comment)
        disposition["signature_id"] = sig["signature_id"]
        entries = append_entries(
            self.store, batch_id, [(SIGNATURE, sig), (DISPOSITION, disposition)], clock=self.clock
        )
        return Signature(entries[-2], True)

    def sign_review(
        self, batch_id: str, username: str, password: str, comment: str | None = None
    ) -> Signature:
        """QA's review signature over the whole record; needs every exception dispositioned."""
        status = self._ended(batch_id)
        subject: dict[str, Any] = {"type": "batch"}
        if status.open_exceptions:
            raise ReleaseRefused(self._open_list(batch_id, status))
        if status.review is not None and status.review.valid:
            raise ReleaseRefused(f"batch {batch_id} is already reviewed")
        user = self._signer(batch_id, username, password, "reviewed", subject)
        return self._sign_record(batch_id, user, "reviewed", comment, [])

    def release(
        self,
        batch_id: str,
        username: str,
        password: str,
        decision: str,
        *,
        pending: Iterable[str] = (),
        comment: str | None = None,
    ) -> Signature:
        """The QP's decision: released (optionally pending named results), rejected, or
        not for use (what a simulation record may become: SIM-NOT-PRODUCT).

        Refused and journaled as `signature.failed` naming the rule: releasing a
        simulation record, and the reviewer releasing (SOD-REVIEWER-RELEASES).
        """
        status = self._ended(batch_id)
        pending = [test.strip() for test in pending if test.strip()]
        subject: dict[str, Any] = {"type": "decision"}
        if decision not in DECISIONS:
            raise ReleaseRefused(f"decision must be one of {', '.join(map(repr, DECISIONS))}")
        if status.decision in CLOSED:
            raise ReleaseRefused(f"batch {batch_id} is already {status.decision}")
        if decision == RELEASED and status.record.header.simulation:
            refusal = DutyRefused(
                "SIM-NOT-PRODUCT",
                f"batch {batch_id} was made in simulation; decide rejected or not for use",
            )
            record_refusal(self.directory, batch_id, username, "released", subject, refusal)
        if decision == RELEASED:
            self._check_releasable(batch_id, status, pending)
        user = self._signer(batch_id, username, password, "released", subject)
        reviewer = None if status.review is None else status.review.data.get("user_id")
        if decision == RELEASED and reviewer == user.user_id:
            refusal = DutyRefused(
                "SOD-REVIEWER-RELEASES", f"{username} signed the review of batch {batch_id}"
            )
            record_refusal(self.directory, batch_id, username, "released", subject, refusal)
        final = PENDING if decision == RELEASED and pending else decision
        data = {"decision": final, "pending": pending, "comment": comment}
        return self._sign_record(batch_id, user, "released", comment, [(DECISION, data)])

    def record_result(
        self,
        batch_id: str,
        username: str,
        password: str,
        test: str,
        value: str,
        unit: str | None = None,
        comment: str | None = None,
    ) -> Signature:
        """Record a QC release-test result (qc role only, signed as performed): the value
        and unit are judged against the product's specification of `test` and recorded
        with it and the verdict; an out-of-specification result blocks release (QC-OOS)."""
        status = self._ended(batch_id)
        spec = self._specs_of(status).test(status.record.header.product, test.strip())
        recorded, verdict = spec.evaluate(value, unit)
        subject = {"type": "qc_result", "test": spec.name}
        user = self._signer(batch_id, username, password, "performed", subject)
        if spec.name in status.results:
            raise ReleaseRefused(f"a result for {spec.name!r} is already recorded")
        result = {
            "test": spec.name,
            "method": spec.method,
            "specification": spec.to_dict(),
            "value": recorded,
            "unit": spec.unit,
            "verdict": verdict,
            "outcome": "pass" if verdict == IN_SPEC else "fail",
            "comment": comment,
        }
        sig = signature_data(
            user, "performed", subject, {"batch_id": batch_id, "result": result}, comment
        )
        entries = append_entries(
            self.store,
            batch_id,
            [(SIGNATURE, sig), (QC_RESULT, {**result, "signature_id": sig["signature_id"]})],
            clock=self.clock,
        )
        return Signature(entries[0], True)

    # -- helpers ---------------------------------------------------------------------

    def _specs_of(self, status: QaStatus) -> Specifications:
        """The release tests of a batch: its recipe's CQAs (pinned in ``batch.created``)
        and the specifications file's other tests of its product."""
        header = status.record.header
        with self.store.snapshot() as conn:
            created = journal_entries(conn, header.batch_id)[:1]
        return self.specs.for_recipe(header.product, recipe_cqas(created))

    def _ended(self, batch_id: str) -> QaStatus:
        status = self.status(batch_id)
        if not status.valid:
            assert status.verification is not None
            raise ReleaseRefused(
                f"refused by RECORD-INVALID ({RULES['RECORD-INVALID']}): batch {batch_id}: "
                f"{status.verification.first_problem}"
            )
        if not status.ended:
            raise ReleaseRefused(
                f"batch {batch_id} is {status.state}; review and release start when it has ended"
            )
        return status

    def _check_releasable(self, batch_id: str, status: QaStatus, pending: list[str]) -> None:
        failed = sorted(t for t, r in status.results.items() if _out_of_spec(r))
        if failed:
            raise ReleaseRefused(
                f"refused by QC-OOS ({RULES['QC-OOS']}): batch {batch_id}: "
                f"{', '.join(failed)} out of specification; it can only be rejected"
            )
        if status.open_exceptions:
            raise ReleaseRefused(self._open_list(batch_id, status))
        if status.review is None or not status.review.valid:
            raise ReleaseRefused(f"batch {batch_id} has no valid QA review signature yet")
        declared = set(self._specs_of(status).tests(status.record.header.product))
        unknown = sorted(set(pending) - declared)
        if unknown:
            raise ReleaseRefused(
                f"no release test {unknown[0]!r} is specified for product "
                f"{status.record.header.product!r}; pending tests must be declared ones"
            )
        if status.decision == PENDING:
            missing = sorted(set(status.pending) - set(status.results))
            if missing:
                raise ReleaseRefused(f"batch {batch_id} still waits for: {', '.join(missing)}")
            if pending:
                raise ReleaseRefused("the batch is already released pending results")
        absent = sorted(declared - set(status.results) - set(pending))
        if absent:
            raise ReleaseRefused(
                f"batch {batch_id}: no result yet for release test(s) {', '.join(absent)}; "
                "release pending them (--pending) or record them first"
            )

    def _open_list(self, batch_id: str, status: QaStatus) -> str:
        ids = ", ".join(s.exception.id for s in status.open_exceptions)
        return f"batch {batch_id} has {len(status.open_exceptions)} open exception(s): {ids}"

    def _sign_record(
        self,
        batch_id: str,
        user: User,
        meaning: str,
        comment: str | None,
        extra: list[tuple[str, Mapping[str, Any]]],
    ) -> Signature:
        """Sign the record through its current tip, and append `extra` right after."""
        with self.store.snapshot() as conn:
            tip = journal_entries(conn, batch_id)[-1]
        subject = {"type": "decision" if extra else "batch", "through_seq": tip.seq}
        content: dict[str, Any] = batch_content(batch_id, tip.seq, tip.hash)
        if extra:
            content["decision"] = dict(extra[0][1])
        sig = signature_data(user, meaning, subject, content, comment)
        extra = [(kind, {**data, "signature_id": sig["signature_id"]}) for kind, data in extra]
        recorded = append_entries(
            self.store, batch_id, [(SIGNATURE, sig), *extra], clock=self.clock
        )
        return Signature(recorded[0], True)

    def _signer(
        self, batch_id: str, username: str, password: str, meaning: str, subject: Mapping[str, Any]
    ) -> User:
        """Authenticate and check the role (a failed attempt is journaled in the batch)."""
        return authenticate_signer(self.directory, batch_id, username, password, meaning, subject)
