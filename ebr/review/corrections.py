"""Corrections of typed entries (R4): a new signed entry, the original left as it was.

A value someone typed at a prompt (a count, a weight, a scanned code) may turn out
wrong. It is never edited: `correct()` appends an `entry.corrected` entry naming the
answer it corrects (`corrects`: its seq), the old and new values of each corrected
field and the reason, followed by the corrector's signature over it (meaning performed)
and, where the original prompt needed a second person's verification (R14), the
verifier's signature (meaning verified, another account). The journal, every export
and the audit trail therefore hold both values; review lists each correction
(rule `correction`). Corrections are made on an ended batch, before its disposition
is closed: while the batch runs, its record belongs to the controller's writer.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ebr.people.signatures import (
    SIGNATURE,
    authenticate_signer,
    entry_content,
    signature_data,
)
from ebr.people.users import Directory
from ebr.record.kinds import Kind
from ebr.record.ledger import append_entries
from ebr.record.model import Entry
from ebr.record.query import read_journal
from ebr.review.release import CLOSED, QaDesk, ReleaseRefused


def correct(
    desk: QaDesk,
    batch_id: str,
    seq: int,
    values: Mapping[str, Any],
    reason: str,
    signer: tuple[str, str],
    verifier: tuple[str, str] | None = None,
) -> Entry:
    """Correct the typed values of the prompt answer at `seq`; returns the correction entry.

    `signer` and `verifier` are (username, password). Refused (ReleaseRefused) without a
    reason, for an entry that is not a prompt answer, for a field the answer does not
    hold, an unchanged value, a batch still running or already closed, and without a
    verifier (or with the same person) where the original needed verification.
    """
    status = desk.status(batch_id)
    if not status.ended:
        raise ReleaseRefused(
            f"batch {batch_id} is {status.state}; typed entries are corrected once it has ended"
        )
    if status.decision in CLOSED:
        raise ReleaseRefused(f"batch {batch_id} is {status.decision}; the record is closed")
    if not reason.strip():
        raise ReleaseRefused("a correction needs a reason")
    entries = read_journal(desk.store, batch_id)
    target = next((e for e in entries if e.seq == seq), None)
    if target is None or target.kind != Kind.PROMPT_ANSWERED:
        raise ReleaseRefused(f"batch {batch_id} seq {seq} is not a typed entry (prompt answer)")
    current = dict(target.data.get("values") or {})
    for earlier in entries:  # a field corrected before: the correction corrects that
        if earlier.kind == Kind.ENTRY_CORRECTED and earlier.data.get("corrects") == seq:
            current.update(earlier.data.get("new") or {})
    unknown = sorted(set(values) - set(current))
    if unknown or not values:
        raise ReleaseRefused(
            f"seq {seq} holds {', '.join(sorted(current)) or 'no values'}; "
            f"cannot correct {', '.join(unknown) or 'nothing'}"
        )
    same = sorted(k for k, v in values.items() if current[k] == v)
    if same:
        raise ReleaseRefused(f"{', '.join(same)}: the correction equals the current value")
    needs_verifier = _verification_required(entries, target)
    if needs_verifier and verifier is None:
        raise ReleaseRefused(
            f"seq {seq} needed a second person's verification; so does its correction"
        )
    if verifier is not None and verifier[0] == signer[0]:
        raise ReleaseRefused("the verifier must be another person")
    subject = {"type": "entry", "seq": seq}
    directory: Directory = desk.directory
    user = authenticate_signer(directory, batch_id, *signer, "performed", subject)
    checker = (
        authenticate_signer(directory, batch_id, *verifier, "verified", subject)
        if verifier is not None
        else None
    )
    data = {
        "corrects": seq,
        "element": target.data.get("element"),
        "prompt": target.data.get("prompt"),
        "old": {k: current[k] for k in values},
        "new": dict(values),
        "reason": reason.strip(),
        "user": user.username,
        "user_id": user.user_id,
        "printed_name": user.printed_name,
        "verifier": checker.username if checker else None,
    }
    (entry,) = append_entries(
        desk.store, batch_id, [(Kind.ENTRY_CORRECTED, data)], clock=desk.clock
    )
    signed = {"type": "entry", "seq": entry.seq}
    signatures = [signature_data(user, "performed", signed, entry_content(entry), reason)]
    if checker is not None:
        signatures.append(signature_data(checker, "verified", signed, entry_content(entry), None))
    append_entries(desk.store, batch_id, [(SIGNATURE, s) for s in signatures], clock=desk.clock)
    return entry


def _verification_required(entries: list[Entry], answer: Entry) -> bool:
    """Whether the prompt this answer closed asked for a second person's verification."""
    prompt_id = answer.data.get("prompt")
    opened = [
        e for e in entries if e.kind == Kind.PROMPT_OPENED and e.data.get("prompt") == prompt_id
    ]
    return bool(opened and opened[-1].data.get("verify")) or bool(answer.data.get("verifier"))
