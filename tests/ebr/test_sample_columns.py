"""The columnar sample reader gives exactly what the per-sample reader gives."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from typing import Any

import numpy as np
import pytest

from ebr import Journal, Store, read_samples
from ebr.record.clock import parse_ts
from ebr.record.errors import StoreError
from ebr.record.sample_columns import read_sample_columns
from tests.ebr.conftest import T0, OpenBatch


async def test_columns_match_the_samples(
    journal: Journal, store: Store, open_batch: OpenBatch
) -> None:
    await open_batch(journal, "B-001")
    rows = []
    for i in range(300):
        moment = T0 + timedelta(seconds=i, microseconds=i * 7)
        rows.append(("bioreactor.temperature.pv", moment, 37 + i / 100, "degC", "good"))
        rows.append(("bioreactor.ph.pv", moment, None if i % 50 == 0 else 7.0, "pH", "good"))
        rows.append(("wash.ph.pv", moment, 7.1 + i, "pH", "bad" if i % 3 else "good"))
    await journal.append_samples("B-001", rows[:400])
    await journal.append_samples("B-001", rows[400:])
    await journal.append_samples("B-001", [("bioreactor.temperature.pv", T0, 40, "degC", "good")])
    expected = read_samples(store, "B-001")

    with store.snapshot() as conn:
        columns = read_sample_columns(conn, "B-001")
    assert len(columns) == len(expected) == 901
    assert [columns.names[c] for c in columns.tags] == [s.tag for s in expected]
    assert columns.micros.tolist() == [
        (parse_ts(s.time) - T0) // timedelta(microseconds=1) + int(T0.timestamp() * 1e6)
        for s in expected
    ]
    assert np.array_equal(
        columns.values, [np.nan if s.value is None else s.value for s in expected], equal_nan=True
    )
    assert columns.good.tolist() == [s.quality == "good" for s in expected]
    assert columns.first_usable() == T0

    # a series is every usable sample of the tags with that name after the unit, in order
    hours, values = columns.series("ph.pv", T0)
    usable = [s for s in expected if s.tag.endswith("ph.pv") and s.value is not None
              and s.quality == "good"]  # fmt: skip
    assert values.tolist() == [s.value for s in usable]
    assert hours.tolist() == pytest.approx(
        [(parse_ts(s.time) - T0).total_seconds() / 3600 for s in usable]
    )

    with store.snapshot() as conn:
        only = read_sample_columns(conn, "B-001", lambda tag: tag.startswith("wash."))
    assert {only.names[c] for c in only.tags} == {"wash.ph.pv"} and len(only) == 300


async def test_an_unreadable_block_is_a_store_error(
    journal: Journal, store: Store, open_batch: OpenBatch, shell: Callable[..., Any]
) -> None:
    await open_batch(journal, "B-001")
    await journal.append_samples("B-001", [("TIC-101.PV", T0, 37.0, "degC", "good")])
    await journal.stop()
    shell("""UPDATE sample_blocks SET data = '{"rows": [["TIC-101.PV", 1, "x"]]}'""")
    with store.snapshot() as conn, pytest.raises(StoreError, match="run verify"):
        read_sample_columns(conn, "B-001")
