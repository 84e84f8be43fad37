"""Encoding of process-data samples into digest-protected sample blocks."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from ebr.record.canonical import canonical_json, sha256_hex
from ebr.record.clock import format_ts
from ebr.record.model import SampleRow


@dataclass(frozen=True, slots=True)
class EncodedBlock:
    """A sample block ready to store: canonical text, digest and journal summary."""

    data: str
    sha256: str
    count: int
    tags: tuple[str, ...]
    first: str
    last: str

    def summary(self, block_no: int) -> dict[str, Any]:
        """Return the data object of the `samples.block` journal entry for this block."""
        return {
            "block_no": block_no,
            "count": self.count,
            "tags": list(self.tags),
            "first": self.first,
            "last": self.last,
            "sha256": self.sha256,
        }


def _row(index: int, row: SampleRow) -> list[Any]:
    if not isinstance(row, tuple | list) or len(row) != 5:
        raise ValueError(f"sample {index}: expected (tag, time, value, unit, quality)")
    tag, time, value, unit, quality = row
    if not isinstance(tag, str) or not tag:
        raise ValueError(f"sample {index}: tag must be a non-empty str")
    if not isinstance(unit, str) or not isinstance(quality, str):
        raise ValueError(f"sample {index} ({tag}): unit and quality must be str")
    if value is not None:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ValueError(f"sample {index} ({tag}): value must be a number or None")
        value = float(value)
        if not math.isfinite(value):
            raise ValueError(
                f"sample {index} ({tag}): value {value} is not finite; record None with a "
                "quality that says why"
            )
    try:
        time_text = format_ts(time)
    except (AttributeError, TypeError, ValueError) as exc:
        raise ValueError(f"sample {index} ({tag}): bad time: {exc}") from exc
    return [tag, time_text, value, unit, quality]


def encode_block(rows: Sequence[SampleRow]) -> EncodedBlock:
    """Validate `rows`; encode them as canonical `{"rows": [[tag, time, value, unit, quality]]}`.

    Raises ValueError for an empty block or an invalid sample (nothing is recorded then).
    """
    if not rows:
        raise ValueError("a sample block needs at least one sample")
    encoded = [_row(i, row) for i, row in enumerate(rows)]
    data = canonical_json({"rows": encoded})
    times = [r[1] for r in encoded]
    return EncodedBlock(
        data=data,
        sha256=sha256_hex(data),
        count=len(encoded),
        tags=tuple(sorted({r[0] for r in encoded})),
        first=min(times),
        last=max(times),
    )
