"""Verify a JSON export with no database: the chain, the samples and every signature.

`verify_export` (ebr.record.verify) recomputes the hash chain, the head, the header and
the sample-block digests. That alone cannot see a record rewritten with every later
hash and the head recomputed; a signature can: each one is re-derived here from the
exported record (entries, QC results, dispositions through the review rules, the chain
hash at its `through_seq`) and compared with the hash that was signed. The first
problem is named: `journal entry seq 57 …`, `sample block 3 …` or
`signature SIG-… (released, seq 212): the signed content has changed since signing`.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from dataclasses import dataclass, field
from typing import Any

from ebr.people.signatures import Signature
from ebr.record.checks import VerifyResult
from ebr.record.errors import EbrError
from ebr.record.model import BatchHeader, BatchRecord, Entry, Sample
from ebr.record.verify import verify_export
from ebr.review.exceptions import Rules, load_rules, review_batch
from ebr.review.release import derive_status


class ExportError(EbrError):
    """An export whose chain verifies but whose content cannot be read as a record."""


@dataclass(frozen=True)
class ExportVerdict:
    """What offline verification of one export found."""

    result: VerifyResult
    signatures: list[Signature] = field(default_factory=list)

    @property
    def batch_id(self) -> str:
        """The exported batch."""
        return self.result.batch_id

    @property
    def invalid_signatures(self) -> list[Signature]:
        """Signatures whose content no longer hashes to what was signed."""
        return [s for s in self.signatures if not s.valid]

    @property
    def ok(self) -> bool:
        """Intact chain, samples and signatures."""
        return self.result.ok and not self.invalid_signatures

    @property
    def first_problem(self) -> str | None:
        """The first finding as one line, or None when intact."""
        if not self.result.ok:
            problem = self.result.first_problem
            return None if problem is None else problem.message
        for sig in self.invalid_signatures:
            data = sig.data
            return (
                f"signature {data.get('signature_id')} ({data.get('meaning')} by "
                f"{data.get('username')}, seq {sig.entry.seq}): {sig.problem}"
            )
        return None


def verify_export_file(
    doc: Mapping[str, Any], rules: Rules | None = None, trusted: Collection[str] | None = None
) -> ExportVerdict:
    """Verify a `cellbatch-ebr/1` export document offline (see the module docstring).

    Signatures are checked only once the chain and samples are intact (after a broken
    entry nothing is trusted, and the chain problem is the one to report)."""
    result = verify_export(doc, trusted)
    if not result.ok:
        return ExportVerdict(result)
    try:
        record, entries, samples = _record_of(doc)
    except (KeyError, TypeError, ValueError, IndexError) as exc:
        raise ExportError(f"export: malformed batch, journal or samples ({exc!r})") from None
    exceptions = review_batch(record, entries, samples, rules or load_rules())
    status = derive_status(record, entries, exceptions)
    return ExportVerdict(result, status.signatures)


def _record_of(doc: Mapping[str, Any]) -> tuple[BatchRecord, list[Entry], list[Sample]]:
    """The export's batch row, journal and samples as the record types (already verified)."""
    batch = doc["batch"]
    header = BatchHeader(
        batch["batch_id"],
        batch["recipe_name"],
        batch["recipe_version"],
        batch["recipe_hash"],
        batch["product"],
        batch["coi"],
        bool(batch["simulation"]),
    )
    record = BatchRecord(header, batch["created_at"], batch["head_seq"], batch["head_hash"])
    entries = [
        Entry(header.batch_id, e["seq"], e["ts"], e["kind"], e["data"], e["prev_hash"], e["hash"])
        for e in doc["journal"]
    ]
    samples = [
        Sample(row[0], row[1], row[2], row[3], row[4])
        for block in doc["sample_blocks"]
        for row in block["rows"]
    ]
    return record, entries, samples
