"""Alarms waiting for an operator's acknowledgement, followed from the batch's journal.

One alarm is one `alarm.raised` entry, named by its seq. It stays open, active or
returned to normal (`alarm.cleared`), until a person acknowledges it
(`alarm.acknowledged` with `{"alarm": seq}`), as ISA-18.2 has it: a cleared alarm
nobody saw still needs acknowledging. The live engine and crash recovery both feed
the journal's entries through `follow_alarms`, so they agree by construction.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from ebr import Entry
from ebr.record.kinds import Kind

RAISED = Kind.ALARM_RAISED
CLEARED = Kind.ALARM_CLEARED
ACKNOWLEDGED = Kind.ALARM_ACKNOWLEDGED
ALARM_KINDS = frozenset({RAISED, CLEARED, ACKNOWLEDGED})


@dataclass(slots=True)
class OpenAlarm:
    """An alarm not yet acknowledged."""

    seq: int
    monitor: str
    tag: str
    level: str
    value: float | None
    limit: float | None
    at: str
    cleared: bool = False

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready fields (for the controller's interface)."""
        return asdict(self)


def follow_alarms(open_alarms: dict[int, OpenAlarm], entry: Entry) -> None:
    """Update `open_alarms` (by raised seq) with one journal entry of the batch."""
    data = entry.data
    if entry.kind == RAISED:
        open_alarms[entry.seq] = OpenAlarm(
            entry.seq,
            str(data.get("monitor", "")),
            str(data.get("tag", "")),
            str(data.get("level", "")),
            _number(data.get("value")),
            _number(data.get("limit")),
            str(data.get("at") or entry.ts),
        )
    elif entry.kind == CLEARED:
        for alarm in open_alarms.values():
            if alarm.monitor == data.get("monitor"):
                alarm.cleared = True
    elif entry.kind == ACKNOWLEDGED and isinstance(data.get("alarm"), int):
        open_alarms.pop(data["alarm"], None)


def _number(value: Any) -> float | None:
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None
