"""How a storage outage is said: one line for the console, the HMI and `batch list`."""

from __future__ import annotations

from datetime import datetime

#: how `ebr.record.journal.storage_outage` starts its reasons
_PREFIX = "the store cannot commit: "


def storage_line(problem: str, since: datetime | str | None) -> str:
    """``STORAGE: cannot commit since 12:03:04 UTC — disk full; …`` for a journal's
    `storage_problem` and `storage_problem_since` (a datetime or its ISO text)."""
    if isinstance(since, datetime):
        since = since.isoformat()
    when = f" since {since[11:19]} UTC" if since and len(since) >= 19 else ""
    why = problem.removeprefix(_PREFIX)
    return (
        f"STORAGE: cannot commit{when} — {why}; running batches held in their safe state, "
        "entries wait in memory until the store commits again"
    )
