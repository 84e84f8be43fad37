"""Unit leases: two processes never control one unit (issue 16; failover builds on it).

A process that binds units (`run`, `controller serve`) takes a lease on each in the
store, in ONE write transaction (SQLite: BEGIN IMMEDIATE; PostgreSQL: row locks), so two
processes racing for a unit serialise. A lease names its holder (`host:pid` and what it
runs), the batch, and a **fencing token** that only grows: the next holder of a unit gets
a larger one. The journal checks, in the same transaction as every commit, that the
tokens of its batch's units are still current (`fence` in `ebr.record.persist`), so a
process whose lease was taken over cannot write another line for that unit.

A lease ends when released, when it expires (the holder renews it every `ttl / 3`), or at
once when its holder is a process of this host that no longer runs (a crashed `run` is
recovered by the next process without waiting).
"""

from __future__ import annotations

import os
import socket
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import Connection, insert, select, update
from sqlalchemy.exc import IntegrityError

from ebr.record.clock import Clock, format_ts, utc_now
from ebr.record.errors import EbrError
from ebr.record.schema import unit_leases
from ebr.record.store import Store

DEFAULT_TTL_S = 30.0


class LeaseHeldError(EbrError):
    """A unit is leased by another live process (the message names it)."""


@dataclass(frozen=True, slots=True)
class Lease:
    """A unit held by this process: the token its commits are fenced with."""

    unit: str
    token: int
    batch_id: str


def this_process(what: str = "") -> str:
    """The holder name of this process: `host:pid` and what it runs."""
    name = f"{socket.gethostname()}:{os.getpid()}"
    return f"{name} {what}".strip()[:200]


def _alive(holder: str) -> bool:
    """False only when `holder` is a process of this host that no longer exists."""
    host, _, rest = holder.partition(":")
    pid_text = rest.split(" ", 1)[0]
    if host != socket.gethostname() or not pid_text.isdigit():
        return True
    pid = int(pid_text)
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def acquire(
    store: Store,
    units: Sequence[str],
    holder: str,
    batch_id: str,
    *,
    ttl_s: float = DEFAULT_TTL_S,
    clock: Clock = utc_now,
) -> list[Lease]:
    """Lease every unit of `units` to `holder` for `batch_id`, all or none.

    Raises LeaseHeldError naming the live holder of the first unit leased elsewhere.
    """
    now = clock()
    try:
        with store.transaction() as conn:
            return [_take(conn, store, unit, holder, batch_id, now, ttl_s) for unit in units]
    except IntegrityError as exc:  # PostgreSQL: another process inserted the row first
        raise LeaseHeldError(
            f"unit(s) {', '.join(units)} were just leased by another process"
        ) from exc


def _take(
    conn: Connection,
    store: Store,
    unit: str,
    holder: str,
    batch_id: str,
    now: datetime,
    ttl_s: float,
) -> Lease:
    query = select(unit_leases).where(unit_leases.c.unit == unit)
    if store.engine.dialect.name == "postgresql":
        query = query.with_for_update()
    row = conn.execute(query).first()
    stamp, expires = format_ts(now), format_ts(now + timedelta(seconds=ttl_s))
    values = {
        "holder": holder,
        "batch_id": batch_id,
        "acquired_at": stamp,
        "expires_at": expires,
    }
    if row is None:
        conn.execute(insert(unit_leases).values(unit=unit, token=1, **values))
        return Lease(unit, 1, batch_id)
    held = row.holder and row.expires_at > stamp and _alive(row.holder)
    if held and row.holder != holder:
        raise LeaseHeldError(
            f"unit {unit} is controlled by {row.holder} (batch {row.batch_id or '-'}, "
            f"lease since {row.acquired_at}, until {row.expires_at} unless renewed)"
        )
    if held and row.batch_id not in ("", batch_id):
        raise LeaseHeldError(f"unit {unit} is bound to batch {row.batch_id} in this process")
    token = int(row.token) + 1
    conn.execute(
        update(unit_leases).where(unit_leases.c.unit == unit).values(token=token, **values)
    )
    return Lease(unit, token, batch_id)


def renew(
    store: Store,
    leases: Sequence[Lease],
    holder: str,
    *,
    ttl_s: float = DEFAULT_TTL_S,
    clock: Clock = utc_now,
) -> list[Lease]:
    """Extend `leases`; return those that were lost (taken over: another token)."""
    expires = format_ts(clock() + timedelta(seconds=ttl_s))
    lost = []
    with store.transaction() as conn:
        for lease in leases:
            moved = conn.execute(
                update(unit_leases)
                .where(
                    unit_leases.c.unit == lease.unit,
                    unit_leases.c.token == lease.token,
                    unit_leases.c.holder == holder,
                )
                .values(expires_at=expires)
            )
            if moved.rowcount != 1:
                lost.append(lease)
    return lost


def release(store: Store, leases: Sequence[Lease], holder: str) -> None:
    """End `leases` (those still ours; a lease taken over stays with its new holder)."""
    if not leases:
        return
    with store.transaction() as conn:
        for lease in leases:
            conn.execute(
                update(unit_leases)
                .where(
                    unit_leases.c.unit == lease.unit,
                    unit_leases.c.token == lease.token,
                    unit_leases.c.holder == holder,
                )
                .values(holder="", batch_id="", expires_at="")
            )


def orphaned(store: Store) -> dict[str, str]:
    """batch id → holder of every lease whose holder died without releasing it: expired
    (a holder on another host, or a paused one), or held by a process of this host that
    no longer runs. A batch that ended, or whose holder stopped on purpose, released its
    leases and is not listed. What a standby controller takes over."""
    now = format_ts(utc_now())
    with store.snapshot() as conn:
        rows = conn.execute(select(unit_leases).where(unit_leases.c.holder != "")).all()
    live = {row.batch_id for row in rows if row.expires_at > now and _alive(row.holder)}
    return {row.batch_id: row.holder for row in rows if row.batch_id and row.batch_id not in live}


def holders(store: Store) -> dict[str, tuple[str, str, int]]:
    """unit → (holder, batch id, token) of every live lease."""
    now = format_ts(utc_now())
    with store.snapshot() as conn:
        rows = conn.execute(select(unit_leases)).all()
    return {
        row.unit: (row.holder, row.batch_id, int(row.token))
        for row in rows
        if row.holder and row.expires_at > now and _alive(row.holder)
    }
