"""Lots: one patient's product (its chain-of-identity ID) across linked batches.

The batches of a lot are the batches whose header carries its COI, in the order they
were created (expansion → wash/formulate → cryopreserve). Material moves between them
by **hand-over**: recorded on the ``@lots`` chain (``LOT_CHAIN``) as the output of one
batch and the input of the next — volume, viable cells, container IDs, who (a
``performed`` signature) and when (the entry's time) — after an identity check: both
batches must carry the lot's COI and the label scanned on the containers must read it;
a mismatch is journaled (``identity.mismatch``) and refused.

:func:`build_package` compiles what the QP decides on: each batch's summary and
verification, its exceptions and their dispositions, its QC results against the CQAs
its recipe declared, its identity scans, its signatures; the hand-overs; the
deviations linked to the lot or its batches; and ``findings`` — every reason the lot
cannot be released. ``package_sha256`` is the SHA-256 of the package's canonical JSON.

:meth:`LotDesk.release` records the QP's decision with one ``released`` signature over
``{chain, coi, decision, package_sha256}``; ``released`` is refused while there is any
finding. The signature is re-checked against the package as the store gives it now, so
any later change to a batch, hand-over or deviation shows it invalid.
"""

from __future__ import annotations

import hashlib
import itertools
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from ebr.people.signatures import (
    SIGNATURE,
    Signature,
    authenticate_signer,
    check_signature,
    signature_data,
)
from ebr.people.users import Directory
from ebr.record.canonical import canonical_json
from ebr.record.clock import Clock, utc_now
from ebr.record.errors import EbrError
from ebr.record.kinds import Kind
from ebr.record.ledger import append_entries, create_chain
from ebr.record.model import LOT_CHAIN, BatchHeader, Entry
from ebr.record.query import BatchSummary, journal_entries, list_batches
from ebr.record.store import Store
from ebr.record.verify import verify_batch
from ebr.review.cqas import qc_checks, recipe_cqas
from ebr.review.deviations import Deviation, deviations
from ebr.review.exceptions import Rules, load_rules
from ebr.review.release import FINAL_STATES, REJECTED, RELEASED, QaStatus, qa_status

DECISIONS = (RELEASED, REJECTED)


class LotRefused(EbrError):
    """A lot action was refused; the message says why."""


@dataclass
class LotChain:
    """What the ``@lots`` chain says about lots: hand-overs, mismatches, decisions."""

    handovers: dict[str, list[Entry]] = field(default_factory=dict)
    mismatches: dict[str, list[Entry]] = field(default_factory=dict)
    decisions: dict[str, list[tuple[Entry, Entry | None]]] = field(default_factory=dict)
    signatures: dict[str, Entry] = field(default_factory=dict)


def read_lot_chain(store: Store) -> LotChain:
    """The ``@lots`` chain folded by COI (empty when no lot was ever touched)."""
    chain = LotChain()
    with store.snapshot() as conn:
        try:
            entries = journal_entries(conn, LOT_CHAIN)
        except EbrError:
            return chain
    for entry in entries:
        coi = str(entry.data.get("coi", ""))
        if entry.kind == SIGNATURE:
            chain.signatures[str(entry.data.get("signature_id"))] = entry
        elif entry.kind == Kind.LOT_HANDOVER:
            chain.handovers.setdefault(coi, []).append(entry)
        elif entry.kind == Kind.IDENTITY_MISMATCH:
            chain.mismatches.setdefault(coi, []).append(entry)
        elif entry.kind == Kind.LOT_DECISION:
            sig = chain.signatures.get(str(entry.data.get("signature_id")))
            chain.decisions.setdefault(coi, []).append((entry, sig))
    return chain


def lot_batches(store: Store, coi: str) -> list[BatchSummary]:
    """The batches of a lot, in the order they were created."""
    return [s for s in list_batches(store) if s.coi == coi]


def lot_ids(store: Store) -> list[str]:
    """Every COI that has at least one batch, in the order first seen."""
    seen: dict[str, None] = {}
    for summary in list_batches(store):
        if summary.coi:
            seen.setdefault(summary.coi, None)
    return list(seen)


@dataclass(frozen=True)
class LotPackage:
    """The lot disposition package and the hash the QP signs."""

    coi: str
    content: dict[str, Any]
    sha256: str

    @property
    def findings(self) -> list[str]:
        """Every reason the lot cannot be released (empty: releasable)."""
        return list(self.content["findings"])

    def to_dict(self) -> dict[str, Any]:
        """The package with its hash (the JSON export)."""
        return {"package_sha256": self.sha256, **self.content}


def package_hash(content: Mapping[str, Any]) -> str:
    """SHA-256 hex of the canonical JSON of a package's content."""
    return hashlib.sha256(canonical_json(dict(content)).encode("utf-8")).hexdigest()


def build_package(store: Store, coi: str, rules: Rules | None = None) -> LotPackage:
    """Compile the lot disposition package of `coi` from the store as it is now."""
    rules = rules or load_rules()
    summaries = lot_batches(store, coi)
    if not summaries:
        raise LotRefused(f"no batch carries the chain-of-identity ID {coi!r}")
    chain = read_lot_chain(store)
    findings: list[str] = []
    batches = [_batch_part(store, s, rules, findings) for s in summaries]
    handovers = [_handover_part(entry, chain) for entry in chain.handovers.get(coi, [])]
    ids = [s.batch_id for s in summaries]
    for earlier, later in itertools.pairwise(ids):
        if not any(h["from_batch"] == earlier and h["to_batch"] == later for h in handovers):
            findings.append(f"no hand-over recorded from {earlier} to {later}")
    linked = [d for d in deviations(store).values() if _linked(d, coi, ids)]
    for dev in linked:
        if dev.open:
            findings.append(f"deviation {dev.deviation_id} ({dev.classification}) is open")
    content = {
        "coi": coi,
        "product": summaries[-1].product,
        "batches": batches,
        "handovers": handovers,
        "identity_mismatches": [
            {"ts": e.ts, "seq": e.seq, **e.data} for e in chain.mismatches.get(coi, [])
        ],
        "deviations": [_deviation_part(d) for d in linked],
        "findings": findings,
        "rules_digest": rules.digest,
    }
    return LotPackage(coi, content, package_hash(content))


def _linked(dev: Deviation, coi: str, batch_ids: Iterable[str]) -> bool:
    return dev.links_to(lot=coi) or any(dev.links_to(batch=b) for b in batch_ids)


def _batch_part(
    store: Store, summary: BatchSummary, rules: Rules, findings: list[str]
) -> dict[str, Any]:
    batch_id = summary.batch_id
    status = qa_status(store, batch_id, rules)
    verified = verify_batch(store, batch_id)
    with store.snapshot() as conn:
        entries = journal_entries(conn, batch_id)
    created = entries[0].data if entries else {}
    plant = created.get("plant") if isinstance(created.get("plant"), dict) else {}
    checks = qc_checks(recipe_cqas(entries[:1]), status.results)
    scans = [
        {"seq": e.seq, "ts": e.ts, "kind": str(e.kind), **e.data}
        for e in entries
        if e.kind in (Kind.IDENTITY_CONFIRMED, Kind.IDENTITY_MISMATCH)
    ]
    _batch_findings(batch_id, status, verified.ok, checks, findings)
    if not verified.ok and verified.first_problem is not None:
        findings.append(f"{batch_id}: record fails verification: {verified.first_problem.message}")
    return {
        "batch_id": batch_id,
        "recipe": {
            "name": summary.recipe_name,
            "version": summary.recipe_version,
            "content_hash": status.record.header.recipe_hash,
        },
        "product": summary.product,
        "site": (plant or {}).get("site"),
        "simulation": summary.simulation,
        "created_at": summary.created_at,
        "state": status.state,
        "disposition": status.disposition,
        "verification": {"ok": verified.ok, "entries_checked": verified.entries_checked},
        "review": None if status.review is None else _signature_part(status.review),
        "exceptions": [_exception_part(item.to_dict()) for item in status.exceptions],
        "qc_results": [check.to_dict() for check in checks],
        "identity_scans": scans,
        "signatures": [_signature_part(sig) for sig in status.signatures],
    }


def _batch_findings(
    batch_id: str, status: QaStatus, verified: bool, checks: list[Any], findings: list[str]
) -> None:
    if status.state not in FINAL_STATES:
        findings.append(f"{batch_id}: the batch has not ended ({status.state})")
    if status.open_exceptions:
        findings.append(f"{batch_id}: {len(status.open_exceptions)} open exception(s)")
    if status.review is None or not status.review.valid:
        findings.append(f"{batch_id}: not reviewed by QA (no valid review signature)")
    if status.decision == REJECTED:
        findings.append(f"{batch_id}: the batch was rejected")
    for check in checks:
        if check.status != "pass":
            findings.append(f"{batch_id}: QC {check.cqa.name} {check.status}")


def _exception_part(item: Mapping[str, Any]) -> dict[str, Any]:
    disposition = item.get("disposition") or {}
    signature = item.get("signature")
    return {
        "id": item["id"],
        "severity": item["severity"],
        "category": item["category"],
        "title": item["title"],
        "open": item["open"],
        "disposition": disposition.get("comment"),
        "deviation_id": disposition.get("deviation_id"),
        "signed_by": None if not signature else signature.get("username"),
    }


def _signature_part(sig: Signature) -> dict[str, Any]:
    d = sig.data
    return {
        "signature_id": d.get("signature_id"),
        "printed_name": d.get("printed_name"),
        "username": d.get("username"),
        "user_id": d.get("user_id"),
        "meaning": d.get("meaning"),
        "ts": sig.entry.ts,
        "subject": d.get("subject"),
        "comment": d.get("comment"),
        "valid": sig.valid,
    }


def _handover_part(entry: Entry, chain: LotChain) -> dict[str, Any]:
    data = dict(entry.data)
    sig_entry = chain.signatures.get(str(data.get("signature_id")))
    signature = None
    if sig_entry is not None:
        content = handover_content({k: v for k, v in data.items() if k != "signature_id"})
        signature = _signature_part(check_signature(sig_entry, content))
    return {"ts": entry.ts, "seq": entry.seq, **data, "signature": signature}


def _deviation_part(dev: Deviation) -> dict[str, Any]:
    return {
        **dev.content(),
        "status": dev.status,
        "opened_at": dev.opened_at,
        "closed_at": dev.closed_at,
        "closure": None if dev.closure is None else _signature_part(dev.closure),
    }


def handover_content(handover: Mapping[str, Any]) -> dict[str, Any]:
    """What the hand-over signature binds to."""
    return {"chain": LOT_CHAIN, "handover": dict(handover)}


def decision_content(coi: str, decision: str, package_sha256: str) -> dict[str, Any]:
    """What the QP's lot decision signature binds to."""
    return {"chain": LOT_CHAIN, "coi": coi, "decision": decision, "package_sha256": package_sha256}


@dataclass(frozen=True)
class LotDecision:
    """A recorded lot decision and whether its signature still matches the package."""

    decision: str
    entry: Entry
    signature: Signature

    def to_dict(self) -> dict[str, Any]:
        """JSON view."""
        return {
            "decision": self.decision,
            "ts": self.entry.ts,
            "package_sha256": self.entry.data.get("package_sha256"),
            "signature": _signature_part(self.signature),
            "problem": self.signature.problem,
        }


def lot_decision(store: Store, package: LotPackage) -> LotDecision | None:
    """The lot's last decision, its signature re-checked against `package` (now)."""
    recorded = read_lot_chain(store).decisions.get(package.coi, [])
    if not recorded:
        return None
    entry, sig_entry = recorded[-1]
    decision = str(entry.data.get("decision"))
    if sig_entry is None:
        return LotDecision(
            decision, entry, Signature(entry, False, "the decision has no signature")
        )
    signature = check_signature(sig_entry, decision_content(package.coi, decision, package.sha256))
    if not signature.valid:
        signature = Signature(sig_entry, False, "the lot package has changed since it was signed")
    return LotDecision(decision, entry, signature)


class LotDesk:
    """Records hand-overs and the QP's lot decisions in one store."""

    def __init__(
        self,
        store: Store,
        directory: Directory,
        *,
        rules: Rules | None = None,
        clock: Clock = utc_now,
    ) -> None:
        """Act on `store`, authenticating people against `directory`."""
        self.store = store
        self.directory = directory
        self.rules = rules
        self.clock = clock

    def handover(
        self,
        username: str,
        password: str,
        coi: str,
        *,
        from_batch: str,
        to_batch: str,
        volume_ml: float,
        viable_cells: float,
        containers: Iterable[str],
        scanned: str,
        comment: str | None = None,
    ) -> Entry:
        """Record material handed from one batch to the next, after the identity check."""
        containers = [c.strip() for c in containers if c.strip()]
        if not containers:
            raise LotRefused("name the container(s) handed over")
        if not volume_ml > 0 or not viable_cells > 0:
            raise LotRefused("volume and viable cells handed over must be positive")
        if from_batch == to_batch:
            raise LotRefused("a hand-over goes from one batch to another")
        batches = {s.batch_id: s for s in list_batches(self.store)}
        for batch_id in (from_batch, to_batch):
            if batch_id not in batches:
                raise LotRefused(f"no batch {batch_id}")
        found = {
            "from_batch": batches[from_batch].coi,
            "to_batch": batches[to_batch].coi,
            "container label": scanned.strip(),
        }
        wrong = {where: value for where, value in found.items() if value != coi}
        self._ensure_chain()
        if wrong:
            mismatch = {"coi": coi, "from_batch": from_batch, "to_batch": to_batch,
                        "containers": containers, "found": wrong, "user": username}  # fmt: skip
            append_entries(
                self.store, LOT_CHAIN, [(Kind.IDENTITY_MISMATCH, mismatch)], clock=self.clock
            )
            detail = ", ".join(f"{k} reads {v!r}" for k, v in wrong.items())
            raise LotRefused(f"identity mismatch for lot {coi}: {detail}; hand-over refused")
        state = qa_status(self.store, from_batch, self.rules).state
        if state not in FINAL_STATES:
            raise LotRefused(f"batch {from_batch} is {state}; its output exists once it has ended")
        subject = {"type": "handover", "coi": coi, "from_batch": from_batch, "to_batch": to_batch}
        user = authenticate_signer(
            self.directory, LOT_CHAIN, username, password, "performed", subject
        )
        data = {
            "coi": coi,
            "from_batch": from_batch,
            "to_batch": to_batch,
            "volume_ml": float(volume_ml),
            "viable_cells": float(viable_cells),
            "containers": containers,
            "scanned": scanned.strip(),
            "comment": comment,
            "user": user.username,
        }
        sig = signature_data(user, "performed", subject, handover_content(data), comment)
        entries = append_entries(
            self.store,
            LOT_CHAIN,
            [(SIGNATURE, sig), (Kind.LOT_HANDOVER, {**data, "signature_id": sig["signature_id"]})],
            clock=self.clock,
        )
        return entries[-1]

    def release(
        self,
        username: str,
        password: str,
        coi: str,
        decision: str,
        comment: str | None = None,
    ) -> tuple[LotPackage, Signature]:
        """The QP's lot decision over the package hash; ``released`` needs no findings."""
        if decision not in DECISIONS:
            raise LotRefused(f"decision must be {RELEASED!r} or {REJECTED!r}")
        package = build_package(self.store, coi, self.rules)
        previous = lot_decision(self.store, package)
        if previous is not None and previous.signature.valid:
            raise LotRefused(f"lot {coi} is already {previous.decision}")
        if decision == RELEASED and package.findings:
            listed = "; ".join(package.findings)
            raise LotRefused(f"lot {coi} cannot be released: {listed}")
        subject = {"type": "lot", "coi": coi, "package_sha256": package.sha256}
        self._ensure_chain()
        user = authenticate_signer(
            self.directory, LOT_CHAIN, username, password, "released", subject
        )
        content = decision_content(coi, decision, package.sha256)
        sig = signature_data(user, "released", subject, content, comment)
        data = {"coi": coi, "decision": decision, "package_sha256": package.sha256,
                "comment": comment, "signature_id": sig["signature_id"]}  # fmt: skip
        entries = append_entries(
            self.store, LOT_CHAIN, [(SIGNATURE, sig), (Kind.LOT_DECISION, data)], clock=self.clock
        )
        return package, Signature(entries[0], True)

    def _ensure_chain(self) -> None:
        header = BatchHeader(LOT_CHAIN, "cellbatch.lots", "1", "", "", "", False)
        create_chain(
            self.store, header, {"purpose": "lot hand-overs and decisions"}, clock=self.clock
        )
