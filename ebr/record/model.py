"""Record types of the electronic batch record."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from ebr.record.clock import parse_ts
from ebr.record.kinds import Kind

SampleRow = tuple[str, datetime, float | None, str, str]
"""One process-data sample to record: (tag, time, value, unit, quality)."""

BATCH_CREATED = Kind.BATCH_CREATED
BATCH_STATE = Kind.BATCH_STATE
SAMPLES_BLOCK = Kind.SAMPLES_BLOCK
CLOCK_STEPPED_BACK = Kind.CLOCK_STEPPED_BACK

SITE_CHAIN = "@site"
"""Batch id of the site audit chain (users, roles, logins, recipe approvals); not a batch."""
DEVIATION_CHAIN = "@deviations"
"""Batch id of the chain of deviations and their CAPA; not a batch."""
LOT_CHAIN = "@lots"
"""Batch id of the chain of lot hand-overs and lot decisions; not a batch."""
SYSTEM_CHAINS = frozenset({SITE_CHAIN, DEVIATION_CHAIN, LOT_CHAIN})
"""Chains in the store that are not batches (kept out of the batch list)."""

RESERVED_KINDS = frozenset({BATCH_CREATED, SAMPLES_BLOCK, CLOCK_STEPPED_BACK})
"""Kinds only the journal itself writes; `Journal.append` refuses them."""

HEADER_KEY = "header"
"""Key of the batch header inside the data of the `batch.created` entry."""


@dataclass(frozen=True, slots=True)
class Entry:
    """One journal entry exactly as recorded (ts is the recorded UTC text)."""

    batch_id: str
    seq: int
    ts: str
    kind: str
    data: dict[str, Any]
    prev_hash: str
    hash: str

    def to_dict(self) -> dict[str, Any]:
        """Return the entry as a JSON-ready dict (without batch_id), as exports carry it."""
        return {
            "seq": self.seq,
            "ts": self.ts,
            "kind": self.kind,
            "data": self.data,
            "prev_hash": self.prev_hash,
            "hash": self.hash,
        }


@dataclass(frozen=True, slots=True)
class BatchHeader:
    """Identity of a batch: stored in `batches` and journaled in its `batch.created` entry."""

    batch_id: str
    recipe_name: str
    recipe_version: str
    recipe_hash: str
    product: str
    coi: str
    simulation: bool

    def to_dict(self) -> dict[str, Any]:
        """Return the header as the dict journaled under `data["header"]` of `batch.created`."""
        return {
            "batch_id": self.batch_id,
            "recipe_name": self.recipe_name,
            "recipe_version": self.recipe_version,
            "recipe_hash": self.recipe_hash,
            "product": self.product,
            "coi": self.coi,
            "simulation": self.simulation,
        }


@dataclass(frozen=True, slots=True)
class BatchRecord:
    """One row of the `batches` table."""

    header: BatchHeader
    created_at: str
    head_seq: int
    head_hash: str

    @property
    def batch_id(self) -> str:
        """The batch id."""
        return self.header.batch_id

    def to_dict(self) -> dict[str, Any]:
        """Return the row as a JSON-ready dict."""
        return {
            **self.header.to_dict(),
            "created_at": self.created_at,
            "head_seq": self.head_seq,
            "head_hash": self.head_hash,
        }


@dataclass(frozen=True, slots=True)
class Sample:
    """One recorded process-data sample; `time` is the recorded UTC text."""

    tag: str
    time: str
    value: float | None
    unit: str
    quality: str

    @property
    def timestamp(self) -> datetime:
        """The sample time as an aware UTC datetime."""
        return parse_ts(self.time)

    def to_row(self) -> list[Any]:
        """Return the sample as the list stored in a sample block."""
        return [self.tag, self.time, self.value, self.unit, self.quality]

    def to_dict(self) -> dict[str, Any]:
        """Return the sample as a JSON-ready dict."""
        return {
            "tag": self.tag,
            "time": self.time,
            "value": self.value,
            "unit": self.unit,
            "quality": self.quality,
        }


@dataclass(frozen=True, slots=True)
class SampleBlock:
    """One stored block of samples with its recorded SHA-256 digest."""

    block_no: int
    sha256: str
    samples: tuple[Sample, ...]
