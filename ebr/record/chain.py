"""The hash chain of a batch journal (see ebr/README.md for the exact definition)."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from ebr.record.clock import ONE_MICROSECOND, format_ts, next_stamp

GENESIS_HASH = "0" * 64
"""prev_hash of the first entry (seq 1) of every batch."""


def entry_hash(prev_hash: str, batch_id: str, seq: int, ts: str, kind: str, data: str) -> str:
    """Return the SHA-256 hex digest chaining one entry to its predecessor.

    `data` is the entry's RFC 8785 canonical JSON text, exactly as stored.
    """
    text = f"{prev_hash}\n{batch_id}\n{seq}\n{ts}\n{kind}\n{data}"
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


@dataclass(frozen=True, slots=True)
class Link:
    """One chained entry's place: what the next entry is chained to."""

    seq: int
    hash: str
    stamp: datetime
    """The entry's timestamp (``ts``); stamps of one chain strictly increase."""


@dataclass(frozen=True, slots=True)
class Step:
    """One entry stamped and hashed onto a chain: the stored columns and the new link."""

    seq: int
    ts: str
    prev_hash: str
    hash: str
    link: Link


def chain_step(batch_id: str, previous: Link | None, now: datetime, kind: str, text: str) -> Step:
    """Stamp and hash one entry after ``previous`` (``None``: the chain's first entry).

    The one chain step of the record, used by the batch journal and the site ledger
    alike: seq is one more than the previous, the stamp is ``max(now, previous + 1 µs)``
    (``next_stamp``), and the hash is ``entry_hash`` over exactly the stored text.
    """
    if previous is None:
        seq, prev_hash, stamp = 1, GENESIS_HASH, now
    else:
        seq, prev_hash, stamp = previous.seq + 1, previous.hash, next_stamp(now, previous.stamp)
    ts = format_ts(stamp)
    digest = entry_hash(prev_hash, batch_id, seq, ts, kind, text)
    return Step(seq, ts, prev_hash, digest, Link(seq, digest, stamp))


def clock_step_back(
    now: datetime, last_wall: datetime, last_stamp: datetime
) -> dict[str, Any] | None:
    """The payload of a ``clock.stepped_back`` entry when the wall clock went backwards.

    ``last_wall`` is the wall clock when the chain's last entry was written (a writer that
    only knows the stored chain passes the last stamp, which is never earlier). ``None``
    when the clock did not step back.
    """
    if now >= last_wall:
        return None
    return {
        "wall_clock": format_ts(now),
        "previous_wall_clock": format_ts(last_wall),
        "last_recorded": format_ts(last_stamp),
        "stepped_back_us": (last_wall - now) // ONE_MICROSECOND,
    }
