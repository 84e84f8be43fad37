"""A simulated vessel takes a second batch once a new bag is installed (before, the
second inoculation is refused: the bag already holds a culture)."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from controller.isa88 import State
from controller.plant import Plant, UnitConfig
from controller.session import Controller
from drivers import WriteRejected
from recipes import load_recipe
from simulators.bioreactor.opcua_server import BioreactorServer

RECIPE = Path(__file__).parent / "recipes" / "short-culture.yaml"


@pytest.mark.asyncio(loop_scope="function")
@pytest.mark.slow
async def test_second_batch_after_a_new_bag(tmp_path: Path) -> None:
    async with BioreactorServer(
        ["LV-01"], url="opc.tcp://127.0.0.1:0/bag", time_scale=2000.0
    ) as server:
        unit = UnitConfig(
            "LV-01",
            "rocking_bioreactor",
            "rocking_bioreactor_opcua",
            server.endpoint,
            {"vessel": "LV-01"},
        )
        plant = Plant("bag", "", "simulation", 2000.0, (unit,), (), "bag-plant")
        controller = Controller(plant, f"sqlite:///{tmp_path / 'bag.sqlite'}", user="tester")
        await controller.start()
        try:
            recipe = load_recipe(RECIPE)
            first = await controller.create_batch(recipe, parameters={"culture_time": 5})
            assert await asyncio.wait_for(controller.run(first), 60) is State.COMPLETE
            device = await controller.device(unit)
            with pytest.raises(WriteRejected, match="BadInvalidState"):
                await device.call("inoculate", {"volume": 10.0, "viable_cells": 1e7})
            await device.call("install_bag", {})
            assert not server.vessel("LV-01").inoculated
            second = await controller.create_batch(recipe, parameters={"culture_time": 5})
            assert await asyncio.wait_for(controller.run(second), 60) is State.COMPLETE
            assert server.vessel("LV-01").inoculated
        finally:
            await controller.stop()
