"""A batch record arranged for the review rules: entries by kind, process times, the
recipe's monitors and expected step durations, element state histories."""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import cached_property
from typing import Any

from ebr.record.clock import format_ts
from ebr.record.kinds import Kind
from ebr.record.model import BATCH_CREATED, BatchRecord, Entry
from ebr.review.model import Evidence, Finding

TIME_UNITS = {"s": 1.0, "min": 60.0, "h": 3600.0, "d": 86400.0}
"""Duration units of the recipe format, in seconds."""

_DURATION = re.compile(r"\s*([-+]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][-+]?\d+)?)\s*([A-Za-z]+)\s*")


def parse_time(text: Any) -> datetime | None:
    """An aware UTC datetime from recorded ISO 8601 text; None when absent or unreadable."""
    if not isinstance(text, str) or not text:
        return None
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        return None
    return moment.astimezone(UTC) if moment.tzinfo is not None else None


def seconds_between(start: str | None, end: str | None) -> float | None:
    """Seconds from `start` to `end` (recorded times); None if either is unreadable."""
    a, b = parse_time(start), parse_time(end)
    return None if a is None or b is None else (b - a).total_seconds()


def as_dict(value: Any) -> dict[str, Any]:
    """`value` if it is a JSON object, else an empty dict (records may hold odd data)."""
    return value if isinstance(value, dict) else {}


def number(value: Any) -> float | None:
    """`value` as a float if it is a JSON number (not a bool), else None."""
    if isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    return None


def fmt(value: Any) -> str:
    """A compact human rendering of a recorded value."""
    if value is None:
        return "—"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return f"{value:.4g}" if value != 0 and not 1e-3 <= abs(value) < 1e6 else f"{value:.6g}"
    if isinstance(value, str):
        return value
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


def fmt_s(seconds: float | None) -> str:
    """A duration for people: `45 s`, `12.5 min`, `3.2 h`, `1.5 d`."""
    if seconds is None:
        return "—"
    for unit, size in (("d", 86400.0), ("h", 3600.0), ("min", 60.0)):
        if abs(seconds) >= size:
            return f"{seconds / size:.3g} {unit}"
    return f"{seconds:.3g} s"


@dataclass(frozen=True, slots=True)
class MonitorLimits:
    """One recipe monitor: its sample tag and alert/action limits."""

    name: str
    tag: str
    unit: str
    alert_low: float | None
    alert_high: float | None
    action_low: float | None
    action_high: float | None


@dataclass(frozen=True, slots=True)
class StateChange:
    """One journaled state change of an element."""

    seq: int
    time: str
    to: str
    trigger: str


@dataclass
class BatchView:
    """Read-only indexes over one batch's journal (built in one pass)."""

    batch: BatchRecord
    entries: Sequence[Entry]
    by_kind: dict[str, list[Entry]] = field(default_factory=dict)
    by_seq: dict[int, Entry] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for entry in self.entries:
            self.by_kind.setdefault(entry.kind, []).append(entry)
            self.by_seq[entry.seq] = entry

    def kind(self, *kinds: str) -> list[Entry]:
        """Entries of the given kinds, in seq order."""
        if len(kinds) == 1:
            return self.by_kind.get(kinds[0], [])
        found = [e for k in dict.fromkeys(kinds) for e in self.by_kind.get(k, [])]
        return sorted(found, key=lambda e: e.seq)

    @staticmethod
    def time(entry: Entry) -> str:
        """The entry's process time (`data.t`), else its record time."""
        t = entry.data.get("t")
        return t if isinstance(t, str) and t else entry.ts

    def finding(
        self,
        entry: Entry,
        severity: str,
        title: str,
        detail: str,
        *,
        facts: Mapping[str, Any] | None = None,
        also: Sequence[int] = (),
        element: Any = None,
    ) -> Finding:
        """A rule's finding about one journal entry: anchored at it and at its process
        time, with `also` (further seqs) and `facts` as evidence, about `element` (a step
        path; empty for none)."""
        return Finding(
            anchor=entry.seq,
            severity=severity,
            title=title,
            detail=detail,
            evidence=Evidence((entry.seq, *also), facts={} if facts is None else facts),
            time=self.time(entry),
            element=str(element) if element else None,
        )

    @cached_property
    def created(self) -> dict[str, Any]:
        """The data of `batch.created`."""
        first = self.by_kind.get(BATCH_CREATED)
        return first[0].data if first else {}

    @cached_property
    def created_seq(self) -> int:
        """The seq of `batch.created` (1 in a sound record)."""
        first = self.by_kind.get(BATCH_CREATED)
        return first[0].seq if first else 1

    @cached_property
    def content(self) -> dict[str, Any]:
        """The recipe content journaled with the batch."""
        return as_dict(as_dict(self.created.get("recipe")).get("content"))

    @cached_property
    def parameters(self) -> dict[str, dict[str, Any]]:
        """The batch's formula values: name → {value, master, unit, changed}."""
        params = as_dict(self.created.get("parameters"))
        return {name: item for name, item in params.items() if isinstance(item, dict)}

    @cached_property
    def last_time(self) -> str | None:
        """The process time of the last entry."""
        return self.time(self.entries[-1]) if self.entries else None

    @cached_property
    def monitors(self) -> list[MonitorLimits]:
        """The recipe's CPP monitors with their recorded tag names (`unit.tag`)."""
        result = []
        specs = self.content.get("monitors")
        for spec in specs if isinstance(specs, list) else []:
            if not isinstance(spec, dict) or not isinstance(spec.get("tag"), str):
                continue
            alert, action = as_dict(spec.get("alert")), as_dict(spec.get("action"))
            unit = spec.get("unit")
            tag = f"{unit}.{spec['tag']}" if unit else spec["tag"]
            result.append(
                MonitorLimits(
                    name=str(spec.get("name", tag)),
                    tag=tag,
                    unit=str(spec.get("engineering_unit", "") or ""),
                    alert_low=number(alert.get("low")),
                    alert_high=number(alert.get("high")),
                    action_low=number(action.get("low")),
                    action_high=number(action.get("high")),
                )
            )
        return result

    @cached_property
    def monitor_since(self) -> dict[str, str]:
        """Monitor name → when it started watching (sample time format): from its
        `monitors.active` entry, else (a record without one) from the first start of its
        `active_from` operation or of the batch; monitors that never started are absent."""
        since: dict[str, str] = {}
        for entry in self.kind(Kind.MONITORS_ACTIVE):
            names = entry.data.get("monitors")
            moment = parse_time(entry.data.get("since")) or parse_time(self.time(entry))
            if not isinstance(names, list) or moment is None:
                continue
            for name in names:
                since.setdefault(str(name), format_ts(moment))
        specs = self.content.get("monitors")
        for spec in specs if isinstance(specs, list) else []:
            name = str(as_dict(spec).get("name", ""))
            if not name or name in since:
                continue
            start = self._first_running(as_dict(spec).get("active_from"))
            if start is not None:
                since[name] = format_ts(start)
        return since

    def _first_running(self, path: Any) -> datetime | None:
        """When the element `path` (the batch when None) first ran."""
        if path is None:
            changes = [e for e in self.kind(Kind.BATCH_STATE) if e.data.get("to") == "Running"]
            return parse_time(self.time(changes[0])) if changes else None
        first = next((c for c in self.states.get(str(path), []) if c.to == "Running"), None)
        return parse_time(first.time) if first is not None else None

    @cached_property
    def states(self) -> dict[str, list[StateChange]]:
        """Element path → its state changes in order (`element.state` entries)."""
        history: dict[str, list[StateChange]] = {}
        for entry in self.kind(Kind.ELEMENT_STATE):
            data = entry.data
            history.setdefault(str(data.get("element", "?")), []).append(
                StateChange(
                    entry.seq, self.time(entry), str(data.get("to")), str(data.get("trigger"))
                )
            )
        return history

    @cached_property
    def phases(self) -> dict[str, dict[str, Any]]:
        """Phase path (`unit_procedure/operation/phase`) → its recipe definition."""
        found: dict[str, dict[str, Any]] = {}
        _walk_procedure(as_dict(self.content.get("procedure")).get("unit_procedures"), found)
        return found

    def duration_s(self, value: Any) -> float | None:
        """A recipe duration in seconds: a number, `"<n> <unit>"` or `$param` (this
        batch's value of a time parameter); None when it cannot be read."""
        seconds = number(value)
        if seconds is not None:
            return seconds
        if not isinstance(value, str):
            return None
        text = value.strip()
        if text.startswith("$"):
            item = self.parameters.get(text[1:], {})
            amount = number(item.get("value"))
            scale = TIME_UNITS.get(str(item.get("unit", "")))
            return None if amount is None or scale is None else amount * scale
        match = _DURATION.fullmatch(text)
        if match is None or match.group(2) not in TIME_UNITS:
            return None
        return float(match.group(1)) * TIME_UNITS[match.group(2)]


def _walk_procedure(node: Any, found: dict[str, dict[str, Any]]) -> None:
    """Collect phases from a list of unit procedures, descending into parallel branches."""
    if isinstance(node, list):
        for item in node:
            _walk_procedure(item, found)
        return
    if not isinstance(node, dict):
        return
    parallel = node.get("parallel")
    if isinstance(parallel, dict):
        for branch in parallel.values():
            _walk_procedure(branch, found)
        return
    operations = node.get("operations")
    if not isinstance(operations, list):
        return
    for op in operations:
        phases = as_dict(op).get("phases")
        for phase in phases if isinstance(phases, list) else []:
            if isinstance(phase, dict) and "name" in phase:
                found[f"{node.get('name')}/{op.get('name')}/{phase['name']}"] = phase
