"""A lost instrument holds the batch that uses it once its link has failed; the loss
is journaled when the link goes down (when, last good values); nothing is lost from
the record, and the outage shows as gap markers (bad quality) in the samples."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from controller.isa88 import Command, State
from controller.plant import Plant, UnitConfig
from controller.session import Controller
from ebr import read_journal, read_samples, verify_batch
from recipes import load_recipe
from simulators.bioreactor.opcua_server import BioreactorServer

pytestmark = [pytest.mark.asyncio(loop_scope="function"), pytest.mark.slow]
RECIPE = Path(__file__).parent / "recipes" / "short-culture.yaml"


async def test_instrument_whose_link_fails_holds_the_batch(tmp_path: Path) -> None:
    server = BioreactorServer(
        ["LV-01"], url="opc.tcp://127.0.0.1:0/cellbatch/lost", time_scale=2000.0
    )
    await server.start()
    unit = UnitConfig(
        "LV-01",
        "rocking_bioreactor",
        "rocking_bioreactor_opcua",
        server.endpoint,
        {"vessel": "LV-01"},
    )
    plant = Plant("lost", "", "simulation", 2000.0, (unit,), (), "lost-plant")
    controller = Controller(plant, f"sqlite:///{tmp_path / 'lost.sqlite'}", user="tester")
    await controller.start()
    stopped = False
    try:
        # a long culture phase: the instrument is lost while nothing talks to it
        run = await controller.create_batch(load_recipe(RECIPE), parameters={"culture_time": 600})
        task = asyncio.create_task(controller.run(run))
        while not any(el.path == "culture/grow/culture" for el in run.chain):
            run.state_changed.clear()
            await asyncio.wait_for(run.state_changed.wait(), 20)
        await server.stop()  # the instrument disappears mid-phase
        stopped = True
        while run.state is not State.HELD:  # the link is judged failed after 10 wall s
            run.state_changed.clear()
            await asyncio.wait_for(run.state_changed.wait(), 60)
        assert await run.command(Command.ABORT, user="sup1", reason="test")
        assert await asyncio.wait_for(task, 10) is State.ABORTED
        assert controller.store is not None
        entries = read_journal(controller.store, run.control.batch_id)
        lost = [e.data for e in entries if e.kind == "instrument.lost"]
        assert lost and lost[0]["unit"] == "LV-01"
        assert isinstance(lost[0]["last_good"]["bioreactor.temperature.pv"], float)
        gaps = [
            s
            for s in read_samples(controller.store, run.control.batch_id)
            if s.tag == "bioreactor.temperature.pv" and s.quality == "bad"
        ]
        assert gaps and all(g.value is None for g in gaps), "the outage is marked, not invented"
        holds = [
            e.data for e in entries if e.kind == "command.accepted" and e.data["command"] == "hold"
        ]
        assert holds[0]["user"] == "engine:instrument LV-01"
        assert holds[0]["reason"] == "link to LV-01 failed"
        assert any(e.kind == "holding.failed" for e in entries), "holding logic could not reach it"
        assert verify_batch(controller.store, run.control.batch_id).ok
    finally:
        await controller.stop()
        if not stopped:
            await server.stop()
