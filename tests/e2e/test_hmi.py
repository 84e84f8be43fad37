"""The operator's terminal HMI driven headless (textual's pilot) against a real
`controller serve`: it shows the batches, holds and restarts one (each with a reason),
answers its prompts in their forms — including a second-person verified count — and
acknowledges an alarm, which stays listed while it is active."""

from __future__ import annotations

import signal
import time
from pathlib import Path

import pytest
from textual.widgets import DataTable, Static

from cellbatch.hmi import BatchHmi
from cellbatch.hmi_forms import CommandScreen, PromptForm
from cellbatch.service_client import call
from ebr import Store, read_journal
from recipes import load_recipe
from tests.e2e.test_service import (  # noqa: F401 (fixtures below)
    PROMPTS,
    Serve,
    alarming_recipe,
    free_port,
)
from tests.e2e.test_service import setup as setup

pytestmark = pytest.mark.e2e


async def _until(check: object, pilot: object, limit_s: float = 20) -> None:
    deadline = time.monotonic() + limit_s
    while time.monotonic() < deadline:
        if check():  # type: ignore[operator]
            return
        await pilot.pause(0.2)  # type: ignore[attr-defined]
    raise AssertionError("the HMI did not show it in time")


async def test_hmi_commands_and_answers(setup: tuple[Path, Path, str]) -> None:
    plant, db, endpoint = setup
    serve = Serve(plant, db, endpoint)
    try:
        prompts = load_recipe(PROMPTS).content_hash  # Start names a library recipe
        started = await call(endpoint, "Start", prompts, "{}", "COI-HMI", "olga", "")
        batch_id = started["batch_id"]
        app = BatchHmi(endpoint, "olga")
        async with app.run_test(size=(140, 40)) as pilot:
            table = app.query_one("#batches", DataTable)

            async def state() -> str:
                return str((await call(endpoint, "Show", batch_id))["state"])

            def prompt_shown(element: str) -> bool:
                return element in str(app.query_one("#promptlist", Static).render())

            def message() -> str:
                return str(app.query_one("#message", Static).render())

            await _until(lambda: table.row_count == 1 and prompt_shown("confirm_bag"), pilot)
            await pilot.press("h")
            await pilot.press(*"check bag", "enter")
            await _until(lambda: "hold accepted" in message(), pilot)
            assert await state() == "Held"
            assert "WHY: hold by olga: check bag" in str(app.query_one("#batchline").render())
            await pilot.press("r")
            await pilot.press("enter")  # a restart needs a reason: nothing is sent
            assert isinstance(app.screen, CommandScreen)
            await pilot.press(*"bag ok", "enter")
            await _until(lambda: "restart accepted" in message(), pilot)
            await pilot.press("3")
            for element, fields in (
                ("confirm_bag", ["done"]),
                ("scan", ["COI-HMI"]),
                ("cell_count", ["2.5e6", "93", "vera"]),
            ):
                await _until(lambda e=element: prompt_shown(e), pilot)  # type: ignore[misc]
                await pilot.press("n")
                assert isinstance(app.screen, PromptForm)
                for value in fields:
                    await pilot.press(*value, "enter")
                await _until(lambda: "answered" in message(), pilot)
                app.say("")
            await _until(lambda: "COMPLETE" in str(app.query_one("#batchline").render()), pilot)
    finally:
        assert serve.end(signal.SIGTERM) == 0
    with Store.open(f"sqlite:///{db}") as store:
        entries = read_journal(store, batch_id)
    answered = [e.data for e in entries if e.kind == "prompt.answered"]
    assert [a["user"] for a in answered] == ["olga"] * 3 and answered[-1]["verifier"] == "vera"
    holds = [e.data for e in entries if e.kind == "command.accepted" and e.data["user"] == "olga"]
    assert [(h["command"], h["reason"]) for h in holds] == [
        ("hold", "check bag"),
        ("restart", "bag ok"),
    ]


async def test_hmi_acknowledges_an_alarm(setup: tuple[Path, Path, str], tmp_path: Path) -> None:
    plant, db, endpoint = setup
    recipe = load_recipe(alarming_recipe(tmp_path)).content_hash  # in the library below
    serve = Serve(plant, db, endpoint, "--simulated-operator", recipes=(tmp_path,))
    try:
        params = '{"culture_time": 2880}'
        started = await call(endpoint, "Start", recipe, params, "COI-ALM", "olga", "")
        batch_id = started["batch_id"]
        app = BatchHmi(endpoint, "olga")
        async with app.run_test(size=(140, 40)) as pilot:

            def alarms() -> str:
                return str(app.query_one("#alarmlist", Static).render())

            await pilot.press("2")
            await _until(lambda: "NOT ACKNOWLEDGED" in alarms() and "ph" in alarms(), pilot, 30)
            await pilot.press("k")
            await pilot.press(*"probe ok", "enter")
            await _until(lambda: "acknowledged" in str(app.query_one("#message").render()), pilot)
            # Still listed, now with who acknowledged it (active or cleared by then).
            await _until(lambda: "acknowledged by olga" in alarms(), pilot)
        await call(endpoint, "Command", batch_id, "stop", "olga", "", "end of test")
    finally:
        assert serve.end(signal.SIGTERM) == 0
    with Store.open(f"sqlite:///{db}") as store:
        acks = [e.data for e in read_journal(store, batch_id) if e.kind == "alarm.acknowledged"]
    assert acks and acks[0]["user"] == "olga" and acks[0]["comment"] == "probe ok"


async def test_hmi_shows_the_controllers_account_alerts(setup: tuple[Path, Path, str]) -> None:
    from ebr.people.users import AuthError, Directory

    plant, db, endpoint = setup
    serve = Serve(plant, db, endpoint)
    try:
        with Store.open(f"sqlite:///{db}") as store:  # three failed logins: an alert (R12)
            people = Directory(store)
            for _ in range(3):
                with pytest.raises(AuthError):
                    people.authenticate("mallory", "guess", "sign in at a terminal")
        app = BatchHmi(endpoint, "olga")
        async with app.run_test(size=(100, 30)) as pilot:

            def shown() -> bool:
                return "mallory: 3 failed attempts" in str(app.query_one("#alerts").render())

            await _until(shown, pilot)
            assert app.query_one("#alerts").has_class("shown")
    finally:
        assert serve.end(signal.SIGTERM) == 0
