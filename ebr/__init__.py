"""Electronic batch record (eBR): append-only, hash-chained journal and sample store.

21 CFR Part 11 oriented: nothing recorded can be altered, deleted or reordered without
`verify_batch` / `verify_export` detecting it. See ebr/README.md for the exact rules.
This package depends on nothing else in cellbatch.
"""

from ebr.exports.batchml import export_batchml
from ebr.exports.csv import export_csv
from ebr.exports.json import export_json
from ebr.exports.pdf import export_pdf
from ebr.exports.schema import ebr_json_schema
from ebr.record.chain import GENESIS_HASH, entry_hash
from ebr.record.checks import Problem, VerifyResult
from ebr.record.errors import (
    DuplicateBatchError,
    EbrError,
    JournalClosedError,
    JournalCommitError,
    JournalOverloadedError,
    JournalStateError,
    StoreError,
    UnknownBatchError,
)
from ebr.record.journal import Journal, JournalStats
from ebr.record.model import BatchHeader, BatchRecord, Entry, Sample, SampleBlock, SampleRow
from ebr.record.query import (
    BatchSummary,
    list_batches,
    read_batch,
    read_journal,
    read_sample_blocks,
    read_samples,
)
from ebr.record.store import Store
from ebr.record.verify import (
    StoreVerification,
    verify_all,
    verify_batch,
    verify_export,
    verify_store,
)

__all__ = [
    "GENESIS_HASH",
    "BatchHeader",
    "BatchRecord",
    "BatchSummary",
    "DuplicateBatchError",
    "EbrError",
    "Entry",
    "Journal",
    "JournalClosedError",
    "JournalCommitError",
    "JournalOverloadedError",
    "JournalStateError",
    "JournalStats",
    "Problem",
    "Sample",
    "SampleBlock",
    "SampleRow",
    "Store",
    "StoreError",
    "StoreVerification",
    "UnknownBatchError",
    "VerifyResult",
    "ebr_json_schema",
    "entry_hash",
    "export_batchml",
    "export_csv",
    "export_json",
    "export_pdf",
    "list_batches",
    "read_batch",
    "read_journal",
    "read_sample_blocks",
    "read_samples",
    "verify_all",
    "verify_batch",
    "verify_export",
    "verify_store",
]
