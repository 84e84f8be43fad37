"""Open alarms followed from journal entries (the live engine and crash recovery)."""

from __future__ import annotations

from typing import Any

from controller.alarms import OpenAlarm, follow_alarms
from ebr import Entry


def entry(seq: int, kind: str, **data: Any) -> Entry:
    return Entry("B", seq, f"2026-11-22T08:00:{seq:02d}.000000Z", kind, data, "0" * 64, "1" * 64)


def test_raised_alarms_stay_open_until_acknowledged_even_once_cleared() -> None:
    open_alarms: dict[int, OpenAlarm] = {}
    raised = {"tag": "BR.temp", "value": 38.2, "limit": 38.0, "at": "2026-11-22T08:00:00Z"}
    for e in (
        entry(3, "alarm.raised", monitor="temperature", level="alert", **raised),
        entry(4, "alarm.raised", monitor="ph", level="action", tag="BR.ph", value=6.5, limit=6.8),
        entry(5, "alarm.cleared", monitor="temperature", level="normal"),
        entry(6, "alarm.acknowledged", alarm=4, monitor="ph", user="op1"),
        entry(7, "alarm.acknowledged", alarm=99, monitor="ph", user="op1"),
        entry(8, "batch.state", element="B", to="Held"),
    ):
        follow_alarms(open_alarms, e)
    assert list(open_alarms) == [3]
    alarm = open_alarms[3]
    assert alarm.cleared and alarm.level == "alert" and alarm.value == 38.2
    assert alarm.to_dict()["raised"] == "2026-11-22T08:00:00Z"
