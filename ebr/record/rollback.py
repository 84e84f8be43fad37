"""Checking a store against signed heads kept outside it (witness files, `--trust` keys).

A store rolled back to an older copy is self-consistent: every chain intact, every head
signed. `check_witness` finds it: each witnessed (batch, seq, hash), signed by a key the
store trusts, must still be in the store. `check_trust` pins the store's anchor key to
keys given from outside, so a store whose keys were all replaced is found too.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from sqlalchemy import Connection, func, select

from ebr.record.anchors import SiteIndex, check_checkpoint, load_index
from ebr.record.checks import Problem
from ebr.record.model import SITE_CHAIN
from ebr.record.schema import journal
from ebr.record.store import Store
from ebr.record.witness import read_witness


def check_witness(store: Store, path: Path) -> dict[str, list[Problem]]:
    """Problems per batch id: witnessed heads the store no longer holds (rolled back)."""
    found: dict[str, list[Problem]] = {}
    with store.snapshot() as conn:
        index = load_index(conn)
        tips: dict[str, int] = {}
        for number, checkpoint in read_witness(path):
            where = f"witness {path}:{number}"
            batch_id = checkpoint.batch_id
            if batch_id not in tips:
                tips[batch_id] = _last_seq(conn, batch_id)
            bad = check_checkpoint(index, checkpoint, None, where)
            if bad is not None and checkpoint.key_id in index.keys:
                found.setdefault(batch_id, []).append(bad)  # a known key, a bad signature
                continue
            problem = _compare(conn, where, batch_id, checkpoint.seq, checkpoint.hash, tips)
            if problem is not None and bad is not None:  # a key this store never saw
                problem = Problem(
                    f"{problem.message}; its key {checkpoint.key_id} is unknown to this store "
                    "(added after the copy was made, or the line is forged)",
                    seq=problem.seq,
                )
            problem = problem or bad
            if problem is not None:
                found.setdefault(batch_id, []).append(problem)
    return {batch_id: problems[:1] for batch_id, problems in found.items()}


def _last_seq(conn: Connection, batch_id: str) -> int:
    top = conn.execute(select(func.max(journal.c.seq)).where(journal.c.batch_id == batch_id))
    return int(top.scalar() or 0)


def _compare(
    conn: Connection, where: str, batch_id: str, seq: int, digest: str, tips: dict[str, int]
) -> Problem | None:
    last = tips[batch_id]
    name = "the site chain" if batch_id == SITE_CHAIN else f"batch {batch_id}"
    if last == 0:
        return Problem(f"{where}: {name} signed at seq {seq} is not in the store (rolled back)")
    if seq > last:
        return Problem(
            f"{where}: {name} was signed at seq {seq} but the store ends at seq {last} "
            "(the store was rolled back to an older copy)",
            seq=last + 1,
        )
    stored = conn.execute(
        select(journal.c.hash).where(journal.c.batch_id == batch_id, journal.c.seq == seq)
    ).scalar()
    if stored != digest:
        return Problem(
            f"{where}: {name} entry seq {seq} differs from the witnessed signed head "
            "(the store was replaced or rewritten)",
            seq=seq,
        )
    return None


def check_trust(store: Store, public_keys: Iterable[str]) -> Problem | None:
    """Whether the store's anchor (first trusted key) is one of `public_keys`."""
    wanted = set(public_keys)
    with store.snapshot() as conn:
        index: SiteIndex = load_index(conn)
    anchor = index.anchor()
    if anchor is None:
        return Problem(
            "site chain: no signing key is recorded, but --trust was given (the records are "
            "unsigned, or the store's keys were removed)"
        )
    if anchor.public_key not in wanted:
        return Problem(
            f"site chain: anchored by key {anchor.key_id}, which is not a --trust key (the "
            "store's keys were replaced)"
        )
    return None
