"""The record itself: store, append-only journals (batch and site chains), the one
hash-chain step, canonical JSON, sample blocks, verification, backup and migrations.

Imports nothing above it (people, review, exports) and nothing outside ``ebr``.
"""

from ebr.record.chain import GENESIS_HASH, entry_hash
from ebr.record.checks import Problem, VerifyResult
from ebr.record.errors import EbrError, StoreError, UnknownBatchError
from ebr.record.journal import Journal, JournalStats
from ebr.record.model import BatchHeader, BatchRecord, Entry, Sample, SampleBlock, SampleRow
from ebr.record.store import Store
from ebr.record.verify import verify_batch, verify_export, verify_store

__all__ = [
    "GENESIS_HASH",
    "BatchHeader",
    "BatchRecord",
    "EbrError",
    "Entry",
    "Journal",
    "JournalStats",
    "Problem",
    "Sample",
    "SampleBlock",
    "SampleRow",
    "Store",
    "StoreError",
    "UnknownBatchError",
    "VerifyResult",
    "entry_hash",
    "verify_batch",
    "verify_export",
    "verify_store",
]
