"""The one band function: where a CPP value lies against a monitor's alert and action
limits. The controller's monitors (raising alarms, with hysteresis), review by exception
(excursions) and the PDF's trend charts (marked samples) all call it, so a chart marks
exactly what review reports and what raised an alarm. Values before a monitor became
active (`active_from`; review: `BatchView.monitor_since`) are not judged by any of them.
"""

from __future__ import annotations

from dataclasses import dataclass

NORMAL, ALERT, ACTION = "normal", "alert", "action"


@dataclass(frozen=True, slots=True)
class Band:
    """A monitor's limits; any of them may be absent."""

    alert_low: float | None = None
    alert_high: float | None = None
    action_low: float | None = None
    action_high: float | None = None

    def level(self, value: float, margin: float = 0.0) -> tuple[str, float | None]:
        """(`action` | `alert` | `normal`, the limit crossed). With `margin` the bands
        are narrowed by it on both sides (a monitor's hysteresis when easing)."""
        limit = _beyond(value, _add(self.action_low, margin), _add(self.action_high, -margin))
        if limit is not None:
            return ACTION, limit
        limit = _beyond(value, _add(self.alert_low, margin), _add(self.alert_high, -margin))
        if limit is not None:
            return ALERT, limit
        return NORMAL, None

    def breach(self, value: float) -> tuple[str, float, bool] | None:
        """(`high` | `low`, the first limit crossed on that side — the alert limit when
        there is one —, beyond the action limit) when `value` is outside the band."""
        level, _limit = self.level(value)
        if level == NORMAL:
            return None
        high = self.alert_high if self.alert_high is not None else self.action_high
        if high is not None and value > high:
            return "high", high, level == ACTION
        low = self.alert_low if self.alert_low is not None else self.action_low
        assert low is not None
        return "low", low, level == ACTION

    def outside(self, value: float | None) -> bool:
        """Whether `value` is an excursion (outside the alert or the action band)."""
        return value is not None and self.level(value)[0] != NORMAL


def _beyond(value: float, low: float | None, high: float | None) -> float | None:
    if low is not None and value < low:
        return low
    if high is not None and value > high:
        return high
    return None


def _add(limit: float | None, margin: float) -> float | None:
    return None if limit is None else limit + margin
