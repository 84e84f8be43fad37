"""Derive report content from a batch record (journal + sample blocks), read-only."""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any

from sqlalchemy import Connection

from ebr.record.checks import VerifyResult
from ebr.record.clock import format_ts, parse_ts, utc_now
from ebr.record.errors import EbrError
from ebr.record.kinds import Kind
from ebr.record.model import BATCH_CREATED, BATCH_STATE, BatchRecord, Entry, Sample, SampleBlock
from ebr.record.query import IDLE, batch_record, blocks_of, journal_entries
from ebr.record.store import Store
from ebr.record.verify import verify_connection
from ebr.review.bands import Band
from ebr.review.exceptions import load_rules, review_connection
from ebr.review.release import QaStatus, derive_status
from ebr.review.view import BatchView

ELEMENT_STATE = Kind.ELEMENT_STATE
WRITE_INTENT = Kind.WRITE_INTENT
WRITE_RESULT = Kind.WRITE_RESULT
ALARM_RAISED = Kind.ALARM_RAISED
ALARM_CLEARED = Kind.ALARM_CLEARED
ALARM_ACKNOWLEDGED = Kind.ALARM_ACKNOWLEDGED
HOLD_STATES = frozenset({"Holding", "Held"})
ABNORMAL_END = frozenset({"Stopping", "Stopped", "Aborting", "Aborted"})


@dataclass(frozen=True, slots=True)
class TimelineRow:
    """One procedural element: when it first ran, its last transition and final state."""

    level: str
    element: str
    start: datetime | None
    end: datetime | None
    state: str
    transitions: int


@dataclass(frozen=True, slots=True)
class ParameterRow:
    """One formula parameter: master recipe value vs the value the batch ran with."""

    name: str
    master: Any
    actual: Any
    unit: str
    changed: bool
    description: str


@dataclass(frozen=True, slots=True)
class MonitorSpec:
    """One monitored CPP from the recipe: the sample tag and its alert/action limits."""

    name: str
    tag: str
    unit: str
    alert_low: float | None
    alert_high: float | None
    action_low: float | None
    action_high: float | None
    on_action: str
    since: str | None = None
    """When the monitor started watching (sample time format); None: it never did."""

    @property
    def band(self) -> Band:
        """The limits as the shared band function judges them (ebr.review.bands)."""
        return Band(self.alert_low, self.alert_high, self.action_low, self.action_high)

    def excursion(self, value: float | None) -> bool:
        """Whether `value` lies outside the alert band (or the action band)."""
        return self.band.outside(value)


@dataclass(frozen=True, slots=True)
class WriteRow:
    """One setpoint write: intent (old → new) joined with its result."""

    seq: int
    time: datetime | None
    element: str
    unit: str
    capability: str
    old: Any
    new: Any
    eu: str
    ok: bool | None
    readback: Any
    error: str
    result_seq: int | None


@dataclass(frozen=True, slots=True)
class Finding:
    """One item for review by exception, pointing at the journal entry that shows it."""

    seq: int | None
    time: datetime | None
    category: str
    text: str


@dataclass
class Record:
    """Everything the reports show about one batch, read from one snapshot."""

    batch: BatchRecord
    entries: list[Entry]
    blocks: list[SampleBlock]
    verification: VerifyResult
    exported_at: str
    created: dict[str, Any] = field(default_factory=dict)
    epoch: datetime | None = None
    final_state: str = IDLE
    start: datetime | None = None
    end: datetime | None = None
    timeline: list[TimelineRow] = field(default_factory=list)
    parameters: list[ParameterRow] = field(default_factory=list)
    monitors: list[MonitorSpec] = field(default_factory=list)
    alarms: list[Entry] = field(default_factory=list)
    writes: list[WriteRow] = field(default_factory=list)
    findings: list[Finding] = field(default_factory=list)
    counts: dict[str, int] = field(default_factory=dict)
    qa: QaStatus | None = None
    qa_problem: str | None = None

    @property
    def simulation(self) -> bool:
        """Whether the batch ran in simulation (never GMP)."""
        return self.batch.header.simulation

    def process_time(self, entry: Entry) -> datetime | None:
        """The entry's process time (`data.t`), else its record time."""
        return parse_time(entry.data.get("t")) or parse_time(entry.ts)

    def day(self, moment: datetime | None) -> float | None:
        """Process days since the batch clock's epoch."""
        if moment is None or self.epoch is None:
            return None
        return (moment - self.epoch).total_seconds() / 86400.0

    def samples_by_tag(self) -> dict[str, list[Sample]]:
        """Every recorded sample grouped by tag, in recorded order."""
        grouped: dict[str, list[Sample]] = {}
        for block in self.blocks:
            for sample in block.samples:
                grouped.setdefault(sample.tag, []).append(sample)
        return grouped


def as_dict(value: Any) -> dict[str, Any]:
    """`value` if it is a JSON object, else an empty dict (reports tolerate odd data)."""
    return value if isinstance(value, dict) else {}


def parse_time(value: Any) -> datetime | None:
    """Parse an ISO 8601 time from the journal; None when absent or unreadable."""
    if not isinstance(value, str) or not value:
        return None
    try:
        return parse_ts(value)
    except ValueError:
        pass
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        return None
    return moment if moment.tzinfo is not None else None


def analyse(store: Store, batch_id: str) -> Record:
    """Read `batch_id` (batch row, journal, blocks, verification) and derive report content."""
    with store.snapshot() as conn:
        batch = batch_record(conn, batch_id)
        verification = verify_connection(conn, batch_id)
        entries = journal_entries(conn, batch_id)
        blocks = blocks_of(conn, batch_id)
        qa, qa_problem = _qa(conn, batch, entries)
    if qa is not None:
        qa.verification = verification  # a record failing verification shows INVALID
    record = Record(batch, entries, blocks, verification, format_ts(utc_now()))
    record.qa, record.qa_problem = qa, qa_problem
    created = next((e.data for e in entries if e.kind == BATCH_CREATED), {})
    record.created = created
    clock = created.get("clock")
    epoch = parse_time(clock.get("epoch")) if isinstance(clock, dict) else None
    record.epoch = epoch or parse_time(batch.created_at)
    record.parameters = _parameters(created)
    since = BatchView(batch, entries).monitor_since
    record.monitors = [replace(m, since=since.get(m.name)) for m in _monitors(created)]
    _walk(record)
    return record


def _qa(
    conn: Connection, batch: BatchRecord, entries: list[Entry]
) -> tuple[QaStatus | None, str | None]:
    """Review by exception, dispositions and signatures (None and why, if impossible)."""
    try:
        exceptions = review_connection(conn, batch, entries, load_rules())
    except EbrError as exc:
        return None, str(exc)
    return derive_status(batch, entries, exceptions), None


def _recipe_content(created: dict[str, Any]) -> dict[str, Any]:
    recipe = created.get("recipe")
    content = recipe.get("content") if isinstance(recipe, dict) else None
    return content if isinstance(content, dict) else {}


def _parameters(created: dict[str, Any]) -> list[ParameterRow]:
    formula = _recipe_content(created).get("formula")
    formula = formula if isinstance(formula, dict) else {}
    params = created.get("parameters")
    rows = []
    if isinstance(params, dict):
        for name, item in params.items():
            if not isinstance(item, dict):
                continue
            spec = formula.get(name)
            master = item.get("master", spec.get("value") if isinstance(spec, dict) else None)
            actual = item.get("value")
            changed = bool(item.get("changed", master != actual)) or master != actual
            description = str(spec.get("description", "")) if isinstance(spec, dict) else ""
            unit = str(item.get("unit", ""))
            rows.append(ParameterRow(name, master, actual, unit, changed, description))
    return rows


def _float(value: Any) -> float | None:
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


def _monitors(created: dict[str, Any]) -> list[MonitorSpec]:
    specs = _recipe_content(created).get("monitors")
    result = []
    for spec in specs if isinstance(specs, list) else []:
        if not isinstance(spec, dict) or not spec.get("tag"):
            continue
        alert = as_dict(spec.get("alert"))
        action = as_dict(spec.get("action"))
        unit = spec.get("unit")
        tag = f"{unit}.{spec['tag']}" if unit else str(spec["tag"])
        result.append(
            MonitorSpec(
                name=str(spec.get("name", tag)),
                tag=tag,
                unit=str(spec.get("engineering_unit", "")),
                alert_low=_float(alert.get("low")),
                alert_high=_float(alert.get("high")),
                action_low=_float(action.get("low")),
                action_high=_float(action.get("high")),
                on_action=str(spec.get("on_action", "")),
            )
        )
    return result


def _walk(record: Record) -> None:
    """One pass over the journal: timeline, writes, alarms, counts and findings."""
    counts: Counter[str] = Counter()
    elements: dict[str, dict[str, Any]] = {}
    intents: dict[int, Entry] = {}
    results: dict[int, Entry] = {}
    findings = record.findings
    times = []
    for entry in record.entries:
        data = entry.data
        when = record.process_time(entry)
        if entry.kind != BATCH_CREATED and when is not None:
            times.append(when)
        counts[entry.kind] += 1
        if entry.kind in (BATCH_STATE, ELEMENT_STATE):
            name = str(data.get("element", "?"))
            to = str(data.get("to", "?"))
            slot = elements.setdefault(
                name,
                {"level": str(data.get("level", "")), "start": None, "end": None, "n": 0},
            )
            slot["n"] += 1
            slot["state"] = to
            slot["end"] = when
            if to == "Running" and slot["start"] is None:
                slot["start"] = when
            if entry.kind == BATCH_STATE:
                record.final_state = to
                if to == "Running" and record.start is None:
                    record.start = when
                if to == "Holding":
                    counts["hold"] += 1
                    findings.append(Finding(entry.seq, when, "hold", f"batch hold: {_why(data)}"))
                if to in ABNORMAL_END:
                    findings.append(Finding(entry.seq, when, to.lower(), f"batch {to}"))
            elif to in ("Holding", "Aborting", "Stopping"):
                findings.append(Finding(entry.seq, when, to.lower(), f"{name} {to}"))
        elif entry.kind == WRITE_INTENT:
            intents[entry.seq] = entry
        elif entry.kind == WRITE_RESULT:
            intent = data.get("intent")
            if isinstance(intent, int):
                results[intent] = entry
            if data.get("ok") is False:
                findings.append(
                    Finding(
                        entry.seq,
                        when,
                        "failed write",
                        f"{data.get('element', '')}: {data.get('capability', '')} — "
                        f"{data.get('error', 'failed')}",
                    )
                )
        elif entry.kind in (ALARM_RAISED, ALARM_CLEARED, ALARM_ACKNOWLEDGED):
            record.alarms.append(entry)
            if entry.kind == ALARM_RAISED:
                findings.append(
                    Finding(
                        entry.seq,
                        when,
                        f"{data.get('level', '')} alarm",
                        f"{data.get('monitor', '')}: {data.get('tag', '')} = "
                        f"{fmt_value(data.get('value'))} beyond limit "
                        f"{fmt_value(data.get('limit'))} → {data.get('action', '')}",
                    )
                )
        elif entry.kind == Kind.COMMAND_REFUSED:
            findings.append(
                Finding(
                    entry.seq,
                    when,
                    "refused command",
                    f"{data.get('command', '')} by {data.get('user', '')}: "
                    f"{data.get('reason', '')}",
                )
            )
        elif entry.kind == Kind.PHASE_FAILED:
            findings.append(
                Finding(
                    entry.seq,
                    when,
                    "phase failed",
                    f"{data.get('element', '')}: {data.get('error', '')}",
                )
            )
        elif entry.kind == Kind.METHOD_RESULT and data.get("ok") is False:
            findings.append(
                Finding(
                    entry.seq,
                    when,
                    "failed method",
                    f"{data.get('element', '')}: {data.get('method', '')} — "
                    f"{data.get('error', 'failed')}",
                )
            )
        elif entry.kind == Kind.CONDITION_TIMEOUT:
            findings.append(
                Finding(
                    entry.seq,
                    when,
                    "condition timeout",
                    f"{data.get('element', '')}: {data.get('tag', '')} {data.get('op', '')} "
                    f"{fmt_value(data.get('limit'))} not reached (last "
                    f"{fmt_value(data.get('value'))})",
                )
            )
        elif entry.kind == Kind.CLOCK_STEPPED_BACK:
            findings.append(
                Finding(entry.seq, when, "clock", "wall clock stepped back (see audit trail)")
            )
    for row in record.parameters:
        if row.changed:
            findings.append(
                Finding(
                    1,
                    None,
                    "changed parameter",
                    f"{row.name}: master {fmt_value(row.master)} → "
                    f"{fmt_value(row.actual)} {row.unit}",
                )
            )
    if not record.verification.ok:
        problem = record.verification.first_problem
        findings.insert(
            0,
            Finding(problem.seq if problem else None, None, "record integrity", str(problem)),
        )
    record.end = max(times) if times else None
    record.timeline = [
        TimelineRow(
            slot["level"], name, slot["start"], slot["end"], slot.get("state", "?"), slot["n"]
        )
        for name, slot in elements.items()
    ]
    record.writes = [
        _write_row(record, intent, results.get(seq)) for seq, intent in intents.items()
    ]
    for write in record.writes:
        if write.result_seq is None:
            findings.append(
                Finding(
                    write.seq,
                    write.time,
                    "write without result",
                    f"{write.element}: {write.capability} = {fmt_value(write.new)} has no "
                    "recorded result",
                )
            )
    findings.sort(key=lambda f: (f.seq is not None, f.seq or 0))
    counts["state changes"] = counts[BATCH_STATE] + counts[ELEMENT_STATE]
    record.counts = dict(counts)


def _why(data: dict[str, Any]) -> str:
    return f"{data.get('from', '?')} → {data.get('to', '?')} (trigger {data.get('trigger', '?')})"


def _write_row(record: Record, intent: Entry, result: Entry | None) -> WriteRow:
    data = intent.data
    rdata = result.data if result is not None else {}
    ok = rdata.get("ok") if result is not None else None
    return WriteRow(
        seq=intent.seq,
        time=record.process_time(intent),
        element=str(data.get("element", "")),
        unit=str(data.get("unit", "")),
        capability=str(data.get("capability", "")),
        old=data.get("old"),
        new=data.get("new"),
        eu=str(data.get("eu", "") or ""),
        ok=ok if isinstance(ok, bool) else None,
        readback=rdata.get("readback"),
        error=str(rdata.get("error", "") or ""),
        result_seq=result.seq if result is not None else None,
    )


def fmt_value(value: Any) -> str:
    """A compact human rendering of a recorded value."""
    if value is None:
        return "—"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        if value != 0 and (abs(value) >= 1e6 or abs(value) < 1e-3):
            return f"{value:.4g}"
        return f"{value:.6g}"
    if isinstance(value, int):
        return f"{value:.4g}" if abs(value) >= 10_000_000 else str(value)
    if isinstance(value, str):
        return value
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


_SUMMARY_SKIP = frozenset({"t"})


def entry_summary(entry: Entry) -> str:
    """A compact one-line summary of an entry's data, most telling fields first."""
    data = entry.data
    if entry.kind == BATCH_CREATED:
        header = data.get("header", {})
        recipe = f"{header.get('recipe_name', '')}@{header.get('recipe_version', '')}"
        parts = [
            f"recipe {recipe}",
            f"product {header.get('product', '')}",
            f"coi {header.get('coi', '')}",
            f"simulation {fmt_value(header.get('simulation'))}",
        ]
        for key in ("user", "terminal"):
            if key in data:
                parts.append(f"{key} {fmt_value(data[key])}")
        if isinstance(data.get("parameters"), dict):
            parts.append(f"{len(data['parameters'])} parameters")
        return "; ".join(parts)
    if entry.kind in (BATCH_STATE, ELEMENT_STATE):
        return (
            f"{data.get('element', '')} {data.get('from', '?')} → {data.get('to', '?')}"
            f" ({data.get('trigger', '')})"
        )
    if entry.kind == WRITE_INTENT:
        return (
            f"{data.get('unit', '')} {data.get('capability', '')}: {fmt_value(data.get('old'))}"
            f" → {fmt_value(data.get('new'))} {data.get('eu', '') or ''} "
            f"[{data.get('element', '')}]"
        )
    if entry.kind == Kind.SAMPLES_BLOCK:
        return (
            f"block {data.get('block_no')}: {data.get('count')} samples, "
            f"{data.get('first', '')} … {data.get('last', '')}, sha256 "
            f"{str(data.get('sha256', ''))[:16]}"
        )
    return ", ".join(
        f"{key}={fmt_value(value)}" for key, value in data.items() if key not in _SUMMARY_SKIP
    )
