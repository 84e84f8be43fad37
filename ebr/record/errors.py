"""Exceptions raised by the electronic batch record."""

from __future__ import annotations


class EbrError(Exception):
    """Base class of every error the eBR raises on purpose."""


class StoreError(EbrError):
    """The database cannot be opened, is not an eBR database, or is unreadable."""


class UnknownBatchError(EbrError, LookupError):
    """No batch with the given id exists (or it is not open in this journal)."""


class DuplicateBatchError(EbrError):
    """A batch with the given id already exists; batch ids are never reused."""


class JournalClosedError(EbrError):
    """The journal is not running (not started, or stopped)."""


class JournalOverloadedError(EbrError):
    """Too many entries are waiting to be committed; the entry was refused, not queued."""


class JournalCommitError(EbrError):
    """A group commit failed; none of the entries of the group were recorded."""


class JournalStateError(EbrError):
    """The stored journal does not match what the writer expects (e.g. a second writer)."""


class FencedError(JournalStateError):
    """Another process took over a unit lease of these batches: nothing of theirs commits."""

    def __init__(self, message: str, batch_ids: frozenset[str]) -> None:
        super().__init__(message)
        self.batch_ids = batch_ids
