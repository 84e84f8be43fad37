"""Permissives and reasons (issue 12.4, R2, R7): a monitor's hold names the monitor, tag,
value and limit; hold/stop/abort/restart need a reason; restart is refused while an
action alarm is active or unacknowledged, unless a supervisor overrides (journaled)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from controller.isa88 import Command, State
from controller.plant import AssetStatus, Plant, UnitConfig
from controller.session import BatchSetupError, Controller
from controller.who import Who
from recipes import load_recipe
from simulators.bioreactor.opcua_server import BioreactorServer
from simulators.launch import start_simulators
from tests.controller.test_batch_run import (
    RECIPE,
    journal_of,
    make_controller,
    plant_for,
    wait_phase,
)

pytestmark = pytest.mark.asyncio(loop_scope="session")
ROOT = Path(__file__).resolve().parents[2]
__all__ = ["make_controller"]  # the fixture, imported for pytest


async def test_restart_into_an_active_alarm_is_refused_until_overridden(
    bioreactors: BioreactorServer, make_controller: Callable[..., Any]
) -> None:
    controller = await make_controller(plant_for(bioreactors, "SV-12"))
    run = await controller.create_batch(load_recipe(RECIPE))
    batch_id = run.control.batch_id
    task = asyncio.create_task(controller.run(run))
    await wait_phase(run, "culture/grow/culture")
    assert not await run.command(Command.HOLD, user="op1", reason="  ")
    assert run.last_refusal is not None and "REASON-REQUIRED" in run.last_refusal
    assert run.state is State.RUNNING
    vessel = bioreactors.vessel("SV-12")
    vessel.force("Temperature.PV", 39.0)
    try:
        await wait_phase(run, batch_id, State.HELD)
        entries = journal_of(controller, batch_id)
        (hold,) = [
            e.data for e in entries if e.kind == "command.accepted" and e.data["command"] == "hold"
        ]
        assert hold["user"] == "engine:monitor temperature"
        assert "temperature" in hold["reason"] and "39" in hold["reason"]
        assert "action limit 38" in hold["reason"]
        assert not await run.command(Command.RESTART, user="op1")
        assert "REASON-REQUIRED" in str(run.last_refusal)
        assert not await run.command(Command.RESTART, user="op1", reason="looks fine")
        assert "PERMISSIVE-ALARM" in str(run.last_refusal)
        for seq in list(run.open_alarms):
            assert await run.acknowledge(seq, user="op1", comment="seen")
        # Acknowledged, but the temperature is still beyond the action limit.
        assert not await run.command(Command.RESTART, user="op1", reason="acknowledged")
        assert "monitor temperature at action level" in str(run.last_refusal)
        assert run.state is State.HELD
        assert await run.command(
            Command.RESTART, user="sup1", reason="probe fault, DEV-12", override=True
        )
        assert run.state is State.RUNNING
    finally:
        vessel.force("Temperature.PV", None)
    assert await run.command(Command.ABORT, user="sup1", reason="end of test")
    assert await asyncio.wait_for(task, 10) is State.ABORTED
    entries = journal_of(controller, batch_id)
    refused = [e.data for e in entries if e.kind == "command.refused"]
    assert [r["rule"] for r in refused] == [
        "REASON-REQUIRED",
        "REASON-REQUIRED",
        "PERMISSIVE-ALARM",
        "PERMISSIVE-ALARM",
    ]
    assert all(r["terminal"].endswith("controller") and r["software"] for r in refused)
    (override,) = [e.data for e in entries if e.kind == "command.override"]
    assert override["rule"] == "PERMISSIVE-ALARM" and override["user"] == "sup1"
    assert override["reason"] == "probe fault, DEV-12" and override["bypassed"]


async def test_start_is_refused_while_a_bound_unit_reports_an_alarm(tmp_path: Path) -> None:
    sims = await start_simulators(
        [{"name": "freezer", "kind": "modbus-freezer", "listen": "modbus+tcp://127.0.0.1:0"}],
        1000.0,
    )
    unit = UnitConfig(
        "CRF-01",
        "controlled_rate_freezer",
        "controlled_rate_freezer_modbus",
        sims.endpoints["freezer"],
        {},
    )
    plant = Plant("freeze", "", "simulation", 1000.0, (unit,), (), "freeze-plant")
    controller = Controller(plant, f"sqlite:///{tmp_path / 'f.sqlite'}", user="tester")
    await controller.start()
    try:
        sims.boards["freezer"].inject("alarm", code=7)
        device = await controller.device(unit)
        for _ in range(100):  # the simulator publishes on its next update
            if (await device.read(["alarm.active"]))[0].value:
                break
            await asyncio.sleep(0.05)
        recipe = load_recipe(ROOT / "recipes" / "library" / "cryopreserve.yaml")
        with pytest.raises(BatchSetupError, match=r"PERMISSIVE-UNIT-ALARM.*CRF-01.*code 7"):
            await controller.create_batch(recipe, coi="COI-F9")
        assert not controller.allocations, "a refused start leaves its units free"
    finally:
        await controller.stop()
        await sims.stop()


def _asset_plant(
    server: BioreactorServer,
    due: date,
    qualification: str = "qualified",
    vessel: str = "SV-02",
    serial: str = "SN-4711",
) -> Plant:
    plant = plant_for(server, vessel)
    asset = AssetStatus("EQ-0102", serial, due, qualification)
    return replace(plant, units=(replace(plant.units[0], asset=asset),))


async def test_start_refuses_a_unit_out_of_calibration_unless_qa_overrides(
    bioreactors: BioreactorServer, make_controller: Callable[..., Any], tmp_path: Path
) -> None:
    from ebr.people.users import Directory
    from tests.ebr.test_users import ADMIN_PW, FAST_HASHER, ready_user

    overdue = datetime.now(UTC).date() - timedelta(days=3)
    controller = await make_controller(_asset_plant(bioreactors, overdue))
    recipe = load_recipe(RECIPE)
    with pytest.raises(BatchSetupError, match=r"ASSET-STATUS.*EQ-0102.*overdue"):
        await controller.create_batch(recipe)
    people = Directory(controller.store, hasher=FAST_HASHER)
    people.init("admin", "Site Admin", ADMIN_PW)
    ready_user(people, "olga", "operator")
    ready_user(people, "quinn", "qa")
    olga, quinn = people.get("olga"), people.get("quinn")
    assert olga is not None and quinn is not None
    with pytest.raises(BatchSetupError, match="SOD-ROLE"):
        await controller.create_batch(recipe, asset_override=(olga, "urgent"))
    run = await controller.create_batch(recipe, asset_override=(quinn, "cal. extended, CC-77"))
    controller.release(run.control.batch_id)
    entries = journal_of(controller, run.control.batch_id)
    equipment = entries[0].data["equipment"]
    (unit,) = equipment.values()
    assert unit["asset"]["calibration"] == "overdue" and unit["asset"]["serial"] == "SN-4711"
    override, signature = entries[1], entries[2]
    assert override.kind == "asset.override" and override.data["user"] == "quinn"
    assert "EQ-0102" in override.data["bypassed"][0]
    assert signature.kind == "signature" and signature.data["subject"]["seq"] == override.seq
    from ebr.exports.pdf import render_pdf
    from ebr.exports.report.analysis import analyse
    from tests.ebr.test_export_pdf import _pdftotext

    assert controller.store is not None
    _doc, data = render_pdf(analyse(controller.store, run.control.batch_id))
    pages = _pdftotext(data, tmp_path)
    if pages is not None:  # the cover lists the unit's asset and calibration status
        cover = " ".join(pages[0].split())
        assert "asset EQ-0102, serial SN-4711" in cover and "(overdue)" in cover


async def test_plant_asset_fields_are_checked(tmp_path: Path) -> None:
    from controller.plant import PlantError, load_plant

    bad = tmp_path / "plant.toml"
    bad.write_text(
        '[[units]]\nname = "U1"\nclass = "c"\nprofile = "p"\nendpoint = "e"\n'
        'asset = { id = "EQ-1", serial = "S", calibration_due = "soon", qualification = "q" }\n'
    )
    with pytest.raises(
        PlantError, match=r"\[\[units\]\] #1 asset: 'calibration_due' must be a date"
    ):
        load_plant(bad)
    bad.write_text(bad.read_text().replace('"soon"', "2027-01-31"))
    asset = load_plant(bad).units[0].asset
    assert asset is not None and asset.problems(date(2027, 1, 1)) == ["qualification 'q'"]


async def test_a_supervisor_forces_a_running_phase_and_skips_one_to_come(
    bioreactors: BioreactorServer, make_controller: Callable[..., Any]
) -> None:
    controller = await make_controller(plant_for(bioreactors, "SV-01"))
    run = await controller.create_batch(load_recipe(RECIPE))
    task = asyncio.create_task(controller.run(run))
    await wait_phase(run, "culture/grow/culture")
    sup = Who("sup1", "test terminal")
    assert not await run.override_step("force", "culture/grow/culture", who=sup, reason="")
    assert not await run.override_step("skip", "culture/seed/inoculate", who=sup, reason="done")
    assert "not a phase still to come" in str(run.last_refusal)
    assert await run.override_step(
        "skip", "culture/grow/stop_rocking", who=sup, reason="rocking stopped by hand, DEV-3"
    )
    assert await run.override_step(
        "force", "culture/grow/culture", who=sup, reason="density reached early, DEV-4"
    )
    assert await asyncio.wait_for(task, 20) is State.COMPLETE
    entries = journal_of(controller, run.control.batch_id)
    overrides = [(e.kind, e.data["element"]) for e in entries if e.kind.startswith("step.")]
    assert overrides == [
        ("step.skipped", "culture/grow/stop_rocking"),
        ("step.forced", "culture/grow/culture"),
    ]
    assert all(e.data["user"] == "sup1" for e in entries if e.kind.startswith("step."))
    touched = {e.data.get("element") for e in entries if e.kind == "element.state"}
    assert "culture/grow/stop_rocking" not in touched  # never ran
    progress = [
        e.data["progress"]["elapsed_s"]
        for e in entries
        if e.kind == "phase.progress" and e.data["element"] == "culture/grow/culture"
    ]
    assert not progress or progress[-1] < 45 * 60  # ended before its 45 minutes
    refused = [e.data["rule"] for e in entries if e.kind == "command.refused"]
    assert refused == ["REASON-REQUIRED", "OVERRIDE"]


async def test_a_supervisor_repeats_a_held_phase_from_its_start(
    bioreactors: BioreactorServer, make_controller: Callable[..., Any], tmp_path: Path
) -> None:
    from ebr.review import review

    controller = await make_controller(plant_for(bioreactors, "SV-14"))
    run = await controller.create_batch(load_recipe(RECIPE))
    batch_id = run.control.batch_id
    task = asyncio.create_task(controller.run(run))
    culture = "culture/grow/culture"
    await wait_phase(run, culture)
    sup = Who("sup1", "test terminal")
    assert not await run.override_step("repeat", culture, who=sup, reason="wash again")
    assert "OVERRIDE" in str(run.last_refusal) and "not a held phase" in str(run.last_refusal)
    await run.clock.sleep(12 * 60)  # some of its 45 minutes run before the hold
    assert await run.command(Command.HOLD, user="op1", reason="bag leak check")
    await wait_phase(run, batch_id, State.HELD)
    assert not await run.override_step("repeat", culture, who=sup, reason=" ")
    assert "REASON-REQUIRED" in str(run.last_refusal)
    assert await run.override_step("repeat", culture, who=sup, reason="rocking lost, DEV-9")
    # A controller that took the batch over now would also run the phase from its start
    # (keeping only what its holding logic changed, for restart to undo).
    from controller.resume import load_resume_point

    assert controller.store is not None
    point = load_resume_point(controller.store, batch_id)
    assert set(point.progress[culture]) <= {"held_from"} and culture not in point.running_s
    assert await run.command(Command.RESTART, user="op1", reason="leak fixed")
    assert await asyncio.wait_for(task, 20) is State.COMPLETE
    entries = journal_of(controller, batch_id)
    (repeat,) = [e for e in entries if e.kind == "step.repeated"]
    assert repeat.data["element"] == culture and repeat.data["user"] == "sup1"
    assert repeat.data["reason"] == "rocking lost, DEV-9"
    assert repeat.data["discarded"]["elapsed_s"] > 0  # the run it threw away
    (ended,) = [e for e in entries if e.kind == "step.repeat_ended"]
    assert ended.data == {**ended.data, "repeat": repeat.seq, "outcome": "complete"}
    # After the repeat, the phase ran its whole 45 minutes again (not the rest of them).
    assert repeat.data["discarded"]["elapsed_s"] >= 10 * 60
    states = [
        (e.data["to"], datetime.fromisoformat(e.data["t"]))
        for e in entries
        if e.kind == "element.state" and e.data["element"] == culture and e.seq > repeat.seq
    ]
    running = next(t for to, t in states if to == "Running")
    complete = next(t for to, t in states if to == "Complete")
    assert (complete - running).total_seconds() >= 45 * 60 - 1
    assert [e.data["rule"] for e in entries if e.kind == "command.refused"] == [
        "OVERRIDE",
        "REASON-REQUIRED",
    ]
    assert controller.store is not None
    found = [x for x in review(controller.store, batch_id) if x.rule == "override"]
    assert [(x.severity, x.element) for x in found if "step.repeated" in x.title] == [
        ("critical", culture)
    ]

    # The same vessel again: its second inoculation fails and holds the batch; an invoke
    # phase acts once, so it is not repeated unless the recipe declares it repeatable.
    inoculate = "culture/seed/inoculate"
    for repeatable in (False, True):
        recipe = RECIPE.read_text()
        if repeatable:
            declared = "type: invoke\n" + " " * 14 + "repeatable: true\n"
            recipe = recipe.replace("type: invoke\n", declared)
            (tmp_path / "repeatable.yaml").write_text(recipe)
        again = await controller.create_batch(
            load_recipe(tmp_path / "repeatable.yaml" if repeatable else RECIPE)
        )
        task = asyncio.create_task(controller.run(again))
        await wait_phase(again, inoculate, State.HELD)
        accepted = await again.override_step("repeat", inoculate, who=sup, reason="retry")
        assert accepted is repeatable
        if not repeatable:
            assert "REPEAT-NOT-IDEMPOTENT" in str(again.last_refusal)
            assert "invoke" in str(again.last_refusal)
        else:
            assert await again.command(Command.RESTART, user="op1", reason="try once more")
            await wait_phase(again, inoculate, State.HELD)  # fails again: inoculated
        assert await again.command(Command.ABORT, user="sup1", reason="end of test")
        assert await asyncio.wait_for(task, 20) is State.ABORTED
        entries = journal_of(controller, again.control.batch_id)
        outcomes = [e.data["outcome"] for e in entries if e.kind == "step.repeat_ended"]
        if repeatable:
            assert len(outcomes) == 1 and outcomes[0].startswith("failed")
        else:
            assert not outcomes
            (refused,) = [e.data for e in entries if e.kind == "command.refused"]
            assert refused["rule"] == "REPEAT-NOT-IDEMPOTENT"


async def test_the_serial_an_instrument_reports_is_checked_at_bind(
    bioreactors: BioreactorServer, make_controller: Callable[..., Any]
) -> None:
    from ebr.people.users import Directory
    from ebr.record.query import list_batches
    from ebr.review import review
    from tests.ebr.test_users import ADMIN_PW, FAST_HASHER, ready_user

    due = datetime.now(UTC).date() + timedelta(days=30)
    recipe = load_recipe(RECIPE)
    wrong = await make_controller(_asset_plant(bioreactors, due, vessel="SV-15", serial="SN-15"))
    assert wrong.store is not None
    before = len(list_batches(wrong.store))
    with pytest.raises(
        BatchSetupError, match=r"ASSET-SERIAL.*unit SV-15.*serial 'SN-15'.*reports 'SN-0015'"
    ):
        await wrong.create_batch(recipe)
    assert len(list_batches(wrong.store)) == before, "a refused bind opens no record"
    assert not wrong.allocations
    refused = [e for e in journal_of(wrong, "@site") if e.kind == "bind.refused"]
    assert refused[-1].data["units"]["bioreactor"] == {
        "unit": "SV-15",
        "serial_expected": "SN-15",
        "serial_reported": "SN-0015",
    }
    assert "ASSET-SERIAL" in refused[-1].data["message"]
    # QA may let it start (signed, an exception for review).
    people = Directory(wrong.store, hasher=FAST_HASHER)
    people.init("admin", "Site Admin", ADMIN_PW)
    ready_user(people, "quinn", "qa")
    quinn = people.get("quinn")
    assert quinn is not None
    run = await wrong.create_batch(recipe, asset_override=(quinn, "label swapped, CC-80"))
    wrong.release(run.control.batch_id)
    entries = journal_of(wrong, run.control.batch_id)
    override = next(e for e in entries if e.kind == "asset.override")
    assert override.data["rule"] == "ASSET-SERIAL" and "SN-0015" in override.data["bypassed"][0]
    found = [x for x in review(wrong.store, run.control.batch_id) if x.rule == "override"]
    assert [x.severity for x in found if "asset.override" in x.title] == ["critical"]

    # The plant file says what the vessel reports: the batch starts, the record shows it.
    right = await make_controller(_asset_plant(bioreactors, due, vessel="SV-15", serial="SN-0015"))
    run = await right.create_batch(recipe)
    task = asyncio.create_task(right.run(run))
    await wait_phase(run, "culture/setup/conditions")
    assert await run.command(Command.ABORT, user="sup1", reason="end of test")
    assert await asyncio.wait_for(task, 20) is State.ABORTED
    (unit,) = journal_of(right, run.control.batch_id)[0].data["equipment"].values()
    assert unit["serial_reported"] == "SN-0015" and unit["asset"]["serial"] == "SN-0015"
