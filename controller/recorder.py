"""The engine's pen on the batch record: every entry carries the process time."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import logging
from collections.abc import AsyncIterator, Callable
from typing import Any

from controller.clock import Clock
from ebr import Entry, Journal
from ebr.record.kinds import Kind

_log = logging.getLogger(__name__)


def iso(dt: Any) -> str:
    """UTC ISO 8601 text with microseconds and ``Z``."""
    return str(dt.strftime("%Y-%m-%dT%H:%M:%S.%fZ"))


class BatchRecorder:
    """Appends one batch's journal entries, stamping each with process time ``t``.

    `record` returns once the entry is durably committed — except inside
    `unacknowledged()` (the controller's hold while the store cannot commit): there an
    entry counts as recorded once it is chained in the journal's memory, in order, so
    the holding logic can drive the instruments to their safe state with its intents
    ahead of its actions; those entries are committed, in that order, when the store
    commits again (`docs/engine.md`, *When the store cannot commit*).
    """

    def __init__(self, journal: Journal, batch_id: str, clock: Clock) -> None:
        self.journal = journal
        self.batch_id = batch_id
        self.clock = clock
        #: called with every entry once it is recorded (live views, tests)
        self.listeners: list[Callable[[Entry], None]] = []
        #: resolved while entries count as recorded once chained (see `unacknowledged`)
        self._released: asyncio.Future[None] | None = None
        self._unacknowledged_depth = 0

    def _stamp(self, data: dict[str, Any]) -> dict[str, Any]:
        return {"t": iso(self.clock.now()), **data}

    @contextlib.asynccontextmanager
    async def unacknowledged(self) -> AsyncIterator[None]:
        """While inside, `record` returns an entry once chained, not committed (and
        releases every `record` already waiting for its commit)."""
        if self._released is None:
            self._released = asyncio.get_running_loop().create_future()
        if not self._released.done():
            self._released.set_result(None)  # the records waiting for their commit go on
        self._unacknowledged_depth += 1
        try:
            yield
        finally:
            self._unacknowledged_depth -= 1
            if not self._unacknowledged_depth:
                self._released = None

    async def record(self, kind: Kind, **data: Any) -> Entry:
        """Append and wait until the entry is durably committed (see the class)."""
        entry, committed = await self.journal.append_chained(self.batch_id, kind, self._stamp(data))
        if self._released is None:
            self._released = asyncio.get_running_loop().create_future()
        released = self._released
        if not released.done():
            either: set[asyncio.Future[Any]] = {committed, released}
            await asyncio.wait(either, return_when=asyncio.FIRST_COMPLETED)
        if committed.done():
            entry = committed.result()  # raises when the commit failed
        else:
            committed.add_done_callback(functools.partial(self._acknowledged, entry))
        for listener in self.listeners:
            listener(entry)
        return entry

    def _acknowledged(self, entry: Entry, committed: asyncio.Future[Entry]) -> None:
        """An entry acted on before its commit: committed, or lost (said whole, so that a
        person can see what the instruments were told)."""
        if committed.cancelled() or committed.exception() is None:
            return
        _log.error(
            "batch %s: entry seq %d (%s %s) was acted on while the store could not commit "
            "and is not in the record: %s",
            self.batch_id,
            entry.seq,
            entry.kind,
            json.dumps(entry.data, sort_keys=True, default=str),
            committed.exception(),
        )
