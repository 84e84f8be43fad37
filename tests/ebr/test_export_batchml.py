"""BatchML export: valid against the MESA B2MML V0701 schema, one Event per journal entry,
the hash chain re-verifiable from the XML alone, and the CLI."""

from __future__ import annotations

import hashlib
from functools import cache
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from lxml import etree

from cellbatch.ebr_cli import ebr
from ebr import GENESIS_HASH, Store, export_batchml, read_batch, read_journal, read_samples
from tests.ebr.records import GMP, SIM

NS = {"b": "http://www.mesa.org/xml/B2MML"}
XSD = (
    Path(__file__).resolve().parents[1]
    / "standards"
    / "b2mml-v0701"
    / "BatchML-BatchProductionRecord.xsd"
)
"""The official schemas, vendored (tests/standards/README.md)."""


@cache
def _schema() -> Any:
    return etree.XMLSchema(etree.parse(str(XSD)))


def _validate(xml: bytes) -> Any:
    if not XSD.exists():
        pytest.fail(f"B2MML V0701 schemas missing at {XSD.parent}")
    doc = etree.fromstring(xml)
    schema = _schema()
    assert schema.validate(doc), "\n".join(str(e) for e in list(schema.error_log)[:5])
    return doc


@pytest.fixture(scope="module")
def sim_xml(record_db: tuple[Store, Path]) -> bytes:
    return export_batchml(record_db[0], SIM)


def test_validates_against_b2mml_schema(sim_xml: bytes, record_db: tuple[Store, Path]) -> None:
    assert sim_xml.startswith(b"<?xml version='1.0' encoding='UTF-8'?>")
    doc = _validate(sim_xml)
    assert doc.tag == "{http://www.mesa.org/xml/B2MML}BatchProductionRecord"
    assert doc.findtext("b:ID", namespaces=NS) == SIM
    assert doc.findtext("b:ObjectType", namespaces=NS) == "Batch Production Record"
    _validate(export_batchml(record_db[0], GMP))


def test_one_event_per_journal_entry(sim_xml: bytes, record_db: tuple[Store, Path]) -> None:
    doc = _validate(sim_xml)
    entries = read_journal(record_db[0], SIM)
    events = doc.findall("b:Events/b:Event", NS)
    assert [e.findtext("b:EntryID", namespaces=NS) for e in events] == [
        str(entry.seq) for entry in entries
    ]
    assert [e.findtext("b:ExternalReference", namespaces=NS) for e in events] == [
        entry.hash for entry in entries
    ]
    by_kind = {
        e.findtext("b:UserAttribute[b:AttributeID='kind']/b:Value/b:ValueString", namespaces=NS): e
        for e in events
    }
    state = by_kind["batch.state"]
    assert state.findtext("b:EventType", namespaces=NS) == "Procedural Execution"
    assert state.findtext("b:EventSubType", namespaces=NS) == "State Change"
    alarm = by_kind["alarm.raised"]
    assert alarm.findtext("b:EventType", namespaces=NS) == "Alarm"
    assert alarm.findtext("b:AlarmData/b:AlarmLimit/b:ValueString", namespaces=NS) == "38"
    assert by_kind["command.refused"].findtext("b:EventType", namespaces=NS) == "Operator"
    ack = by_kind["alarm.acknowledged"]
    assert ack.findtext("b:AlarmData/b:AlarmEvent", namespaces=NS) == "acknowledged"
    assert ack.findtext("b:PersonID", namespaces=NS) == "op1"


def test_hash_chain_reverifies_from_batchml(sim_xml: bytes, record_db: tuple[Store, Path]) -> None:
    """Everything the hash rule needs is in the XML: recompute every entry hash."""
    doc = _validate(sim_xml)
    batch_id = doc.findtext("b:ID", namespaces=NS)
    prev = GENESIS_HASH

    def attr(event: Any, name: str) -> str:
        path = f"b:UserAttribute[b:AttributeID='{name}']/b:Value/b:ValueString"
        return str(event.findtext(path, namespaces=NS))

    for event in doc.findall("b:Events/b:Event", NS):
        assert attr(event, "prev_hash") == prev
        fields = [
            prev,
            str(batch_id),
            str(event.findtext("b:EntryID", namespaces=NS)),
            str(event.findtext("b:TimeStamp", namespaces=NS)),
            attr(event, "kind"),
            attr(event, "data"),
        ]
        digest = hashlib.sha256("\n".join(fields).encode()).hexdigest()
        assert digest == event.findtext("b:ExternalReference", namespaces=NS)
        prev = digest
    assert prev == read_batch(record_db[0], SIM).head_hash


def test_changes_recipe_and_datasets(sim_xml: bytes, record_db: tuple[Store, Path]) -> None:
    doc = _validate(sim_xml)
    entries = read_journal(record_db[0], SIM)
    intents = [e for e in entries if e.kind == "write.intent"]
    changes = doc.findall("b:ChangeHistory/b:Change", NS)
    assert [c.findtext("b:RecordReference", namespaces=NS) for c in changes] == [
        str(e.seq) for e in intents
    ]
    assert any(
        "FAILED: BadTypeMismatch" in (c.findtext("b:Description", namespaces=NS) or "")
        for c in changes
    )
    recipe = doc.find("b:ControlRecipes/b:ControlRecipeRecord/b:ControlRecipe", NS)
    assert recipe is not None
    assert recipe.findtext("b:ID", namespaces=NS) == "cart-expansion"
    assert recipe.findtext("b:Version", namespaces=NS) == "3.1"
    feed = recipe.find("b:Formula/b:Parameter[b:ID='feed_volume']", NS)
    assert feed is not None and "CHANGED" in (feed.findtext("b:Description", namespaces=NS) or "")
    samples = read_samples(record_db[0], SIM)
    sets = doc.findall("b:DataSets/b:DataSet", NS)
    assert len(sets) == len({s.tag for s in samples})
    total = 0
    for data_set in sets:
        tag = data_set.findtext("b:TagSpecification/b:DataSource", namespaces=NS)
        rows = str(data_set.findtext("b:DelimitedDataBlock/b:DelimitedData", namespaces=NS))
        parsed = [row.split(",") for row in rows.split(";")]
        expected = [s for s in samples if s.tag == tag]
        assert len(parsed) == len(expected)
        assert [p[0] for p in parsed] == [s.time for s in expected]
        assert [None if p[1] == "" else float(p[1]) for p in parsed] == [s.value for s in expected]
        total += len(parsed)
    assert total == len(samples)


def test_cli_batchml_stdout_and_file(record_db: tuple[Store, Path], tmp_path: Path) -> None:
    _, path = record_db
    runner = CliRunner()
    result = runner.invoke(ebr, ["export", GMP, "--format", "batchml", "--db", str(path)])
    assert result.exit_code == 0, result.output
    _validate(result.stdout_bytes)
    out = tmp_path / "gmp.xml"
    result = runner.invoke(
        ebr, ["export", GMP, "--format", "BatchML", "--out", str(out), "--db", str(path)]
    )
    assert result.exit_code == 0, result.output
    doc = _validate(out.read_bytes())
    assert doc.findtext("b:ID", namespaces=NS) == GMP


def test_cli_batchml_of_tampered_batch_warns(
    populated: tuple[Store, Any, str, int], shell: Any
) -> None:
    _store, location, batch_id, _last = populated
    shell("UPDATE journal SET kind = 'x.y' WHERE batch_id = ? AND seq = 13", batch_id)
    result = CliRunner().invoke(
        ebr, ["export", batch_id, "--format", "batchml", "--db", str(location)]
    )
    assert result.exit_code == 0, result.output
    doc = _validate(result.stdout_bytes)
    descriptions = [d.text for d in doc.findall("b:Description", NS)]
    assert any("TAMPERED" in str(d) for d in descriptions)
    assert result.stderr.startswith(f"warning: {batch_id} failed verification")
