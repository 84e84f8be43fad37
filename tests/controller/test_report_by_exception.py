"""Instruments that notify only on change: CPPs are still recorded every period
(confirmed by reads), a steady server is not taken for a lost one, and a monitor's
delay runs on the clock, so one out-of-limit value held past it acts."""

from __future__ import annotations

import asyncio
import itertools
from datetime import datetime, timedelta
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
CPPS = ("bioreactor.temperature.pv", "bioreactor.ph.pv")
SCALE = 300.0


async def rbe_controller(tmp_path: Path) -> tuple[BioreactorServer, Controller]:
    server = BioreactorServer(
        ["LV-01"],
        url="opc.tcp://127.0.0.1:0/cellbatch/rbe",
        time_scale=SCALE,
        report_by_exception=0.5,  # far above the sensor noise: steady values send nothing
    )
    await server.start()
    unit = UnitConfig(
        "LV-01",
        "rocking_bioreactor",
        "rocking_bioreactor_opcua",
        server.endpoint,
        {"vessel": "LV-01"},
    )
    plant = Plant("rbe", "", "simulation", SCALE, (unit,), (), "rbe-plant")
    controller = Controller(plant, f"sqlite:///{tmp_path / 'rbe.sqlite'}", user="tester")
    await controller.start()
    return server, controller


async def test_steady_values_are_sampled_every_minute_and_not_lost(tmp_path: Path) -> None:
    server, controller = await rbe_controller(tmp_path)
    try:
        run = await controller.create_batch(load_recipe(RECIPE), parameters={"culture_time": 30})
        assert await asyncio.wait_for(controller.run(run), 120) is State.COMPLETE
        assert controller.store is not None
        batch = run.control.batch_id
        entries = read_journal(controller.store, batch)
        kinds = {e.kind for e in entries}
        assert "instrument.lost" not in kinds
        assert "samples.incomplete" not in kinds
        assert run.sampler.confirmations > 0, "the steady server was confirmed by reads"
        started = datetime.fromisoformat(
            next(e for e in entries if e.kind == "batch.state").data["t"]
        )
        ended = datetime.fromisoformat([e for e in entries if "t" in e.data][-1].data["t"])
        samples = read_samples(controller.store, batch)
        for tag in CPPS:
            times = [s.timestamp for s in samples if s.tag == tag]
            assert all(q.quality == "good" for q in samples if q.tag == tag)
            assert times == sorted(times) and len(set(times)) == len(times)
            # every simulated minute of the batch holds a sample of every CPP
            during = [started, *(t for t in times if started < t < ended), ended]
            gaps = [(b - a).total_seconds() for a, b in itertools.pairwise(during)]
            minutes = (ended - started).total_seconds() / 60.0
            # one sample per simulated minute; a confirmation read may land a little late
            # on a loaded machine (0.5 simulated s is under 1 ms of wall time here)
            assert len(during) - 2 >= int(minutes) - 1, (tag, len(during), minutes)
            assert len(during) > 60 and max(gaps) <= 90.0, (tag, max(gaps))
        assert verify_batch(controller.store, batch).ok
    finally:
        await controller.stop()
        await server.stop()


async def test_one_held_excursion_holds_within_delay_and_one_period(tmp_path: Path) -> None:
    server, controller = await rbe_controller(tmp_path)
    try:
        run = await controller.create_batch(load_recipe(RECIPE), parameters={"culture_time": 600})
        task = asyncio.create_task(controller.run(run))
        while not any(el.path == "culture/grow/culture" for el in run.chain):
            run.state_changed.clear()
            await asyncio.wait_for(run.state_changed.wait(), 60)
        # one step to 39 °C (beyond the 38 °C action limit), then nothing changes
        server.faults.inject("spike", target="LV-01.Temperature.PV", value=39.0)
        while run.state is not State.HELD:
            run.state_changed.clear()
            await asyncio.wait_for(run.state_changed.wait(), 60)
        assert await run.command(Command.ABORT, user="sup1", reason="end of test")
        assert await asyncio.wait_for(task, 30) is State.ABORTED
        assert controller.store is not None
        batch = run.control.batch_id
        samples = read_samples(controller.store, batch)
        first = min(
            s.timestamp
            for s in samples
            if s.tag == "bioreactor.temperature.pv" and s.value is not None and s.value > 38.0
        )
        entries = read_journal(controller.store, batch)
        raised = [e.data for e in entries if e.kind == "alarm.raised"]
        action = next(a for a in raised if a["monitor"] == "temperature")
        assert action["level"] == "action" and action["value"] == 39.0
        at = datetime.fromisoformat(action["at"])
        assert timedelta(minutes=10) <= at - first <= timedelta(minutes=11), at - first
        holds = [
            e.data for e in entries if e.kind == "command.accepted" and e.data["command"] == "hold"
        ]
        assert holds and holds[0]["user"] == "engine:monitor temperature"
        after = [
            s for s in samples if s.tag == "bioreactor.temperature.pv" and s.timestamp >= first
        ]
        assert len(after) >= 10, "the held excursion is sampled every minute"
        assert verify_batch(controller.store, batch).ok
    finally:
        await controller.stop()
        await server.stop()
