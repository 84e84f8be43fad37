"""What anchors a chain: trusted keys, signed checkpoints and the site's batch index.

Read from the site chain (`key.trusted`, `key.retired`, `batch.registered`,
`batch.sealed`) and the `checkpoints` table; used by `ebr.record.verify` so that
rechaining, forged appends, tail cuts and deleted batches are found without the key.
"""

from __future__ import annotations

import json
from collections.abc import Collection, Iterable
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Connection, select

from ebr.record.checks import ChainReport, Problem
from ebr.record.kinds import Kind
from ebr.record.model import SITE_CHAIN
from ebr.record.schema import checkpoints, journal
from ebr.record.signing import Checkpoint, endorsement_message, key_id_of, verify_signature

_INDEX_KINDS = (Kind.KEY_TRUSTED, Kind.KEY_RETIRED, Kind.BATCH_REGISTERED, Kind.BATCH_SEALED)


@dataclass(slots=True)
class TrustedKey:
    """A signing key as the site chain records it."""

    key_id: str
    public_key: str
    trusted_at: str
    """Time of its `key.trusted` entry."""
    endorsed_by: str
    retired_at: str | None = None


@dataclass(slots=True)
class SiteIndex:
    """The site chain's keys and batch index (latest seal per batch)."""

    keys: dict[str, TrustedKey] = field(default_factory=dict)
    registered: dict[str, tuple[int, str]] = field(default_factory=dict)
    """batch id → (site seq, hash of its first entry)."""
    sealed: dict[str, tuple[int, int, str]] = field(default_factory=dict)
    """batch id → (site seq, head seq, head hash) of its latest `batch.sealed`."""
    signing_since: str | None = None
    """Time of the first trusted key: chains made from then on must be signed."""
    problems: list[Problem] = field(default_factory=list)
    """Key entries that do not hold (bad endorsement): reported on the site chain."""

    def anchor(self) -> TrustedKey | None:
        """The first trusted key (what `ebr verify --trust` pins)."""
        return next(iter(self.keys.values()), None)


def load_index(conn: Connection) -> SiteIndex:
    """Read the site chain's keys and batch index, in chain order."""
    rows = conn.execute(
        select(journal.c.seq, journal.c.ts, journal.c.kind, journal.c.data)
        .where(journal.c.batch_id == SITE_CHAIN, journal.c.kind.in_([str(k) for k in _INDEX_KINDS]))
        .order_by(journal.c.seq)
    )
    index = SiteIndex()
    for seq, ts, kind, text in rows:
        try:
            data: dict[str, Any] = json.loads(text)
            _apply(index, int(seq), str(ts), str(kind), data)
        except (ValueError, KeyError, TypeError, AttributeError):
            index.problems.append(
                Problem(f"site chain seq {seq} ({kind}): malformed entry", seq=int(seq))
            )
    return index


def _apply(index: SiteIndex, seq: int, ts: str, kind: str, data: dict[str, Any]) -> None:
    if kind == Kind.KEY_TRUSTED:
        public_key, endorsed_by = str(data["public_key"]), str(data["endorsed_by"])
        key_id = key_id_of(public_key)
        endorser = public_key if not index.keys else None
        if index.keys:
            known = index.keys.get(endorsed_by)
            if known is not None and known.retired_at is None:
                endorser = known.public_key
        message = endorsement_message(public_key)
        if (
            key_id != data["key_id"]
            or endorser is None
            or not verify_signature(endorser, message, str(data["endorsement"]))
        ):
            index.problems.append(
                Problem(
                    f"site chain seq {seq} (key.trusted): key {data.get('key_id')} is not endorsed "
                    "by a key trusted before it (a key was added outside `cellbatch keys`)",
                    seq=seq,
                )
            )
            return
        index.keys.setdefault(key_id, TrustedKey(key_id, public_key, ts, endorsed_by))
        index.signing_since = index.signing_since or ts
    elif kind == Kind.KEY_RETIRED:
        key = index.keys.get(str(data["key_id"]))
        if key is not None and key.retired_at is None:
            key.retired_at = ts
    elif kind == Kind.BATCH_REGISTERED:
        index.registered.setdefault(str(data["batch_id"]), (seq, str(data["first_hash"])))
    elif kind == Kind.BATCH_SEALED:
        batch_id = str(data["batch_id"])
        index.sealed[batch_id] = (seq, int(data["head_seq"]), str(data["head_hash"]))


def _entry_at(conn: Connection, batch_id: str, seq: int) -> tuple[str, str] | None:
    """(hash, ts) of entry `seq` of a batch, or None."""
    row = conn.execute(
        select(journal.c.hash, journal.c.ts).where(
            journal.c.batch_id == batch_id, journal.c.seq == seq
        )
    ).first()
    return None if row is None else (str(row.hash), str(row.ts))


def top_checkpoint(conn: Connection, batch_id: str) -> Checkpoint | None:
    """The checkpoint of a batch with the highest seq (the latest signed head)."""
    row = conn.execute(
        select(checkpoints)
        .where(checkpoints.c.batch_id == batch_id)
        .order_by(checkpoints.c.seq.desc(), checkpoints.c.id.desc())
        .limit(1)
    ).first()
    if row is None:
        return None
    return Checkpoint(batch_id, int(row.seq), row.hash, row.key_id, row.signature)


def check_checkpoint(
    index: SiteIndex, checkpoint: Checkpoint, entry_ts: str | None, where: str
) -> Problem | None:
    """Whether `checkpoint` is signed by a key trusted (and not retired) at `entry_ts`."""
    key = index.keys.get(checkpoint.key_id)
    if key is None:
        return Problem(
            f"{where}: signed by key {checkpoint.key_id}, which the site chain does not trust "
            "(forged checkpoint)",
            seq=checkpoint.seq,
        )
    if not checkpoint.valid(key.public_key):
        return Problem(f"{where}: invalid signature (forged checkpoint)", seq=checkpoint.seq)
    if key.retired_at is not None and entry_ts is not None and entry_ts > key.retired_at:
        return Problem(
            f"{where}: signed by key {key.key_id}, retired at {key.retired_at}",
            seq=checkpoint.seq,
        )
    return None


def check_anchors(
    conn: Connection, batch_id: str, report: ChainReport, index: SiteIndex
) -> list[Problem]:
    """Check a walked chain against its signed checkpoints and the site's batch index."""
    if not index.keys or report.problem is not None or report.last_seq == 0:
        return []
    problems: list[Problem] = []
    last_seq, last_hash = report.last_seq, report.last_hash
    registered = index.registered.get(batch_id)
    if registered is not None:
        first = _entry_at(conn, batch_id, 1)
        if first is None or first[0] != registered[1]:
            problems.append(
                Problem(
                    f"seq 1: differs from the first entry the site chain registered at site seq "
                    f"{registered[0]} (the batch was rewritten from its start)",
                    seq=1,
                )
            )
    top = top_checkpoint(conn, batch_id)
    must_sign = registered is not None or (
        index.signing_since is not None and report.first_ts >= index.signing_since
    )
    if top is None:
        if must_sign:
            problems.append(
                Problem(
                    f"head: no signed checkpoint covers seq 1–{last_seq} (entries written "
                    "outside the journal writer, or their checkpoints deleted)",
                    seq=1,
                )
            )
    else:
        problems.extend(_check_top(conn, batch_id, top, last_seq, last_hash, index))
    sealed = index.sealed.get(batch_id)
    if sealed is not None:
        problems.extend(_check_seal(conn, batch_id, sealed, last_seq))
    return problems


def _check_top(
    conn: Connection,
    batch_id: str,
    top: Checkpoint,
    last_seq: int,
    last_hash: str,
    index: SiteIndex,
) -> Iterable[Problem]:
    where = f"checkpoint at seq {top.seq}"
    at = _entry_at(conn, batch_id, top.seq) if top.seq <= last_seq else None
    bad = check_checkpoint(index, top, at[1] if at else None, where)
    if bad is not None:
        yield bad
        return
    if top.seq > last_seq:
        yield Problem(
            f"head: the signed head is seq {top.seq} but the journal ends at seq {last_seq} "
            "(entries cut off and the head moved back)",
            seq=last_seq + 1,
        )
    elif at is None or at[0] != top.hash:
        yield Problem(
            f"journal entry seq {top.seq}: hash differs from the signed checkpoint (entries "
            "were rewritten and the chain recomputed)",
            seq=top.seq,
        )
    elif top.seq < last_seq:
        yield Problem(
            f"head: journal entries seq {top.seq + 1}–{last_seq} are not covered by a signed "
            "checkpoint (appended outside the journal writer)",
            seq=top.seq + 1,
        )
    elif top.hash != last_hash:  # pragma: no cover - same seq, same hash as `at`
        yield Problem(f"head: differs from the signed checkpoint at seq {top.seq}", seq=top.seq)


def _check_seal(
    conn: Connection, batch_id: str, sealed: tuple[int, int, str], last_seq: int
) -> Iterable[Problem]:
    site_seq, head_seq, head_hash = sealed
    if head_seq > last_seq:
        yield Problem(
            f"head: the site chain sealed this batch at seq {head_seq} (site seq {site_seq}) "
            f"but the journal ends at seq {last_seq} (entries cut off)",
            seq=last_seq + 1,
        )
        return
    at = _entry_at(conn, batch_id, head_seq)
    if at is None or at[0] != head_hash:
        yield Problem(
            f"journal entry seq {head_seq}: hash differs from the head the site chain sealed "
            f"at site seq {site_seq} (entries were rewritten)",
            seq=head_seq,
        )


def signed_head(conn: Connection, batch_id: str) -> dict[str, Any] | None:
    """The batch's latest checkpoint with its public key (what an export carries), or
    None for an unsigned record."""
    top = top_checkpoint(conn, batch_id)
    if top is None:
        return None
    key = load_index(conn).keys.get(top.key_id)
    if key is None:
        return None
    return {**top.to_dict(), "public_key": key.public_key}


def check_signed_head(
    signed: Any, head_seq: Any, head_hash: Any, trusted: Collection[str] | None
) -> Problem | None:
    """Check an export's `signed_head`: a valid signature over exactly the batch head, by
    one of `trusted` public keys when given."""
    if signed is None:
        if trusted:
            return Problem("export: no signed head (the record is unsigned)")
        return None
    fields = ("batch_id", "seq", "hash", "key_id", "signature", "public_key")
    if not isinstance(signed, dict) or not all(name in signed for name in fields):
        return Problem("export: signed_head is malformed")
    checkpoint = Checkpoint(
        str(signed["batch_id"]),
        signed["seq"],
        str(signed["hash"]),
        str(signed["key_id"]),
        str(signed["signature"]),
    )
    public_key = str(signed["public_key"])
    if not checkpoint.valid(public_key):
        return Problem("export: the signed head's signature is invalid (forged or edited)")
    if checkpoint.seq != head_seq or checkpoint.hash != head_hash:
        return Problem(
            f"export: the signed head is seq {checkpoint.seq}, not the batch head seq "
            f"{head_seq} (entries were added, cut or rechained after signing)"
        )
    if trusted and public_key not in trusted:
        return Problem(f"export: signed by key {checkpoint.key_id}, which is not a --trust key")
    return None
