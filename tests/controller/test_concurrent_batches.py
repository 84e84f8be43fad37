"""Twenty patient batches side by side in one controller, one bioreactor each."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import pytest_asyncio

from controller.isa88 import Command, State
from controller.plant import Plant, UnitConfig
from controller.session import BatchSetupError, Controller
from ebr import read_journal, verify_all
from recipes import load_recipe
from simulators.bioreactor.opcua_server import BioreactorServer

pytestmark = [pytest.mark.asyncio(loop_scope="module"), pytest.mark.slow]
RECIPE = Path(__file__).parent / "recipes" / "short-culture.yaml"
VESSELS = [f"MV-{i:02d}" for i in range(1, 21)]
SPARE = ["MV-21", "MV-22"]


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def multi_vessel() -> AsyncIterator[BioreactorServer]:
    server = BioreactorServer(
        VESSELS + SPARE, url="opc.tcp://127.0.0.1:0/cellbatch/multi", time_scale=2000.0, seed=11
    )
    await server.start()
    try:
        yield server
    finally:
        await server.stop()


async def test_twenty_batches_complete_with_independent_records(
    multi_vessel: BioreactorServer, tmp_path: Path
) -> None:
    units = tuple(
        UnitConfig(
            v,
            "rocking_bioreactor",
            "rocking_bioreactor_opcua",
            multi_vessel.endpoint,
            {"vessel": v},
        )
        for v in VESSELS
    )
    plant = Plant("multi", "", "simulation", 2000.0, units, (), "multi-plant")
    controller = Controller(plant, f"sqlite:///{tmp_path / 'multi.sqlite'}", user="tester")
    await controller.start()
    try:
        recipe = load_recipe(RECIPE)
        runs = [
            await controller.create_batch(
                recipe, coi=f"COI-{i:02d}", parameters={"rocking_rate": 4 + i % 10}
            )
            for i in range(20)
        ]
        assert sorted(controller.allocations) == VESSELS
        with pytest.raises(BatchSetupError, match="no free unit"):
            await controller.create_batch(recipe, coi="COI-21")
        finals = await asyncio.wait_for(asyncio.gather(*(controller.run(r) for r in runs)), 120)
        assert finals == [State.COMPLETE] * 20
        assert not controller.allocations
        assert controller.store is not None
        results = verify_all(controller.store)
        assert len(results) == 20 and all(r.ok for r in results)
        for i, run in enumerate(runs):
            entries = read_journal(controller.store, run.control.batch_id)
            assert {e.batch_id for e in entries} == {run.control.batch_id}
            created = entries[0].data
            unit = created["equipment"]["bioreactor"]["unit"]
            assert created["header"]["coi"] == f"COI-{i:02d}"
            writes = [e.data for e in entries if e.kind == "write.intent"]
            assert {w["unit"] for w in writes} == {unit}, "each batch drives only its own vessel"
            rate = next(w["new"] for w in writes if w["capability"] == "rocking.rate_sp")
            assert rate == 4 + i % 10, "each batch ran its own parameters"
        assert len({r.control.units["bioreactor"].name for r in runs}) == 20
    finally:
        await controller.stop()


async def test_a_failing_batch_holds_alone(multi_vessel: BioreactorServer, tmp_path: Path) -> None:
    """An instrument refusing one batch's write holds that batch; the other completes."""
    units = tuple(
        UnitConfig(
            v,
            "rocking_bioreactor",
            "rocking_bioreactor_opcua",
            multi_vessel.endpoint,
            {"vessel": v},
        )
        for v in SPARE
    )
    plant = Plant("pair", "", "simulation", 2000.0, units, (), "pair-plant")
    controller = Controller(plant, f"sqlite:///{tmp_path / 'pair.sqlite'}", user="tester")
    await controller.start()
    try:
        recipe = load_recipe(RECIPE)
        good = await controller.create_batch(recipe, coi="COI-GOOD")
        bad = await controller.create_batch(recipe, coi="COI-BAD", parameters={"temperature": 45.0})
        good_task = asyncio.create_task(controller.run(good))
        bad_task = asyncio.create_task(controller.run(bad))
        assert await asyncio.wait_for(good_task, 60) is State.COMPLETE
        assert bad.state is State.HELD and not bad_task.done()
        assert await bad.command(Command.ABORT, user="sup1", reason="test")
        assert await asyncio.wait_for(bad_task, 10) is State.ABORTED
    finally:
        await controller.stop()
