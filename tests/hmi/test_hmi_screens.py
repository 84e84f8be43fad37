"""The HMI's screens at 80×24 and 120×40 (SVG snapshots, pytest-textual-snapshot) and its
dialogs driven with Textual's Pilot.

The screens show answers a real controller gave (`screens.json`: `List` and `Show`
captured from `controller serve` with the bioreactor simulator — a running CAR-T
expansion, the same batch held by the operator, a prompt that needs a verifier, a batch
held by its temperature monitor with its alarm acknowledged while still active); the
polling is off (`refresh_s=None`) so that a screen is the same on every run. Sending to
a controller is covered by tests/e2e/test_hmi.py and the tmux test.

Update the snapshots after an intended change: `pytest tests/hmi --snapshot-update`.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from textual.pilot import Pilot
from textual.widgets import Input, Static

from cellbatch.hmi import KEY_HINTS, BatchHmi
from cellbatch.hmi_forms import CommandScreen, HelpScreen, PromptForm

SCREENS = json.loads((Path(__file__).parent / "screens.json").read_text())
SIZES = [(80, 24), (120, 40)]
UNREACHABLE = "no controller at opc.tcp://127.0.0.1:4840 ([Errno 111] Connect call failed)"


class Clock:
    """Wall seconds the test sets (the age of stale values)."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def hmi(clock: Clock | None = None) -> BatchHmi:
    """An HMI that shows what it is given (no polling)."""
    return BatchHmi("opc.tcp://127.0.0.1:4840", "olga", refresh_s=None, clock=clock or Clock())


def showing(name: str) -> Any:
    """A `run_before` that shows one captured controller answer."""

    async def show(pilot: Pilot[None]) -> None:
        screen = SCREENS[name]
        app = pilot.app
        assert isinstance(app, BatchHmi)
        app.show(screen["list"], screen["show"])
        await pilot.pause()

    return show


def text_of(app: BatchHmi, selector: str) -> str:
    return str(app.screen.query_one(selector, Static).render())


# -- snapshots ----------------------------------------------------------------------


@pytest.mark.parametrize("size", SIZES, ids=lambda s: f"{s[0]}x{s[1]}")
def test_running_batch_with_values(snap_compare: Any, size: tuple[int, int]) -> None:
    assert snap_compare(hmi(), terminal_size=size, run_before=showing("running"))


@pytest.mark.parametrize("size", SIZES, ids=lambda s: f"{s[0]}x{s[1]}")
def test_held_with_its_reason(snap_compare: Any, size: tuple[int, int]) -> None:
    assert snap_compare(hmi(), terminal_size=size, run_before=showing("held"))


@pytest.mark.parametrize("size", SIZES, ids=lambda s: f"{s[0]}x{s[1]}")
def test_alarm_list(snap_compare: Any, size: tuple[int, int]) -> None:
    async def alarms(pilot: Pilot[None]) -> None:
        await showing("alarms")(pilot)
        await pilot.press("2")
        await pilot.pause()

    assert snap_compare(hmi(), terminal_size=size, run_before=alarms)


@pytest.mark.parametrize("size", SIZES, ids=lambda s: f"{s[0]}x{s[1]}")
def test_prompt_form_with_verifier(snap_compare: Any, size: tuple[int, int]) -> None:
    async def form(pilot: Pilot[None]) -> None:
        await showing("prompt")(pilot)
        await pilot.press("n")
        await pilot.pause()

    assert snap_compare(hmi(), terminal_size=size, run_before=form)


@pytest.mark.parametrize("size", SIZES, ids=lambda s: f"{s[0]}x{s[1]}")
def test_stale_banner(snap_compare: Any, size: tuple[int, int]) -> None:
    clock = Clock()

    async def stale(pilot: Pilot[None]) -> None:
        await showing("running")(pilot)
        clock.now += 45
        app = pilot.app
        assert isinstance(app, BatchHmi)
        app.lost(UNREACHABLE)
        await pilot.pause()

    assert snap_compare(hmi(clock), terminal_size=size, run_before=stale)


def test_key_help_at_80x24(snap_compare: Any) -> None:
    async def keys(pilot: Pilot[None]) -> None:
        await showing("running")(pilot)
        await pilot.press("question_mark")
        await pilot.pause()

    assert snap_compare(hmi(), terminal_size=(80, 24), run_before=keys)


# -- behaviour (Pilot) ----------------------------------------------------------------


async def test_every_key_is_shown_at_80_columns() -> None:
    app = hmi()
    async with app.run_test(size=(80, 24)) as pilot:
        await showing("running")(pilot)
        keys = text_of(app, "#keys")
        for key in KEY_HINTS:
            assert key in keys.splitlines() or any(key in line for line in keys.splitlines())
        assert {"h hold", "q quit", "l sign in", "? keys"} <= set(KEY_HINTS)
        await pilot.press("question_mark")
        assert isinstance(app.screen, HelpScreen)
        await pilot.press("escape")
        assert not isinstance(app.screen, HelpScreen)


async def test_state_and_reason_are_words() -> None:
    app = hmi()
    async with app.run_test(size=(80, 24)) as pilot:
        await showing("held")(pilot)
        line = text_of(app, "#batchline")
        assert "HELD" in line
        assert "WHY: hold by olga: medium line kinked at the pump head" in line
        assert "before the next feed" in line  # whole, wrapped


async def test_hold_needs_a_reason_and_escape_sends_nothing() -> None:
    app = hmi()
    async with app.run_test(size=(80, 24)) as pilot:
        await showing("running")(pilot)
        await pilot.press("h")
        assert isinstance(app.screen, CommandScreen)
        await pilot.press("enter")
        assert "A reason is required to hold" in text_of(app, "#error")
        assert isinstance(app.screen, CommandScreen)  # still asking
        await pilot.press("escape")
        await pilot.pause()
        assert not isinstance(app.screen, CommandScreen)
        assert "hold cancelled: nothing sent" in text_of(app, "#message")


async def test_abort_asks_for_confirmation() -> None:
    app = hmi()
    async with app.run_test(size=(80, 24)) as pilot:
        await showing("running")(pilot)
        await pilot.press("a", *"bag leak", "enter")
        assert isinstance(app.screen, CommandScreen)
        assert "Press y to confirm" in text_of(app, "#error")
        await pilot.press("q", "h")  # other keys do nothing while the dialog is open
        await pilot.pause()
        assert isinstance(app.screen, CommandScreen) and app.is_running
        assert len(app.screen_stack) == 2
        await pilot.press("n")
        await pilot.pause()
        assert "abort cancelled: nothing sent" in text_of(app, "#message")


async def test_the_prompt_form_checks_before_sending() -> None:
    app = hmi()
    async with app.run_test(size=(80, 24)) as pilot:
        await showing("prompt")(pilot)
        await pilot.press("n")
        form = app.screen
        assert isinstance(form, PromptForm)
        hints = [str(w.render()) for w in form.query(".hint")]
        assert "viable_density: number, in cells/mL, 10000–1e+08, e.g. 2e+06" in hints
        assert any("second person" in h for h in hints)
        await pilot.press(*"5", "enter", *"93", "enter", "enter")
        error = text_of(app, "#error")
        assert "viable_density: 5 is below the minimum 10000" in error
        assert "verifier: a second person must verify" in error
        assert isinstance(app.screen, PromptForm)  # nothing sent, still open
        fields = {w.id: w for w in form.query(Input)}
        assert set(fields) == {"entry-viable_density", "entry-viability", "verifier"}
        await pilot.press("escape")
        await pilot.pause()
        assert "answer cancelled: nothing sent" in text_of(app, "#message")


async def test_an_acknowledged_alarm_stays_listed_while_active() -> None:
    app = hmi()
    async with app.run_test(size=(120, 40)) as pilot:
        await showing("alarms")(pilot)
        await pilot.press("2")
        alarms = text_of(app, "#alarmlist")
        assert "1 alarm(s): 1 active, 0 to acknowledge" in alarms
        assert "ACTIVE" in alarms and "acknowledged by olga" in alarms
        await pilot.press("k")
        assert "no alarm to acknowledge" in text_of(app, "#message")


async def test_stale_values_are_marked_and_cleared_on_reconnect() -> None:
    clock = Clock()
    app = hmi(clock)
    async with app.run_test(size=(80, 24)) as pilot:
        await showing("running")(pilot)
        clock.now += 95
        app.lost(UNREACHABLE)
        await pilot.pause()
        assert "CONTROLLER UNREACHABLE" in text_of(app, "#banner")
        assert "last update 95 s ago" in text_of(app, "#banner")
        assert "UNREACHABLE" in text_of(app, "#status")
        cpps = text_of(app, "#cpps")
        assert "STALE" in cpps and "GOOD" not in cpps and "+ 95 s" in cpps
        assert app.screen.query_one("#cpps").has_class("stale")
        await showing("running")(pilot)
        assert not app.screen.query_one("#banner").has_class("shown")
        assert "ONLINE" in text_of(app, "#status") and "STALE" not in text_of(app, "#cpps")


async def test_account_alerts_are_shown_in_a_banner() -> None:
    # The shape of the controller's `Alerts` answer (R12: repeated failed logins/signatures).
    alert = {"ts": "2026-12-03T10:15:00.000000Z", "username": "mallory", "failures": 3,
             "user_id": None, "window_s": 86400.0, "last_purpose": "sign in"}  # fmt: skip
    app = hmi()
    async with app.run_test(size=(80, 24)) as pilot:
        await showing("running")(pilot)
        assert not app.screen.query_one("#alerts").has_class("shown")
        screen = SCREENS["running"]
        app.show(screen["list"], screen["show"], [alert])
        await pilot.pause()
        assert app.screen.query_one("#alerts").has_class("shown")
        assert "ALERT 2026-12-03T10:15:00.000000Z  mallory: 3 failed login or signature" in (
            text_of(app, "#alerts")
        )
        app.show(screen["list"], screen["show"])  # a refresh without an answer keeps it
        await pilot.pause()
        assert "mallory" in text_of(app, "#alerts")
        app.show(screen["list"], screen["show"], [])
        await pilot.pause()
        assert not app.screen.query_one("#alerts").has_class("shown")


async def test_a_store_that_cannot_commit_is_shown_in_a_banner_until_it_commits() -> None:
    # The shape of the controller's `Info` answer during a storage outage and after it.
    failing = {"plant": "demo", "mode": "simulation", "simulation": True,
               "storage_problem": "the store cannot commit: database or disk is full",
               "storage_since": "2026-12-03T12:03:04.512000+00:00"}  # fmt: skip
    app = hmi()
    async with app.run_test(size=(80, 24)) as pilot:
        await showing("running")(pilot)
        assert not app.screen.query_one("#storage").has_class("shown")
        screen = SCREENS["running"]
        app.show(screen["list"], screen["show"], [], failing)
        await pilot.pause()
        assert app.screen.query_one("#storage").has_class("shown")
        banner = text_of(app, "#storage")
        assert "STORAGE: cannot commit since 12:03:04 UTC — database or disk is full" in banner
        assert "held" in banner
        app.show(screen["list"], screen["show"])  # a refresh without an answer keeps it
        await pilot.pause()
        assert app.screen.query_one("#storage").has_class("shown")
        app.show(screen["list"], screen["show"], [], {**failing, "storage_problem": None})
        await pilot.pause()
        assert not app.screen.query_one("#storage").has_class("shown")
