"""CSV export of the process-data samples of a batch."""

from __future__ import annotations

import csv
from typing import TextIO

from ebr.record.query import read_samples
from ebr.record.store import Store

CSV_COLUMNS = ("batch_id", "tag", "time", "value", "unit", "quality")


def export_csv(store: Store, batch_id: str, out: TextIO) -> int:
    """Write one row per sample of `batch_id` to `out` (with a header); return the row count.

    Times are the recorded UTC text; a missing value is an empty cell; numbers are
    written in their shortest exact form.
    """
    samples = read_samples(store, batch_id)
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(CSV_COLUMNS)
    for sample in samples:
        value = "" if sample.value is None else repr(sample.value)
        writer.writerow((batch_id, sample.tag, sample.time, value, sample.unit, sample.quality))
    return len(samples)
