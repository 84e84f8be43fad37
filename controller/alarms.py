"""The alarms of a batch, folded from its journal: one mechanism for every reader.

One alarm is one `alarm.raised` entry, named by its seq. It is active until its value
returns to normal (`alarm.cleared` of its monitor) and stays open, active or cleared,
until a person acknowledges it (`alarm.acknowledged` with `{"alarm": seq}`), as
ISA-18.2 has it: a cleared alarm nobody saw still needs acknowledging.

`fold_alarm` keeps every alarm with when it cleared and who acknowledged it (the
batch view's alarm list); `follow_alarms` keeps only the open ones (the live engine
and crash recovery, so they agree by construction). Both read the same entries the
same way.
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
class AlarmRecord:
    """One alarm of the batch (one `alarm.raised` entry, named by its seq)."""

    seq: int
    monitor: str
    tag: str
    level: str
    value: float | None
    limit: float | None
    raised: str
    cleared: str | None = None
    acknowledged_by: str | None = None
    acknowledged: str | None = None

    @property
    def active(self) -> bool:
        """True until the value returned to normal."""
        return self.cleared is None

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready fields, with ``active``."""
        return {**asdict(self), "active": self.active}


#: an alarm not yet acknowledged (the same record, kept while it is open)
OpenAlarm = AlarmRecord


def fold_alarm(alarms: dict[int, AlarmRecord], entry: Entry) -> AlarmRecord | None:
    """Update `alarms` (by raised seq) with one journal entry of the batch; returns the
    alarm an `alarm.acknowledged` entry acknowledged (None otherwise)."""
    data = entry.data
    if entry.kind == RAISED:
        alarms[entry.seq] = AlarmRecord(
            entry.seq,
            str(data.get("monitor", "")),
            str(data.get("tag", "")),
            str(data.get("level", "")),
            _number(data.get("value")),
            _number(data.get("limit")),
            str(data.get("at") or entry.ts),
        )
    elif entry.kind == CLEARED:
        for alarm in alarms.values():
            if alarm.monitor == data.get("monitor") and alarm.active:
                alarm.cleared = str(data.get("at") or entry.ts)
    elif entry.kind == ACKNOWLEDGED and isinstance(data.get("alarm"), int):
        found = alarms.get(data["alarm"])
        if found is not None:
            found.acknowledged_by = str(data.get("user", ""))
            found.acknowledged = str(data.get("t") or entry.ts)
        return found
    return None


def follow_alarms(open_alarms: dict[int, AlarmRecord], entry: Entry) -> None:
    """Update `open_alarms` (by raised seq) with one journal entry of the batch: an
    acknowledged alarm leaves it."""
    if fold_alarm(open_alarms, entry) is not None:
        open_alarms.pop(entry.data["alarm"], None)


def _number(value: Any) -> float | None:
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None
