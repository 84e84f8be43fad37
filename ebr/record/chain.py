"""The hash chain of a batch journal (see ebr/README.md for the exact definition)."""

from __future__ import annotations

import hashlib
from datetime import datetime
from typing import Any

from ebr.record.clock import ONE_MICROSECOND, format_ts

GENESIS_HASH = "0" * 64
"""prev_hash of the first entry (seq 1) of every batch."""


def entry_hash(prev_hash: str, batch_id: str, seq: int, ts: str, kind: str, data: str) -> str:
    """Return the SHA-256 hex digest chaining one entry to its predecessor.

    `data` is the entry's RFC 8785 canonical JSON text, exactly as stored.
    """
    text = f"{prev_hash}\n{batch_id}\n{seq}\n{ts}\n{kind}\n{data}"
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def step(
    batch_id: str,
    prev_seq: int,
    prev_hash: str,
    prev_stamp: datetime | None,
    now: datetime,
    now_text: str,
    kind: str,
    data: str,
) -> tuple[int, datetime, str, str]:
    """Chain one entry after (prev_seq, prev_hash, prev_stamp): return (seq, stamp, ts, hash).

    The one step every writer takes (the journal and the ledger): seq + 1, the stamp
    `max(now, previous + 1 µs)` so stamps strictly increase, and `entry_hash`.
    `now_text` is `format_ts(now)` (callers have it already).
    """
    if prev_stamp is None or now > prev_stamp:
        stamp, ts = now, now_text
    else:
        stamp = prev_stamp + ONE_MICROSECOND
        ts = format_ts(stamp)
    seq = prev_seq + 1
    return seq, stamp, ts, entry_hash(prev_hash, batch_id, seq, ts, kind, data)


def clock_step_back(
    now: datetime, last_wall: datetime, last_stamp: datetime
) -> dict[str, Any] | None:
    """The payload of a ``clock.stepped_back`` entry when the wall clock went backwards.

    One rule for every writer: ``last_wall`` is the wall clock when the chain's last entry
    was written (a writer that only knows the stored chain passes the last stamp, which is
    never earlier). ``None`` when the clock did not step back.
    """
    if now >= last_wall:
        return None
    return {
        "wall_clock": format_ts(now),
        "previous_wall_clock": format_ts(last_wall),
        "last_recorded": format_ts(last_stamp),
        "stepped_back_us": (last_wall - now) // ONE_MICROSECOND,
    }
