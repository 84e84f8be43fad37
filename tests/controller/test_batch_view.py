"""The batch view shows a state and the entries explaining it from one journal position:
fed a monitor hold entry by entry, it never shows Holding or Held without the hold's
reason, whatever the engine's in-memory state says in between (no timing involved)."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from controller.batch_view import BatchView
from ebr import Entry
from ebr.record.kinds import Kind
from recipes import load_recipe

RECIPE = Path(__file__).parent / "recipes" / "short-culture.yaml"
BATCH = "B-1"


@dataclass
class _Listeners:
    listeners: list[Any] = field(default_factory=list)


@dataclass
class _Unit:
    name: str = "SV-01"

    def has(self, _capability: str) -> bool:
        return False


@dataclass
class _Clock:
    def now(self) -> datetime:
        return datetime(2026, 11, 22, 9, 0, tzinfo=UTC)


@dataclass
class _Prompts:
    open: dict[str, Any] = field(default_factory=dict)


class _Control:
    def __init__(self, recipe: Any) -> None:
        self.recipe = recipe
        self.batch_id = BATCH
        self.units = {"bioreactor": _Unit()}
        self.parameters: dict[str, float] = {}


class _Run:
    """What a view reads of a run; the engine's own (in-memory) state is not here, so a
    view that looked at it instead of the journal would fail."""

    def __init__(self) -> None:
        self.recipe = load_recipe(RECIPE)
        self.control = _Control(self.recipe)
        self.recorder = _Listeners()
        self.clock = _Clock()
        self.prompts = _Prompts()


def entry(seq: int, kind: Kind, **data: Any) -> Entry:
    t = f"2026-11-22T08:{seq:02d}:00.000000Z"
    return Entry(BATCH, seq, t, kind, {"t": t, **data}, "0" * 64, "1" * 64)


def state(seq: int, element: str, level: str, src: str, dst: str) -> Entry:
    kind = Kind.BATCH_STATE if element == BATCH else Kind.ELEMENT_STATE
    return entry(seq, kind, element=element, level=level, to=dst, trigger="x", **{"from": src})


PHASE = "culture/grow/hold"
HOLD_BY_MONITOR = [
    entry(1, Kind.BATCH_CREATED),
    state(2, BATCH, "batch", "Idle", "Running"),
    state(3, "culture", "unit_procedure", "Idle", "Running"),
    state(4, "culture/grow", "operation", "Idle", "Running"),
    state(5, PHASE, "phase", "Idle", "Running"),
    entry(
        6,
        Kind.ALARM_RAISED,
        monitor="temperature",
        tag="temperature.pv",
        level="action",
        value=35.5,
        limit=36.0,
        at="2026-11-22T08:06:00Z",
        action="hold",
    ),
    entry(
        7,
        Kind.COMMAND_ACCEPTED,
        element=BATCH,
        command="hold",
        state="Running",
        user="engine:monitor temperature",
        reason="monitor temperature: ...",
        scope="batch",
    ),
    state(8, BATCH, "batch", "Running", "Holding"),
    state(9, "culture", "unit_procedure", "Running", "Holding"),
    state(10, "culture/grow", "operation", "Running", "Holding"),
    state(11, PHASE, "phase", "Running", "Holding"),
    state(12, PHASE, "phase", "Holding", "Held"),
    state(13, "culture/grow", "operation", "Holding", "Held"),
    state(14, "culture", "unit_procedure", "Holding", "Held"),
    state(15, BATCH, "batch", "Holding", "Held"),
]
WHY = "hold by monitor temperature: temperature.pv = 35.5 beyond action limit 36"


def test_a_held_batch_is_never_shown_without_its_reason() -> None:
    run = _Run()
    view = BatchView(run, [])  # type: ignore[arg-type]
    assert run.recorder.listeners == [view.follow]
    shown = []
    for e in HOLD_BY_MONITOR:
        view.follow(e)
        snap = view.snapshot()
        assert snap["state"] == view.state == view.heading()["state"]
        shown.append((e.seq, snap["state"], snap["why"], len(snap["alarm_list"])))
        if snap["state"] in ("Holding", "Held"):
            assert snap["why"] == WHY and snap["alarm_list"][0]["seq"] == 6, shown
    assert shown[5] == (6, "Running", "", 1)  # the alarm, not yet the hold
    assert shown[6] == (7, "Running", WHY, 1)  # the reason comes first
    assert shown[-1] == (15, "Held", WHY, 1)
    elements = view.snapshot()["elements"]
    assert [(e["path"], e["state"]) for e in elements] == [
        (BATCH, "Held"),
        ("culture", "Held"),
        ("culture/grow", "Held"),
        (PHASE, "Held"),
    ]
    assert elements[-1]["level"] == "phase" and elements[-1]["running_s"] is not None


def test_history_and_live_entries_give_the_same_view() -> None:
    """A view attached late (history read from the store, then the live entries, some
    of them seen twice) equals one that followed from the start."""
    whole = BatchView(_Run(), HOLD_BY_MONITOR)  # type: ignore[arg-type]
    late = BatchView(_Run(), HOLD_BY_MONITOR[:9])  # type: ignore[arg-type]
    for e in HOLD_BY_MONITOR[7:]:
        late.follow(e)
    assert late.snapshot() == whole.snapshot()


def test_recovery_restart_completion_and_alarm_list() -> None:
    view = BatchView(_Run(), HOLD_BY_MONITOR)  # type: ignore[arg-type]
    view.follow(entry(16, Kind.BATCH_INTERRUPTED, last_entry_seq=15))
    assert view.heading() == {
        "state": "Held",
        "why": f"{WHY}; then controller interrupted: recovered Held, waiting for restart",
    }
    view.follow(entry(17, Kind.ALARM_CLEARED, monitor="temperature", level="normal"))
    view.follow(entry(18, Kind.ALARM_ACKNOWLEDGED, alarm=6, monitor="temperature", user="olga"))
    view.follow(
        entry(
            19,
            Kind.COMMAND_ACCEPTED,
            element=BATCH,
            command="restart",
            state="Held",
            user="olga",
            reason="fixed",
            scope="batch",
        )
    )
    assert view.heading() == {"state": "Held", "why": ""}  # not yet restarted in the record
    view.follow(state(20, BATCH, "batch", "Held", "Restarting"))
    view.follow(state(21, BATCH, "batch", "Restarting", "Running"))
    view.follow(state(22, PHASE, "phase", "Held", "Complete"))  # an ended phase leaves
    snap = view.snapshot()
    assert snap["state"] == "Running"
    assert [e["path"] for e in snap["elements"]] == [BATCH, "culture", "culture/grow"]
    (alarm,) = snap["alarm_list"]
    assert not alarm["active"] and alarm["cleared"] == "2026-11-22T08:17:00.000000Z"
    assert alarm["acknowledged_by"] == "olga"
