"""Samples of one batch as numpy columns, for figures over many batches.

:func:`read_sample_columns` reads the same stored blocks as
:func:`ebr.record.query.read_samples` but builds no :class:`~ebr.record.model.Sample` per
row: each block's JSON is parsed by the C reader, the rows are split into columns with
``zip`` and turned into arrays, and the record times (fixed-width ``…µsZ`` text, see
:func:`ebr.record.clock.format_ts`) are converted in one vectorised cast. Nothing is
cached: every call reads the record as it is now.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import numpy as np
from sqlalchemy import Connection, select

from ebr.record.canonical import parse_json
from ebr.record.clock import TS_LENGTH, parse_ts
from ebr.record.errors import StoreError
from ebr.record.gcpause import gc_paused
from ebr.record.schema import sample_blocks

_EMPTY = np.zeros(0)
_UNIX = datetime(1970, 1, 1, tzinfo=UTC)


@dataclass(frozen=True)
class SampleColumns:
    """Every sample of a batch in recorded order, as parallel arrays.

    ``tags`` holds an index into ``names``; ``micros`` is the sample time in µs since the
    Unix epoch; ``values`` is NaN where the recorded value is None; ``good`` is the
    quality ``good``.
    """

    names: tuple[str, ...]
    tags: np.ndarray
    micros: np.ndarray
    values: np.ndarray
    good: np.ndarray

    def __len__(self) -> int:
        return len(self.values)

    def usable(self) -> np.ndarray:
        """Mask of the samples with a value and good quality."""
        return self.good & ~np.isnan(self.values)

    def first_usable(self) -> datetime | None:
        """Time of the first usable sample (None without one)."""
        found = np.flatnonzero(self.usable())
        if not len(found):
            return None
        return _UNIX + timedelta(microseconds=int(self.micros[found[0]]))

    def series(self, suffix: str, epoch: datetime) -> tuple[np.ndarray, np.ndarray]:
        """Usable samples of every tag named `suffix` or ``<unit>.<suffix>``, in recorded
        order: (hours since `epoch`, values)."""
        codes = [i for i, name in enumerate(self.names) if short_tag(name) == suffix]
        if not codes:
            return _EMPTY, _EMPTY
        mask = _lookup(len(self.names), codes)[self.tags] & self.usable()
        start = (epoch - _UNIX) // timedelta(microseconds=1)
        return (self.micros[mask] - start) / 3.6e9, self.values[mask]


def short_tag(tag: str) -> str:
    """The tag without its first (unit) segment, as the trend figures name series."""
    return tag.split(".", 1)[1] if "." in tag else tag


def read_sample_columns(
    conn: Connection, batch_id: str, keep: Callable[[str], bool] | None = None
) -> SampleColumns:
    """Read the sample blocks of `batch_id` inside an open transaction as columns.

    With `keep`, only the tags it accepts. Raises StoreError for an unreadable block.
    """
    with gc_paused():
        return _read(conn, batch_id, keep)


def _read(conn: Connection, batch_id: str, keep: Callable[[str], bool] | None) -> SampleColumns:
    result = conn.execute(
        select(sample_blocks.c.block_no, sample_blocks.c.data)
        .where(sample_blocks.c.batch_id == batch_id)
        .order_by(sample_blocks.c.block_no, sample_blocks.c.id)
    )
    rows: list[list[object]] = []
    for block_no, data in result:
        try:
            block_rows = parse_json(data)["rows"]
            if not isinstance(block_rows, list):
                raise TypeError("rows is not a list")
        except (ValueError, KeyError, TypeError) as exc:
            raise StoreError(
                f"sample block {block_no} of batch {batch_id} is unreadable; run verify"
            ) from exc
        rows.extend(block_rows)
    if not rows:
        empty = np.zeros(0, dtype=np.int64)
        return SampleColumns((), empty, empty, _EMPTY, np.zeros(0, dtype=bool))
    try:
        tag_col, time_col, value_col, _, quality_col = zip(*rows, strict=True)
        values = np.array(value_col, dtype=float)  # None → NaN
    except (ValueError, TypeError) as exc:
        raise StoreError(f"the samples of batch {batch_id} are unreadable; run verify") from exc
    names, codes = _codes(tag_col)
    micros = _micros(time_col, batch_id)
    good = np.fromiter(map("good".__eq__, quality_col), dtype=bool, count=len(quality_col))
    columns = SampleColumns(names, codes, micros, values, good)
    if keep is None:
        return columns
    mask = _lookup(len(names), [i for i, name in enumerate(names) if keep(name)])[codes]
    return SampleColumns(columns.names, codes[mask], micros[mask], values[mask], good[mask])


def _lookup(size: int, codes: list[int]) -> np.ndarray:
    """A table of `size` booleans, true at `codes` (indexing it by tag codes is a mask)."""
    table = np.zeros(size, dtype=bool)
    table[codes] = True
    return table


def _codes(column: tuple[object, ...]) -> tuple[tuple[str, ...], np.ndarray]:
    """Distinct values of `column` in first-seen order, and each row's index into them
    (hashing in C: no Python frame per row)."""
    distinct = tuple(dict.fromkeys(column))
    index = {value: code for code, value in enumerate(distinct)}
    codes = np.fromiter(map(index.__getitem__, column), dtype=np.int64, count=len(column))
    return distinct, codes  # type: ignore[return-value]


def _micros(times: tuple[object, ...], batch_id: str) -> np.ndarray:
    """Record times → int64 µs since the Unix epoch, each distinct time converted once in a
    vectorised cast (checked as parse_ts checks a record time)."""
    distinct, codes = _codes(times)
    text = np.array(distinct)
    if text.dtype.kind == "U":
        fixed = (np.char.str_len(text) == TS_LENGTH) & np.char.endswith(text, "Z")
        if fixed.all():
            try:
                stamps = text.astype(f"U{TS_LENGTH - 1}").astype("datetime64[us]")
                return stamps.astype(np.int64)[codes]
            except ValueError:
                pass
    try:  # odd text somewhere: let the record reader say what is wrong
        parsed = [round((parse_ts(t) - _UNIX) / timedelta(microseconds=1)) for t in distinct]
    except (TypeError, ValueError) as exc:
        raise StoreError(f"a sample time of batch {batch_id} is unreadable; run verify") from exc
    return np.array(parsed, dtype=np.int64)[codes]
