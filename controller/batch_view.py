"""What an operator (or a SCADA client) sees of one running batch, kept live.

A `BatchView` follows the batch's journal — read back from the store when it is
attached (so a controller restarted after a crash shows the same alarms, counters and
reasons as before) and then entry by entry as the engine records them — and the
batch's latest instrument values. From the journal it keeps:

- **state**: the batch's state and its active elements' states, as journaled — so the
  state shown and the entries that explain it (the reason, the alarm) always come from
  the same journal position: a batch is never shown Held before the entry that says why
  (the engine's in-memory state runs a little ahead of its journal);
- **why**: the current hold/stop reason — the monitor, tag, value and limit of the
  alarm that held the batch, the lost instrument, the failed phase, or the user and
  reason of the command; cleared when the batch restarts or resumes;
- **alarms**: every alarm of the batch (raised, cleared, acknowledged by whom), folded
  by `controller.alarms.fold_alarm` like the engine's open alarms;
- when the batch and each active element started (process time), for the batch day
  and the time in phase.

From the instruments it keeps every CPP's (monitor's) PV with quality and age, its
setpoint (the ``X.sp`` capability next to a monitored ``X.pv``, read on `refresh`), and
a short trend of recent values.
"""

from __future__ import annotations

import contextlib
from collections import deque
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from controller.alarms import ALARM_KINDS, AlarmRecord, fold_alarm
from controller.batch import ENGINE, BatchRun
from controller.isa88 import FINAL_STATES, State
from drivers import DriverError, Reading
from ebr import Entry
from ebr.record.kinds import Kind
from recipes import Monitor

#: trend points kept per CPP (one per `refresh`)
TREND_POINTS = 40
_INTERRUPTING = {"hold", "stop", "abort", "pause"}
_CONTINUING = {"restart", "resume"}
_ENDED = frozenset(str(s) for s in FINAL_STATES)

__all__ = ["TREND_POINTS", "AlarmRecord", "BatchView", "CppView"]


@dataclass(slots=True)
class CppView:
    """One critical process parameter of a bound unit: the monitor and its live values."""

    monitor: Monitor
    setpoint: str | None  # capability name of its setpoint, when the unit has one
    pv: Reading | None = None
    sp: float | None = None
    trend: deque[float] = field(default_factory=lambda: deque(maxlen=TREND_POINTS))


class BatchView:
    """A live, read-only picture of one batch for terminals and OPC UA clients."""

    def __init__(self, run: BatchRun, history: list[Entry]) -> None:
        """Follow `run`, starting from its journal so far (`history`, in seq order)."""
        self.run = run
        self.why = ""
        self._batch = run.control.batch_id
        #: the batch and its active elements as journaled: path → (level, state), in
        #: the order they started (the batch first)
        self.elements: dict[str, tuple[str, str]] = {self._batch: ("batch", str(State.IDLE))}
        self.alarms: dict[int, AlarmRecord] = {}
        self.started: datetime | None = None
        self.since: dict[str, datetime] = {}  # element path → process time it started
        self._seq = 0
        self.cpps: list[CppView] = []
        for m in run.recipe.monitors:
            device = run.control.units[m.unit]
            base, _dot, last = m.tag.rpartition(".")
            sp = f"{base}.sp" if last == "pv" and device.has(f"{base}.sp") else None
            self.cpps.append(CppView(m, sp))
        for entry in history:
            self.follow(entry)
        run.recorder.listeners.append(self.follow)

    # -- the journal --------------------------------------------------------------------

    def follow(self, entry: Entry) -> None:
        """Take one journal entry of the batch (entries already seen are ignored)."""
        if entry.seq <= self._seq:
            return
        self._seq = entry.seq
        data, kind = entry.data, entry.kind
        t = _when(data.get("t"))
        if kind == Kind.BATCH_CREATED and t is not None:
            self.started = t
        elif kind in (Kind.BATCH_STATE, Kind.ELEMENT_STATE):
            self._state(data, t)
        elif kind in ALARM_KINDS:
            fold_alarm(self.alarms, entry)
        elif kind == Kind.COMMAND_ACCEPTED:
            self._command(data)
        elif kind == Kind.BATCH_INTERRUPTED:
            before = f"{self.why}; then " if self.why else ""
            self.why = f"{before}controller interrupted: recovered Held, waiting for restart"
            # recovery brings the batch and every active element back Held
            for path, (level, state) in self.elements.items():
                self.elements[path] = (level, str(State.HELD) if state not in _ENDED else state)

    @property
    def state(self) -> str:
        """The batch's state as journaled (the state `why` explains)."""
        return self.elements[self._batch][1]

    def heading(self) -> dict[str, str]:
        """The batch's state and its reason, from the same journal position."""
        return {"state": self.state, "why": self.why}

    def _state(self, data: dict[str, Any], t: datetime | None) -> None:
        path, to = str(data.get("element")), str(data.get("to"))
        if to == State.RUNNING and t is not None and path != self._batch:
            self.since[path] = t
        if path == self._batch or to not in _ENDED:
            level = self.elements.get(path, (str(data.get("level", "")), ""))[0]
            self.elements[path] = (level, to)
        else:
            self.elements.pop(path, None)  # an element that ended leaves the active chain

    def _command(self, data: dict[str, Any]) -> None:
        command, user = str(data.get("command", "")), str(data.get("user", ""))
        if command in _CONTINUING and data.get("scope") != "element":
            self.why = ""
            return
        if command not in _INTERRUPTING:
            return
        reason = str(data.get("reason") or "")
        if user.startswith(f"{ENGINE}:monitor "):
            self.why = f"{command} by {self._monitor_reason(user.split(' ', 1)[1])}"
        elif user.startswith(f"{ENGINE}:"):
            self.why = f"{command} by {user.split(':', 1)[1]}: {reason or 'no reason given'}"
        elif user == ENGINE:
            self.why = f"{command} by the engine: {reason or 'no reason given'}"
        else:
            self.why = f"{command} by {user}: {reason or 'no reason given'}"

    def _monitor_reason(self, monitor: str) -> str:
        latest = max(
            (a for a in self.alarms.values() if a.monitor == monitor),
            key=lambda a: a.seq,
            default=None,
        )
        if latest is None:
            return f"monitor {monitor}"
        return (
            f"monitor {monitor}: {latest.tag} = {_fmt(latest.value)} beyond "
            f"{latest.level} limit {_fmt(latest.limit)}"
        )

    # -- the instruments ----------------------------------------------------------------

    async def refresh(self) -> None:
        """Take the latest PVs into the trends and read the setpoints from the units
        (one read per unit; an unreachable unit keeps the last setpoints)."""
        latest = self.run.sampler.latest
        wanted: dict[str, list[CppView]] = {}
        for cpp in self.cpps:
            m = cpp.monitor
            cpp.pv = latest.get(f"{m.unit}.{m.tag}")
            if cpp.pv is not None and isinstance(cpp.pv.value, int | float):
                cpp.trend.append(float(cpp.pv.value))
            if cpp.setpoint is not None:
                wanted.setdefault(m.unit, []).append(cpp)
        for alias, cpps in wanted.items():
            device = self.run.control.units[alias]
            with contextlib.suppress(DriverError, OSError, TimeoutError):
                readings = await device.read([c.setpoint for c in cpps if c.setpoint])
                for cpp, reading in zip(cpps, readings, strict=True):
                    value = reading.value
                    if isinstance(value, int | float) and not isinstance(value, bool):
                        cpp.sp = float(value)

    # -- what is shown -----------------------------------------------------------------

    def snapshot(self) -> dict[str, Any]:
        """The batch as terminals show it (JSON-ready)."""
        run = self.run
        now = run.clock.now()
        control = run.control
        header = control.recipe.header
        return {
            "recipe_name": header.name,
            "recipe_version": header.version,
            "state": self.state,
            "why": self.why,
            "process_time_s": None if self.started is None else _seconds(now, self.started),
            "elements": [
                self._element(path, level, state, now)
                for path, (level, state) in self.elements.items()
            ],
            "units": [
                {"alias": alias, "unit": device.name} for alias, device in control.units.items()
            ],
            "cpps": [self._cpp(cpp, now) for cpp in self.cpps],
            "alarm_list": [a.to_dict() for a in sorted(self.alarms.values(), key=_by_seq)],
            "prompt_forms": [
                {
                    "id": p.id,
                    "element": p.element,
                    "kind": p.kind,
                    "text": p.text,
                    "verify": p.verify,
                    # an identity check's example is the expected ID: never shown
                    "entries": [
                        _entry_spec(spec, example=p.expected is None) for spec in p.entries.values()
                    ],
                }
                for p in run.prompts.open.values()
                if p.batch_id == control.batch_id
            ],
        }

    def _element(self, path: str, level: str, state: str, now: datetime) -> dict[str, Any]:
        since = self.since.get(path)
        return {
            "path": path,
            "level": level,
            "state": state,
            "running_s": None if since is None else _seconds(now, since),
            "expected_s": self._expected(path) if level == "phase" else None,
        }

    def _expected(self, path: str) -> float | None:
        """The planned duration of a `hold_for` phase (its timeout for `wait_until`)."""
        recipe = self.run.recipe
        for phase_path, _up, _op, phase in recipe.procedure.walk():
            if phase_path != path:
                continue
            arg = phase.args.get("duration") or phase.args.get("timeout")
            with contextlib.suppress(KeyError, TypeError):
                return recipe.resolve(arg, self.run.control.parameters)
        return None

    @staticmethod
    def _cpp(cpp: CppView, now: datetime) -> dict[str, Any]:
        m, pv = cpp.monitor, cpp.pv
        at = None if pv is None else pv.source_time
        if at is not None and at.tzinfo is None:
            at = at.replace(tzinfo=UTC)
        value = None if pv is None else pv.value
        return {
            "name": m.name,
            "unit": m.unit,
            "tag": m.tag,
            "eu": m.engineering_unit,
            "pv": value if isinstance(value, int | float) else None,
            "sp": cpp.sp,
            "quality": "none" if pv is None else pv.quality.value,
            "age_s": None if at is None else _seconds(now, at),
            "alert": [m.alert_low, m.alert_high],
            "action": [m.action_low, m.action_high],
            "trend": list(cpp.trend),
        }


def _entry_spec(spec: Any, *, example: bool) -> dict[str, Any]:
    return {
        "name": spec.name,
        "type": spec.kind,
        "unit": spec.unit,
        "min": spec.min,
        "max": spec.max,
        "choices": list(spec.choices),
        "example": spec.example if example else None,
    }


def _by_seq(alarm: AlarmRecord) -> int:
    return alarm.seq


def _when(text: object) -> datetime | None:
    if not isinstance(text, str):
        return None
    try:
        when = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None
    return when if when.tzinfo else when.replace(tzinfo=UTC)


def _seconds(now: datetime, then: datetime) -> float:
    return round(max(0.0, (now - then).total_seconds()), 1)


def _fmt(value: float | None) -> str:
    return "?" if value is None else f"{value:g}"
