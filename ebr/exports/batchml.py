"""Machine-readable BatchML (ISA-88 part 4, MESA B2MML V0701) copy of a batch record.

The document is one `BatchProductionRecord` in namespace `http://www.mesa.org/xml/B2MML`
that validates against `BatchML-BatchProductionRecord.xsd`:

- `ControlRecipes/ControlRecipeRecord` — recipe identity (name, version, content hash),
  product and the formula (actual value per parameter, master value in its description);
- `ChangeHistory/Change` — one per setpoint write (`write.intent`): the pre-change value,
  the new value and the result; `RecordReference` is the EntryID of the write's Event;
- `DataSets/DataSet` — one per recorded tag, every sample (not downsampled) in a
  `DelimitedDataBlock`: rows `time,value,quality` separated by `;` (value empty = none);
- `Events/Event` — one per journal entry, `EntryID` = seq, `TimeStamp` = ts, the entry
  hash in `ExternalReference`, and `UserAttribute`s `kind`, `prev_hash`, `process_time`
  and `data` (the stored RFC 8785 canonical JSON), so the hash chain can be re-verified
  from this document alone (rule in ebr/README.md).

There is no signature element in BatchML: each electronic signature (and each failed
attempt, disposition, release decision) is an `Event` of subtype `Security` whose
`PersonID` is the signer and whose `Description` names the printed name, meaning and what
was signed; `Comments/Comment` carries the operators' comments and QA's disposition
justifications, each with the `RecordReference` of the entry it comments on.
"""

from __future__ import annotations

import re
from typing import Any

from lxml import etree

from ebr.exports.report.analysis import Record, analyse, as_dict, entry_summary, fmt_value
from ebr.record.canonical import as_json_numbers, canonical_json
from ebr.record.kinds import Kind
from ebr.record.model import Entry
from ebr.record.store import Store

B2MML_NS = "http://www.mesa.org/xml/B2MML"
DATA_DELIMITER = ";"
FIELD_DELIMITER = ","
_NS = "{" + B2MML_NS + "}"
_INVALID_XML = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ufffe\uffff]")

# kind → (EventType, EventSubType)
_EVENT_TYPES: dict[str, tuple[str, str]] = {
    Kind.BATCH_CREATED: ("Control Recipe", "Status Change"),
    Kind.BATCH_STATE: ("Procedural Execution", "State Change"),
    Kind.ELEMENT_STATE: ("Procedural Execution", "State Change"),
    Kind.COMMAND_ACCEPTED: ("Procedural Execution", "State Command"),
    Kind.COMMAND_REFUSED: ("Procedural Execution", "State Command"),
    Kind.WRITE_INTENT: ("Procedural Execution", "Parameter Data"),
    Kind.WRITE_RESULT: ("Procedural Execution", "Parameter Data"),
    Kind.METHOD_INTENT: ("Equipment", "Process"),
    Kind.METHOD_RESULT: ("Equipment", "Process"),
    Kind.PHASE_PROGRESS: ("Procedural Execution", "Status Change"),
    Kind.PHASE_FAILED: ("Procedural Execution", "Status Change"),
    Kind.ALARM_RAISED: ("Alarm", "Process Data"),
    Kind.ALARM_CLEARED: ("Alarm", "Process Data"),
    Kind.ALARM_ACKNOWLEDGED: ("Alarm", "Status Change"),
    Kind.MONITORS_ACTIVE: ("Alarm", "Mode Change"),
    Kind.CONDITION_MET: ("Procedural Execution", "Process Data"),
    Kind.CONDITION_TIMEOUT: ("Procedural Execution", "Process Data"),
    Kind.SAMPLES_BLOCK: ("General", "Process Data"),
    Kind.CLOCK_STEPPED_BACK: ("General", "System"),
    Kind.PROMPT_OPENED: ("Operator", "Prompt"),
    Kind.PROMPT_ANSWERED: ("Operator", "Prompt Response"),
    Kind.SIGNATURE: ("Operator", "Security"),
    Kind.SIGNATURE_FAILED: ("Operator", "Security"),
    Kind.REVIEW_DISPOSITION: ("Operator", "Security"),
    Kind.BATCH_DECISION: ("Operator", "Security"),
    Kind.QC_RESULT: ("General", "Process Data"),
}


def _clean(text: Any) -> str:
    """Text without characters XML 1.0 cannot carry."""
    return _INVALID_XML.sub("\ufffd", str(text))


def _el(parent: Any, name: str, text: Any = None, **attrs: str) -> Any:
    node = etree.SubElement(parent, _NS + name, {k: _clean(v) for k, v in attrs.items()})
    if text is not None:
        node.text = _clean(text)
    return node


def _scalar(value: Any) -> tuple[str, str]:
    """(text, B2MML DataType) of a recorded JSON value."""
    if isinstance(value, bool):
        return ("true" if value else "false"), "boolean"
    if isinstance(value, int):
        return str(value), "integer"
    if isinstance(value, float):
        return repr(value), "double"
    if value is None:
        return "", "string"
    if isinstance(value, str):
        return value, "string"
    return canonical_json(as_json_numbers(value)), "string"


def _value(parent: Any, name: str, value: Any, unit: str = "") -> None:
    """A B2MML ValueType: ValueString, DataType, UnitOfMeasure."""
    node = _el(parent, name)
    text, dtype = _scalar(value)
    _el(node, "ValueString", text)
    _el(node, "DataType", dtype)
    if unit:
        _el(node, "UnitOfMeasure", unit)


def _attribute(parent: Any, attribute_id: str, value: Any, description: str = "") -> None:
    node = _el(parent, "UserAttribute")
    _el(node, "AttributeID", attribute_id)
    if description:
        _el(node, "Description", description)
    _value(node, "Value", value)


def export_batchml(store: Store, batch_id: str) -> bytes:
    """Return the BatchML BatchProductionRecord of `batch_id` as UTF-8 XML bytes."""
    return batchml_document(analyse(store, batch_id))


def batchml_document(record: Record) -> bytes:
    """Serialise an analysed record as BatchML."""
    header = record.batch.header
    root = etree.Element(_NS + "BatchProductionRecord", nsmap={None: B2MML_NS})
    _el(root, "ID", header.batch_id)
    _el(root, "EntryID", header.batch_id)
    _el(root, "ObjectType", "Batch Production Record")
    _el(root, "TimeStamp", record.exported_at)
    _el(root, "ExternalReference", record.batch.head_hash, schemeName="head hash (sha256)")
    verification = record.verification
    verdict = (
        f"intact — {verification.entries_checked} entries, {verification.blocks_checked} "
        "sample blocks verified"
        if verification.ok
        else f"TAMPERED — {verification.first_problem}"
    )
    for line in (
        f"Electronic batch record of {header.batch_id}, exported by cellbatch",
        f"product: {header.product}",
        f"chain of identity (COI): {header.coi}",
        f"recipe: {header.recipe_name} {header.recipe_version}, content hash {header.recipe_hash}",
        f"mode: {'SIMULATION — not for GMP use' if header.simulation else 'GMP'}",
        f"final state: {record.final_state}",
        f"head: seq {record.batch.head_seq}, hash {record.batch.head_hash}",
        f"record verification: {verdict}",
        _signature_line(record),
    ):
        _el(root, "Description", line)
    _el(root, "CreationDate", record.batch.created_at)
    _el(root, "BatchID", header.batch_id)
    _el(root, "LastChangedDate", record.entries[-1].ts if record.entries else record.exported_at)
    _el(root, "LotID", header.coi, schemeName="chain of identity")
    _el(root, "RecordStatus", record.final_state)
    _change_history(root, record)
    _comments(root, record)
    _control_recipe(root, record)
    _data_sets(root, record)
    _events(root, record)
    return etree.tostring(root, xml_declaration=True, encoding="UTF-8", pretty_print=True)


def _change_history(root: Any, record: Record) -> None:
    if not record.writes:
        return
    history = _el(root, "ChangeHistory")
    for n, write in enumerate(record.writes, 1):
        change = _el(history, "Change")
        _el(change, "EntryID", f"C{n}")
        _el(change, "ObjectType", "Change")
        intent = record.entries[write.seq - 1] if write.seq <= len(record.entries) else None
        if intent is not None and intent.seq == write.seq:
            _el(change, "TimeStamp", intent.ts)
        if write.ok is True:
            result = f"ok, readback {fmt_value(write.readback)}"
        elif write.ok is False:
            result = f"FAILED: {write.error}"
        else:
            result = "no result recorded"
        _el(
            change,
            "Description",
            f"{write.unit} {write.capability}: {fmt_value(write.old)} → {fmt_value(write.new)} "
            f"{write.eu} by {write.element}; result {result}"
            + (f" (seq {write.result_seq})" if write.result_seq else ""),
        )
        _el(change, "RecordReference", str(write.seq), schemeName="cellbatch journal seq")
        _value(change, "PrechangeData", write.old, write.eu)
        _el(change, "Reason", f"recipe phase {write.element}")


def _signature_line(record: Record) -> str:
    qa = record.qa
    if qa is None or not qa.signatures:
        return "electronic signatures: none recorded"
    invalid = sum(not s.valid for s in qa.signatures)
    return (
        f"electronic signatures: {len(qa.signatures)} ({invalid} invalid), as Security "
        f"events; disposition: {qa.disposition}"
    )


def _comments(root: Any, record: Record) -> None:
    """Operator comments and disposition justifications, each tied to its entry."""
    found: list[tuple[Entry, int, str, str | None]] = []
    for entry in record.entries:
        data = entry.data
        comment = data.get("comment")
        if not isinstance(comment, str) or not comment or entry.kind == Kind.SIGNATURE:
            continue
        who = data.get("user") or data.get("username")
        target = entry.seq
        if entry.kind == Kind.REVIEW_DISPOSITION and record.qa is not None:
            anchor = {i.exception.id: i.exception for i in record.qa.exceptions}.get(
                str(data.get("exception_id"))
            )
            if anchor is not None and anchor.evidence.seqs:
                target = anchor.evidence.seqs[0]
            signature = next(
                (s for s in record.qa.signatures
                 if s.data["signature_id"] == data.get("signature_id")),
                None,
            )  # fmt: skip
            who = signature.data["username"] if signature else who
            comment = f"disposition of {data.get('exception_id')}: {comment}"
        found.append((entry, target, comment, who if isinstance(who, str) else None))
    if not found:
        return
    comments = _el(root, "Comments")
    for entry, target, text, who in found:
        node = _el(comments, "Comment")
        _el(node, "EntryID", f"K{entry.seq}")
        _el(node, "ObjectType", "Comment")
        _el(node, "TimeStamp", entry.ts)
        _el(node, "RecordReference", str(target), schemeName="cellbatch journal seq")
        _el(node, "CommentText", text)
        if who:
            _el(node, "PersonID", who)


def _control_recipe(root: Any, record: Record) -> None:
    header = record.batch.header
    created = record.created
    recipe = as_dict(created.get("recipe"))
    records = _el(root, "ControlRecipes")
    item = _el(records, "ControlRecipeRecord")
    _el(item, "EntryID", "1", schemeName="cellbatch journal seq")
    _el(item, "ObjectType", "Control Recipe")
    _el(item, "TimeStamp", record.batch.created_at)
    control = _el(item, "ControlRecipe")
    _el(control, "ID", header.recipe_name)
    _el(control, "Version", header.recipe_version)
    _el(control, "Description", f"content hash (sha256): {header.recipe_hash}")
    if recipe.get("status"):
        _el(control, "Description", f"recipe status: {recipe['status']}")
    _el(control, "BatchID", header.batch_id)
    head = _el(control, "Header")
    _el(head, "ProductName", header.product)
    if record.parameters:
        formula = _el(control, "Formula")
        for row in record.parameters:
            param = _el(formula, "Parameter")
            _el(param, "ID", row.name)
            note = f"master {fmt_value(row.master)} {row.unit}".strip()
            note += "; CHANGED from master" if row.changed else "; as master"
            if row.description:
                note = f"{row.description} — {note}"
            _el(param, "Description", note)
            _el(param, "ParameterType", "ProcessParameter")
            value = _el(param, "Value")
            text, dtype = _scalar(row.actual)
            _el(value, "ValueString", text)
            _el(value, "DataInterpretation", "Constant")
            _el(value, "DataType", dtype)
            _el(value, "UnitOfMeasure", row.unit)


def _data_sets(root: Any, record: Record) -> None:
    by_tag = record.samples_by_tag()
    if not by_tag:
        return
    sets = _el(root, "DataSets")
    for n, (tag, samples) in enumerate(by_tag.items(), 1):
        node = _el(sets, "DataSet")
        _el(node, "EntryID", f"D{n}")
        _el(node, "ObjectType", "Data Set")
        _el(
            node,
            "Description",
            f"{tag}: all {len(samples)} recorded samples (not downsampled). DelimitedData "
            f"rows are 'time{FIELD_DELIMITER}value{FIELD_DELIMITER}quality' (process time, "
            f"UTC), separated by '{DATA_DELIMITER}'; an empty value means no value.",
        )
        _el(node, "StartTime", samples[0].time)
        _el(node, "EndTime", samples[-1].time)
        spec = _el(node, "TagSpecification")
        _el(spec, "TagIndex", "1")
        _el(spec, "DataType", "double")
        _el(spec, "UnitOfMeasure", samples[0].unit)
        _el(spec, "DataSource", tag)
        block = _el(node, "DelimitedDataBlock")
        _el(block, "TagDelimiter", FIELD_DELIMITER)
        _el(block, "OrderDelimiter", DATA_DELIMITER)
        _el(
            block,
            "DelimitedData",
            DATA_DELIMITER.join(
                f"{s.time},{'' if s.value is None else repr(s.value)},{s.quality}" for s in samples
            ),
        )


def _events(root: Any, record: Record) -> None:
    events = _el(root, "Events")
    terminal = record.created.get("terminal")
    for entry in record.entries:
        _event(events, record, entry, terminal)


def _event(events: Any, record: Record, entry: Entry, terminal: Any) -> None:
    data = entry.data
    event_type, sub_type = _EVENT_TYPES.get(entry.kind, ("Other", "Other"))
    user = data.get("user") or data.get("username")
    if entry.kind.startswith("command.") and isinstance(user, str):
        event_type = "Procedural Execution" if user.startswith("engine") else "Operator"
    node = _el(events, "Event")
    _el(node, "EntryID", str(entry.seq), schemeName="cellbatch journal seq")
    _el(node, "ObjectType", "Event")
    _el(node, "TimeStamp", entry.ts)
    _el(node, "ExternalReference", entry.hash, schemeName="entry hash (sha256)")
    _el(node, "Description", f"{entry.kind}: {entry_summary(entry)}")
    if event_type == "Other":
        _el(node, "EventType", "Other", OtherValue=entry.kind)
        _el(node, "EventSubType", "Other", OtherValue=entry.kind)
    else:
        _el(node, "EventType", event_type)
        _el(node, "EventSubType", sub_type)
    unit = data.get("unit")
    if isinstance(unit, str) and unit:
        _el(node, "EquipmentID", unit)
    new, old, eu = _values(entry)
    if new is not _MISSING:
        _value(node, "Value", new, eu)
    if old is not _MISSING:
        _value(node, "PreviousValue", old, eu)
    for key in ("error", "reason"):
        if data.get(key):
            _el(node, "MessageText", str(data[key]))
    if isinstance(user, str) and user:
        _el(node, "PersonID", user)
    if isinstance(terminal, str) and terminal and (entry.kind == Kind.BATCH_CREATED or user):
        _el(node, "ComputerID", terminal)
    element = data.get("element")
    if isinstance(element, str) and element:
        _el(node, "ProceduralElementReference", element)
    if entry.kind in (Kind.ALARM_RAISED, Kind.ALARM_CLEARED, Kind.ALARM_ACKNOWLEDGED):
        alarm = _el(node, "AlarmData")
        _el(alarm, "AlarmEvent", entry.kind.removeprefix("alarm."))
        _el(alarm, "AlarmType", f"{data.get('monitor', '')} {data.get('level', '')}".strip())
        if data.get("limit") is not None:
            _value(alarm, "AlarmLimit", data["limit"])
        if data.get("level"):
            _el(alarm, "Priority", str(data["level"]))
    intent = data.get("intent")
    if isinstance(intent, int) and not isinstance(intent, bool):
        _el(node, "AssociatedEventID", str(intent), schemeName="cellbatch journal seq")
    _attribute(node, "kind", entry.kind)
    _attribute(node, "prev_hash", entry.prev_hash)
    when = data.get("t")
    if isinstance(when, str):
        _attribute(node, "process_time", when, "batch process time (batch clock)")
    _attribute(
        node,
        "data",
        canonical_json(as_json_numbers(data)),
        "entry data as stored (RFC 8785 canonical JSON); hash = sha256(prev_hash\\n"
        "batch_id\\nseq\\nts\\nkind\\ndata)",
    )


_MISSING: Any = object()


def _values(entry: Entry) -> tuple[Any, Any, str]:
    """(value, previous value, unit) an Event carries for its kind."""
    data = entry.data
    kind = entry.kind
    if kind in (Kind.BATCH_STATE, Kind.ELEMENT_STATE):
        return data.get("to"), data.get("from"), ""
    if kind.startswith("command."):
        return data.get("command"), data.get("state", _MISSING), ""
    if kind == Kind.WRITE_INTENT:
        return data.get("new"), data.get("old"), str(data.get("eu", "") or "")
    if kind == Kind.WRITE_RESULT:
        return data.get("readback") if data.get("ok") else data.get("ok"), _MISSING, ""
    if kind in (Kind.ALARM_RAISED, Kind.ALARM_CLEARED, Kind.CONDITION_MET, Kind.CONDITION_TIMEOUT):
        return data.get("value"), _MISSING, ""
    return _MISSING, _MISSING, ""
