"""CPP monitors: alert and action limits with a delay, raising and clearing alarms.

A breach is judged on the clock: :meth:`MonitorState.update` takes each new value,
and :meth:`MonitorState.check` raises a breach once its delay has run out even when
no further value arrives (the batch schedules it at :attr:`MonitorState.deadline`).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

from drivers import Quality, Reading
from ebr.review.bands import Band
from recipes import Monitor

AlarmSink = Callable[["AlarmEvent"], Awaitable[None]]


@dataclass(frozen=True, slots=True)
class AlarmEvent:
    """An alarm raised or cleared by a monitor."""

    monitor: str
    tag: str
    level: str  # "alert" | "action" | "normal"
    raised: bool
    value: float | None
    limit: float | None
    action: str
    at: datetime


class MonitorState:
    """Tracks one monitor: the breach must persist ``delay_s`` of process time to raise."""

    def __init__(self, monitor: Monitor, tag: str) -> None:
        self.monitor = monitor
        self.tag = tag
        self.band = Band(
            monitor.alert_low, monitor.alert_high, monitor.action_low, monitor.action_high
        )
        self.level = "normal"
        self.active_since: datetime | None = None
        self._pending: tuple[str, datetime, float] | None = None
        self._last: tuple[float, float | None] = (0.0, None)

    def _classify(self, value: float, margin: float = 0.0) -> tuple[str, float | None]:
        """The level of ``value``; with ``margin`` the bands are narrowed (hysteresis).
        The band function is the one review and the PDF charts use (ebr.review.bands)."""
        return self.band.level(value, margin)

    @property
    def active(self) -> bool:
        """True once the monitor watches."""
        return self.active_since is not None

    def update(self, reading: Reading, at: datetime) -> AlarmEvent | None:
        """Feed one value; returns an event when the alarm level changes.

        Values stamped before the monitor became active are ignored (they may still
        arrive from the instrument's queue).
        """
        if self.active_since is None or at < self.active_since:
            return None
        if reading.quality is Quality.BAD or not isinstance(reading.value, int | float):
            return None
        value = float(reading.value)
        level, limit = self._classify(value)
        if level == self.level:
            self._pending = None
            return None
        if level == "normal" or _rank(level) < _rank(self.level):
            # Clearing (or easing) takes effect once the value is inside the band by the
            # hysteresis margin; raising waits for the delay.
            level, limit = self._classify(value, self.monitor.hysteresis)
            if _rank(level) >= _rank(self.level):
                return None
            self.level, self._pending = level, None
            return AlarmEvent(
                self.monitor.name, self.tag, level, False, value, limit, self.monitor.action, at
            )
        if self._pending is None or self._pending[0] != level:
            self._pending = (level, at, value)
        self._last = (value, limit)
        if (at - self._pending[1]).total_seconds() < self.monitor.delay_s:
            return None
        self.level, self._pending = level, None
        return AlarmEvent(
            self.monitor.name, self.tag, level, True, value, limit, self.monitor.action, at
        )

    @property
    def deadline(self) -> datetime | None:
        """When a pending breach has lasted the monitor's delay (None: nothing pending)."""
        if self._pending is None:
            return None
        return self._pending[1] + timedelta(seconds=self.monitor.delay_s)

    def check(self, now: datetime) -> AlarmEvent | None:
        """Raise a breach that has lasted the delay by ``now`` on the clock, even if no
        further value arrived (a steady out-of-limit value sends none). The event is
        stamped when the delay ran out, with the last value seen."""
        deadline = self.deadline
        if self._pending is None or deadline is None or now < deadline:
            return None
        level = self._pending[0]
        value, limit = self._last
        self.level, self._pending = level, None
        return AlarmEvent(
            self.monitor.name, self.tag, level, True, value, limit, self.monitor.action, deadline
        )


def _rank(level: str) -> int:
    return {"normal": 0, "alert": 1, "action": 2}[level]
