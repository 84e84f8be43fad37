"""JSON and CSV exports, and offline verification of a JSON export."""

from __future__ import annotations

import copy
import csv
import io
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from ebr import Store, UnknownBatchError, export_csv, export_json, read_journal, verify_export

Populated = tuple[Store, Path, str, int]


@pytest.fixture
def doc(populated: Populated) -> dict[str, Any]:
    """A JSON export as another system would receive it (serialised and parsed back)."""
    store, _path, batch_id, _last = populated
    parsed: dict[str, Any] = json.loads(json.dumps(export_json(store, batch_id)))
    return parsed


def test_export_layout(doc: dict[str, Any], populated: Populated) -> None:
    store, *_ = populated
    assert doc["format"] == "cellbatch-ebr/1"
    assert doc["exported_at"].endswith("Z")
    assert doc["batch"]["batch_id"] == "B-001" and doc["batch"]["head_seq"] == 20
    assert doc["batch"]["coi"] == "COI-2026-000123"
    assert [e["seq"] for e in doc["journal"]] == list(range(1, 21))
    assert doc["journal"][1] == {**read_journal(store, "B-001")[1].to_dict()}
    assert [b["block_no"] for b in doc["sample_blocks"]] == [1, 2, 3]
    assert len(doc["samples"]) == 9 + 14 + 19
    assert doc["samples"][0] == {
        "tag": "TIC-101.PV",
        "time": "2026-03-01T08:00:00.000000Z",
        "value": 37,
        "unit": "degC",
        "quality": "good",
    }
    assert doc["verification"]["ok"] is True
    assert doc["verification"]["entries_checked"] == 20


def test_export_verifies_offline(doc: dict[str, Any]) -> None:
    result = verify_export(doc)
    assert result.ok, result.problems
    assert (result.entries_checked, result.blocks_checked) == (20, 3)


def _edited(doc: dict[str, Any], edit: Callable[[dict[str, Any]], None]) -> str:
    forged = copy.deepcopy(doc)
    edit(forged)
    result = verify_export(forged)
    assert not result.ok and result.first_problem is not None
    return result.first_problem.message


def test_edited_entry_data_is_detected(doc: dict[str, Any]) -> None:
    def edit(d: dict[str, Any]) -> None:
        d["journal"][6]["data"]["value"] = 38.5

    assert _edited(doc, edit) == (
        "journal entry seq 7 (write.result): hash mismatch — entry content was altered"
    )


def test_removed_entry_is_detected(doc: dict[str, Any]) -> None:
    assert _edited(doc, lambda d: d["journal"].pop(4)).startswith("seq 5: missing")


def test_truncated_export_is_detected(doc: dict[str, Any]) -> None:
    assert _edited(doc, lambda d: d["journal"].pop()).startswith(
        "head: journal ends at seq 19 but the batch head records seq 20"
    )


def test_edited_sample_block_is_detected(doc: dict[str, Any]) -> None:
    def edit(d: dict[str, Any]) -> None:
        d["sample_blocks"][1]["rows"][0][2] = 12.0

    assert _edited(doc, edit) == "sample block 2: digest mismatch — block data was altered"


def test_edited_flattened_samples_are_detected(doc: dict[str, Any]) -> None:
    def edit(d: dict[str, Any]) -> None:
        d["samples"][3]["value"] = 99.9

    assert _edited(doc, edit) == (
        "samples: item 4 differs from the sample blocks (the export was edited)"
    )


def test_edited_header_is_detected(doc: dict[str, Any]) -> None:
    def edit(d: dict[str, Any]) -> None:
        d["batch"]["product"] = "something else"

    assert _edited(doc, edit).startswith("batch record: product 'something else' differs")


def test_malformed_exports_are_reported_not_raised(doc: dict[str, Any]) -> None:
    def bad_seq(d: dict[str, Any]) -> None:
        d["journal"][2]["seq"] = "3"

    def bad_data(d: dict[str, Any]) -> None:
        d["journal"][2]["data"] = {"x": float("nan")}

    assert _edited(doc, bad_seq) == "journal entry 3: seq is not an integer"
    assert _edited(doc, bad_data).startswith("journal entry seq 3: data cannot be recorded")
    assert _edited(doc, lambda d: d.update(format="other/9")).startswith("export: format")
    assert verify_export({}).first_problem is not None


def test_verification_claim_in_export_is_not_trusted(doc: dict[str, Any]) -> None:
    def edit(d: dict[str, Any]) -> None:
        d["journal"][3]["kind"] = "x.y"
        d["verification"] = {"ok": True}

    assert "seq 4 (x.y): hash mismatch" in _edited(doc, edit)


def test_csv_export(populated: Populated) -> None:
    store, *_ = populated
    out = io.StringIO()
    assert export_csv(store, "B-001", out) == 42
    rows = list(csv.reader(io.StringIO(out.getvalue())))
    assert rows[0] == ["batch_id", "tag", "time", "value", "unit", "quality"]
    assert rows[1] == ["B-001", "TIC-101.PV", "2026-03-01T08:00:00.000000Z", "37", "degC", "good"]
    assert rows[2][3] == "37.1"
    assert len(rows) == 43


def test_unknown_batch_exports_raise(store: Store) -> None:
    with pytest.raises(UnknownBatchError):
        export_json(store, "B-404")
    with pytest.raises(UnknownBatchError):
        export_csv(store, "B-404", io.StringIO())


async def test_numbers_beyond_2_53_survive_export_and_offline_verification(
    store: Store, open_batch: Any
) -> None:
    from datetime import UTC, datetime

    from ebr import Journal

    async with Journal(store) as journal:
        await open_batch(journal)
        entry = await journal.append("B-001", "cell.count", {"total": 1e16, "small": 1e-9})
        await journal.append_samples(
            "B-001", [("CELLS", datetime(2026, 3, 1, tzinfo=UTC), 2.5e17, "cells", "good")]
        )
    assert entry.data == {"total": 1e16, "small": 1e-9}
    assert read_journal(store, "B-001")[1].data == entry.data
    doc = json.loads(json.dumps(export_json(store, "B-001")))
    assert doc["verification"]["ok"]
    assert verify_export(doc).ok
