"""An instrument that restarts mid-batch: the outage is journaled with its duration, the
setpoints it lost are re-asserted (or the batch holds, per the unit's policy), review
lists the loss and the restart, and the record verifies."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from controller.isa88 import Command, State
from controller.plant import Plant, UnitConfig
from controller.session import Controller
from drivers.profile import PROFILE_DIR
from ebr import read_journal, verify_batch
from ebr.review import load_rules, review
from recipes import load_recipe
from simulators.bioreactor.opcua_server import BioreactorServer
from simulators.centrifuge.modbus_server import CellProcessorServer

pytestmark = [pytest.mark.asyncio(loop_scope="function"), pytest.mark.slow]
RECIPE = Path(__file__).parent / "recipes" / "short-culture.yaml"
SCALE = 300.0


def patient_profile(tmp_path: Path) -> Path:
    """The bioreactor profile with a link judged failed only after 60 wall s (the
    restart takes a few), so the outage alone does not hold the batch, and retried
    every 0.5 s at most (back soon after the instrument)."""
    text = (PROFILE_DIR / "rocking_bioreactor_opcua.toml").read_text(encoding="utf-8")
    path = tmp_path / "patient_bioreactor.toml"
    path.write_text(
        text.replace(
            'protocol = "opcua"\n',
            'protocol = "opcua"\nstatus_fail_after_s = 60\nreconnect_backoff_max_s = 0.5\n',
        ),
        encoding="utf-8",
    )
    return path


async def restarted_batch(
    tmp_path: Path, policy: str
) -> tuple[BioreactorServer, Controller, object]:
    server = BioreactorServer(["LV-01"], url="opc.tcp://127.0.0.1:0/cellbatch/rs", time_scale=SCALE)
    await server.start()
    unit = UnitConfig(
        "LV-01",
        "rocking_bioreactor",
        str(patient_profile(tmp_path)),
        server.endpoint,
        {"vessel": "LV-01"},
        on_restart=policy,
    )
    plant = Plant("rs", "", "simulation", SCALE, (unit,), (), "rs-plant")
    controller = Controller(plant, f"sqlite:///{tmp_path / 'rs.sqlite'}", user="tester")
    await controller.start()
    return server, controller, unit


async def test_restart_is_journaled_and_setpoints_reasserted(tmp_path: Path) -> None:
    server, controller, _unit = await restarted_batch(tmp_path, "reassert")
    try:
        run = await controller.create_batch(load_recipe(RECIPE), parameters={"culture_time": 120})
        task = asyncio.create_task(controller.run(run))
        while not any(el.path == "culture/grow/culture" for el in run.chain):
            run.state_changed.clear()
            await asyncio.wait_for(run.state_changed.wait(), 60)
        server.faults.inject("restart", downtime_s=1.0)
        assert await asyncio.wait_for(task, 120) is State.COMPLETE
        assert server.restarts == 1
        assert controller.store is not None
        batch = run.control.batch_id
        entries = read_journal(controller.store, batch)
        lost = [e for e in entries if e.kind == "instrument.lost"]
        restored = [e for e in entries if e.kind == "instrument.restored"]
        assert len(lost) == 1 and len(restored) == 1
        assert restored[0].data["since"] == lost[0].data["since"]
        down = restored[0].data["down_process_s"]
        assert down > 0
        (restarted,) = [e.data for e in entries if e.kind == "instrument.restarted"]
        assert restarted["policy"] == "reassert"
        assert restarted["differs"]["rocking.rate_sp"] == {"written": 8.0, "found": 0.0}
        reasserted = [
            e
            for e in entries
            if e.kind == "write.intent" and "restarted" in e.data.get("reason", "")
        ]
        # the server's start time changed: every setpoint written is re-asserted
        assert {e.data["capability"] for e in reasserted} == {
            "temperature.sp",
            "ph.sp",
            "rocking.rate_sp",
            "volume.sp",
        }
        assert restarted["reason"].startswith("server start time changed")
        results = {e.data["intent"]: e.data for e in entries if e.kind == "write.result"}
        assert all(results[e.seq]["ok"] for e in reasserted)
        assert not [
            e for e in entries if e.kind == "command.accepted" and e.data["command"] == "hold"
        ]
        found = [f for f in review(controller.store, batch, load_rules()) if f.rule == "comm_loss"]
        titles = [f.title for f in found]
        assert "instrument LV-01 restarted and lost its setpoints" in titles
        assert any(t.startswith("instrument LV-01 lost for ") for t in titles), titles
        assert verify_batch(controller.store, batch).ok
    finally:
        await controller.stop()
        await server.stop()


async def test_hold_policy_holds_the_batch(tmp_path: Path) -> None:
    server, controller, _unit = await restarted_batch(tmp_path, "hold")
    try:
        run = await controller.create_batch(load_recipe(RECIPE), parameters={"culture_time": 600})
        task = asyncio.create_task(controller.run(run))
        while not any(el.path == "culture/grow/culture" for el in run.chain):
            run.state_changed.clear()
            await asyncio.wait_for(run.state_changed.wait(), 60)
        server.faults.inject("restart", downtime_s=0.5)
        while run.state is not State.HELD:
            run.state_changed.clear()
            await asyncio.wait_for(run.state_changed.wait(), 60)
        assert await run.command(Command.ABORT, user="sup1", reason="end of test")
        assert await asyncio.wait_for(task, 30) is State.ABORTED
        assert controller.store is not None
        entries = read_journal(controller.store, run.control.batch_id)
        (restarted,) = [e.data for e in entries if e.kind == "instrument.restarted"]
        assert restarted["policy"] == "hold"
        holds = [
            e.data for e in entries if e.kind == "command.accepted" and e.data["command"] == "hold"
        ]
        assert holds[0]["reason"] == "LV-01 restarted and lost its setpoints"
        assert not [e for e in entries if e.kind == "write.intent" and "reason" in e.data]
        assert verify_batch(controller.store, run.control.batch_id).ok
    finally:
        await controller.stop()
        await server.stop()


async def test_restart_told_by_server_start_time(tmp_path: Path) -> None:
    """The setpoints written equal the instrument's defaults, so reading them back
    cannot tell the restart: the server's StartTime does."""
    server, controller, _unit = await restarted_batch(tmp_path, "reassert")
    try:
        run = await controller.create_batch(load_recipe(RECIPE.with_name("defaults-hold.yaml")))
        task = asyncio.create_task(controller.run(run))
        async with asyncio.timeout(120):  # bounded as a whole, not only per change
            while not any(el.path == "culture/steady/steady" for el in run.chain):
                run.state_changed.clear()
                await run.state_changed.wait()
        server.faults.inject("restart", downtime_s=0.3)
        assert await asyncio.wait_for(task, 120) is State.COMPLETE
        assert server.restarts == 1
        assert controller.store is not None
        batch = run.control.batch_id
        entries = read_journal(controller.store, batch)
        told = [e.data for e in entries if e.kind == "instrument.restarted"]
        assert len(told) == 1, [(e.kind, e.data) for e in entries if "instrument" in e.kind]
        restarted = told[0]
        assert restarted["differs"] == {}
        assert restarted["reason"].startswith("server start time changed from ")
        reasserted = {
            e.data["capability"]
            for e in entries
            if e.kind == "write.intent" and "restarted" in e.data.get("reason", "")
        }
        assert reasserted == {"temperature.sp", "ph.sp"}  # every setpoint, though equal
        found = [f for f in review(controller.store, batch, load_rules()) if f.rule == "comm_loss"]
        assert "instrument LV-01 restarted" in [f.title for f in found]
        assert verify_batch(controller.store, batch).ok
    finally:
        await controller.stop()
        await server.stop()


async def test_restart_within_the_blip_mask_is_still_checked(tmp_path: Path) -> None:
    """A Modbus processor power-cycled faster than the link's blip mask: no outage is
    journaled (the status never left connected), but the reconnection is checked and
    the volumes it lost are found by read-back and re-asserted."""
    text = (PROFILE_DIR / "cell_processor_modbus.toml").read_text(encoding="utf-8")
    profile = tmp_path / "cp.toml"
    profile.write_text(
        text.replace(
            'protocol = "modbus"\n',
            'protocol = "modbus"\nstatus_blip_s = 30\nstatus_fail_after_s = 60\n'
            "reconnect_backoff_max_s = 0.2\n",
        ),
        encoding="utf-8",
    )
    server = CellProcessorServer(time_scale=600.0)
    await server.start()
    unit = UnitConfig("CP-01", "cell_processor", str(profile), server.endpoint, {})
    plant = Plant("rs", "", "simulation", 600.0, (unit,), (), "rs-plant")
    controller = Controller(plant, f"sqlite:///{tmp_path / 'rs.sqlite'}", user="tester")
    await controller.start()
    try:
        run = await controller.create_batch(load_recipe(RECIPE.with_name("processor-hold.yaml")))
        task = asyncio.create_task(controller.run(run))
        async with asyncio.timeout(120):  # bounded as a whole, not only per change
            while not any(el.path == "wash/prepare/settle" for el in run.chain):
                run.state_changed.clear()
                await run.state_changed.wait()
        server.faults.inject("restart", downtime_s=0.2)
        assert await asyncio.wait_for(task, 60) is State.COMPLETE
        assert server.restarts == 1
        assert controller.store is not None
        batch = run.control.batch_id
        entries = read_journal(controller.store, batch)
        assert not [e for e in entries if e.kind in ("instrument.lost", "instrument.restored")]
        (restarted,) = [e.data for e in entries if e.kind == "instrument.restarted"]
        assert restarted["reason"] == "setpoint read back differs from the last written value"
        assert set(restarted["differs"]) == {"input_volume.sp", "final_volume.sp"}
        reasserted = [
            e.data["capability"]
            for e in entries
            if e.kind == "write.intent" and "restarted" in e.data.get("reason", "")
        ]
        assert sorted(reasserted) == ["final_volume.sp", "input_volume.sp"]
        assert verify_batch(controller.store, batch).ok
    finally:
        await controller.stop()
        await server.stop()
