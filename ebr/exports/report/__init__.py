"""Reading a batch record for human and machine reports (PDF, BatchML).

`analyse(store, batch_id)` reads one consistent snapshot and derives what both reports
show: process time, the procedure timeline, formula (master vs actual), monitors, alarms,
setpoint writes and the findings listed for review by exception. It only interprets the
journal; it never changes it.
"""

from ebr.exports.report.analysis import (
    Finding,
    MonitorSpec,
    ParameterRow,
    Record,
    TimelineRow,
    WriteRow,
    analyse,
    entry_summary,
)

__all__ = [
    "Finding",
    "MonitorSpec",
    "ParameterRow",
    "Record",
    "TimelineRow",
    "WriteRow",
    "analyse",
    "entry_summary",
]
