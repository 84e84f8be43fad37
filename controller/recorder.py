"""The engine's pen on the batch record: every entry carries the process time."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from controller.clock import Clock
from ebr import Entry, Journal
from ebr.record.kinds import Kind


def iso(dt: Any) -> str:
    """UTC ISO 8601 text with microseconds and ``Z``."""
    return str(dt.strftime("%Y-%m-%dT%H:%M:%S.%fZ"))


class BatchRecorder:
    """Appends one batch's journal entries, stamping each with process time ``t``."""

    def __init__(self, journal: Journal, batch_id: str, clock: Clock) -> None:
        self.journal = journal
        self.batch_id = batch_id
        self.clock = clock
        #: called with every entry once it is recorded (live views, tests)
        self.listeners: list[Callable[[Entry], None]] = []

    def _stamp(self, data: dict[str, Any]) -> dict[str, Any]:
        return {"t": iso(self.clock.now()), **data}

    async def record(self, kind: Kind, **data: Any) -> Entry:
        """Append and wait until the entry is durably committed."""
        entry = await self.journal.append(self.batch_id, kind, self._stamp(data))
        for listener in self.listeners:
            listener(entry)
        return entry
