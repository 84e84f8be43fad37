"""CPP monitors: delay before alarming, immediate escalation check, hysteresis on clearing."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from controller.monitors import MonitorState
from drivers import Quality, Reading
from recipes import Monitor

T0 = datetime(2026, 11, 22, tzinfo=UTC)
PH = Monitor("ph", "br", "ph.pv", "pH", 7.0, 7.4, 6.8, 7.6, 600.0, "hold", hysteresis=0.05)


def feed(state: MonitorState, values: list[float], step_s: float = 60.0) -> list[tuple[str, bool]]:
    events = []
    for i, value in enumerate(values):
        reading = Reading("ph.pv", value, "pH", None, Quality.GOOD)
        event = state.update(reading, T0 + timedelta(seconds=step_s * i))
        if event is not None:
            events.append((event.level, event.raised))
    return events


def active() -> MonitorState:
    state = MonitorState(PH, "br.ph.pv")
    state.active_since = T0
    return state


def test_a_breach_must_last_the_delay() -> None:
    # 10 minutes below 7.0: raised at the 11th sample; a short dip raises nothing
    assert feed(active(), [7.2, 6.95, 6.95, 7.2]) == []
    assert feed(active(), [6.95] * 12) == [("alert", True)]


def test_hysteresis_keeps_a_borderline_value_alarmed() -> None:
    state = active()
    assert feed(state, [6.95] * 12) == [("alert", True)]
    assert feed(state, [7.02, 7.04]) == [], "inside the band but not by the margin"
    assert feed(state, [7.06]) == [("normal", False)]


def test_bad_quality_and_values_before_activation_are_ignored() -> None:
    state = MonitorState(PH, "br.ph.pv")
    state.active_since = T0 + timedelta(hours=1)
    assert feed(state, [6.0] * 30) == []
    bad = Reading("ph.pv", 6.0, "pH", None, Quality.BAD)
    assert state.update(bad, T0 + timedelta(hours=2)) is None


def test_a_held_breach_raises_on_the_clock_without_another_value() -> None:
    state = active()
    assert feed(state, [7.2, 6.7]) == [], "one value beyond the action limit starts the delay"
    assert state.deadline == T0 + timedelta(seconds=60 + 600)
    assert state.check(T0 + timedelta(seconds=60 + 599)) is None
    event = state.check(T0 + timedelta(seconds=60 + 600))
    assert event is not None and (event.level, event.raised, event.value) == ("action", True, 6.7)
    assert event.at == T0 + timedelta(seconds=660), "stamped when the delay ran out"
    assert state.deadline is None and state.check(T0 + timedelta(hours=1)) is None


def test_a_breach_that_ended_before_its_delay_raises_nothing_on_the_clock() -> None:
    state = active()
    assert feed(state, [6.7, 7.2]) == []
    assert state.deadline is None
    assert state.check(T0 + timedelta(hours=1)) is None
