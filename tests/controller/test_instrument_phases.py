"""The wash-and-formulate recipe over real Modbus TCP and serial ptys: a centrifuge
program, a pump transfer closed-loop on a balance, parallel branches, prompts.
A hold during a transfer stops the pump; restart pumps only the remainder."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio

from controller.batch import BatchRun
from controller.isa88 import Command, State
from controller.plant import Plant, UnitConfig
from controller.prompts import PromptBoard, simulated_operator
from controller.session import Controller
from ebr import read_journal, read_samples, verify_batch
from recipes import load_recipe
from simulators.launch import RunningSimulators, start_simulators

pytestmark = [pytest.mark.asyncio(loop_scope="module"), pytest.mark.slow]
ROOT = Path(__file__).resolve().parents[2]
RECIPE = ROOT / "recipes" / "library" / "cell-wash-formulate.yaml"
SCALE = 1000.0

logging.getLogger("pymodbus").setLevel(logging.ERROR)


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def suite() -> AsyncIterator[RunningSimulators]:
    sims = await start_simulators(
        [
            {"name": "cp", "kind": "modbus-cell-processor", "listen": "modbus+tcp://127.0.0.1:0"},
            {"name": "pump", "kind": "serial-pump", "tubing_ml_per_rev": 0.5},
            {"name": "balance", "kind": "serial-balance"},
            {"name": "freezer", "kind": "modbus-freezer", "listen": "modbus+tcp://127.0.0.1:0"},
        ],
        SCALE,
    )
    try:
        yield sims
    finally:
        await sims.stop()


def plant_of(sims: RunningSimulators) -> Plant:
    units = (
        UnitConfig("CP-01", "cell_processor", "cell_processor_modbus", sims.endpoints["cp"], {}),
        UnitConfig(
            "P-01",
            "peristaltic_pump",
            "peristaltic_pump_serial",
            sims.endpoints["pump"],
            {"pump_address": "1"},
        ),
        UnitConfig("BAL-01", "balance", "balance_mtsics", sims.endpoints["balance"], {}),
        UnitConfig(
            "CRF-01",
            "controlled_rate_freezer",
            "controlled_rate_freezer_modbus",
            sims.endpoints["freezer"],
            {},
        ),
    )
    return Plant("wash", "", "simulation", SCALE, units, (), "wash-plant")


async def _controller(sims: RunningSimulators, tmp_path: Path) -> Controller:
    board = PromptBoard()
    board.answerer = simulated_operator(board)
    controller = Controller(
        plant_of(sims), f"sqlite:///{tmp_path / 'wash.sqlite'}", user="tester", prompts=board
    )
    await controller.start()
    return controller


def _entries(controller: Controller, run: BatchRun) -> list[Any]:
    assert controller.store is not None
    return read_journal(controller.store, run.control.batch_id)


async def test_wash_and_formulate_runs_on_modbus_and_serial(
    suite: RunningSimulators, tmp_path: Path
) -> None:
    controller = await _controller(suite, tmp_path)
    try:
        run = await controller.create_batch(load_recipe(RECIPE), coi="COI-W1")
        assert await asyncio.wait_for(controller.run(run), 60) is State.COMPLETE
        entries = _entries(controller, run)
        program = [e.data for e in entries if e.kind == "program.complete"]
        assert program and program[0]["unit"] == "CP-01"
        assert program[0]["report"]["cell_recovery.pv"] > 85
        transfers = [e.data for e in entries if e.kind == "transfer.result"]
        assert [t["target_g"] for t in transfers] == [5.0, 50.0]
        assert all(abs(t["error_g"]) <= 1.0 for t in transfers), transfers
        # the wash and the line priming overlapped (parallel branches)
        started = {
            e.data["element"]: e.seq
            for e in entries
            if e.kind == "element.state" and e.data["to"] == "Running"
        }
        completed = {
            e.data["element"]: e.seq
            for e in entries
            if e.kind == "element.state" and e.data["to"] == "Complete"
        }
        assert started["prime"] < completed["wash"] and started["wash"] < completed["prime"]
        assert controller.store is not None
        assert verify_batch(controller.store, run.control.batch_id).ok
    finally:
        await controller.stop()


async def test_hold_stops_the_pump_and_restart_pumps_the_remainder(
    suite: RunningSimulators, tmp_path: Path
) -> None:
    controller = await _controller(suite, tmp_path)
    try:
        recipe = load_recipe(RECIPE)
        run = await controller.create_batch(
            recipe, coi="COI-W2", parameters={"cryomedium_mass": 100, "pump_rate": 20}
        )
        path = "formulate/add_cryomedium/pump_cryomedium"
        pumping = asyncio.Event()

        def watch(entry: Any) -> None:
            if entry.kind == "method.result" and entry.data["element"] == path:
                pumping.set()  # the pump was started: hold in the middle of the transfer

        run.recorder.listeners.append(watch)
        task = asyncio.create_task(controller.run(run))
        await asyncio.wait_for(pumping.wait(), 30)
        assert await run.command(Command.HOLD, user="op1", reason="bag check")
        pump = run.control.units["pump"]
        (running,) = await pump.read(["pump.running"])
        assert running.value in (False, 0), "holding logic stopped the pump"
        assert await run.command(Command.RESTART, user="op1", reason="test")
        assert await asyncio.wait_for(task, 60) is State.COMPLETE
        entries = _entries(controller, run)
        result = next(
            e.data for e in entries if e.kind == "transfer.result" and e.data["element"] == path
        )
        assert abs(result["delivered_g"] - 100.0) <= 1.0, "the remainder only, not twice"
        calls = [
            e.data["method"]
            for e in entries
            if e.kind == "method.intent" and e.data["element"] == path
        ]
        assert calls == ["start", "stop", "start", "stop"]
    finally:
        await controller.stop()


async def test_cryopreserve_runs_the_freezer_profile(
    suite: RunningSimulators, tmp_path: Path
) -> None:
    controller = await _controller(suite, tmp_path)
    try:
        recipe = load_recipe(ROOT / "recipes" / "library" / "cryopreserve.yaml")
        run = await controller.create_batch(recipe, coi="COI-F1")
        assert await asyncio.wait_for(controller.run(run), 60) is State.COMPLETE
        entries = _entries(controller, run)
        (done,) = [e.data for e in entries if e.kind == "program.complete"]
        assert done["unit"] == "CRF-01" and done["program"] == 1
        assert done["report"]["chamber_temperature.pv"] < -80
        samples = [
            s
            for s in read_samples(controller.store, run.control.batch_id)
            if s.tag == "freezer.chamber_temperature.pv"
        ]
        # polled every 0.5 s of wall time: about every 8 simulated minutes at 1000x
        assert len(samples) >= 5 and min(s.value or 0.0 for s in samples) < -50
        # the sample probe is recorded and checked (≤ −80 °C) before the move to LN2
        (met,) = [
            e.data
            for e in entries
            if e.kind == "condition.met" and e.data["element"].endswith("sample_at_minus_80")
        ]
        assert met["values"]["sample_temperature.pv"] <= -80
        assert any(
            s.tag == "freezer.sample_temperature.pv"
            for s in read_samples(controller.store, run.control.batch_id)
        )
    finally:
        await controller.stop()
