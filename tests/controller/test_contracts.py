"""Equipment contracts: the preflight refuses a batch whose recipe needs what the bound
profile or instrument lacks, before anything reaches an instrument; the same check
passes for the packaged profile against the simulator."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest

from controller.contracts import Need, check_devices, recipe_needs
from controller.plant import Plant, UnitConfig
from controller.session import BatchSetupError, Controller
from drivers import DevicePool
from drivers.profile import PROFILE_DIR
from ebr import list_batches
from recipes import load_recipe
from simulators.bioreactor.opcua_server import BioreactorServer
from simulators.bioreactor.physics import Setpoints

RECIPE = Path(__file__).parent / "recipes" / "short-culture.yaml"


def test_recipe_needs_name_phase_and_monitor() -> None:
    needs = {(n.alias, n.name, n.access) for n in recipe_needs(load_recipe(RECIPE))}
    assert ("bioreactor", "temperature.sp", "write") in needs  # setpoint phase
    assert ("bioreactor", "volume.pv", "read") in needs  # wait_until condition
    assert ("bioreactor", "inoculate", "call") in needs  # invoke
    assert ("bioreactor", "ph.pv", "read") in needs  # monitor


@pytest.mark.asyncio(loop_scope="function")
async def test_preflight_refuses_before_any_write(tmp_path: Path) -> None:
    text = (PROFILE_DIR / "rocking_bioreactor_opcua.toml").read_text(encoding="utf-8")
    lines = [ln for ln in text.splitlines() if not ln.startswith('"rocking.rate_sp"')]
    # a profile that lacks rocking.rate_sp and claims a measurement is writable
    broken = "\n".join(lines).replace(
        '"ph.pv"                  = { node = "{vessel}.pH.PV", type = "Double", unit = "pH" }',
        '"ph.pv" = { node = "{vessel}.pH.PV", type = "Double", unit = "pH", writable = true }',
    )
    profile = tmp_path / "broken.toml"
    profile.write_text(broken, encoding="utf-8")
    async with BioreactorServer(["LV-01"], url="opc.tcp://127.0.0.1:0/pf") as server:
        unit = UnitConfig(
            "LV-01", "rocking_bioreactor", str(profile), server.endpoint, {"vessel": "LV-01"}
        )
        plant = Plant("pf", "", "simulation", 1.0, (unit,), (), "pf-plant")
        controller = Controller(plant, f"sqlite:///{tmp_path / 'pf.sqlite'}", user="tester")
        await controller.start()
        try:
            with pytest.raises(BatchSetupError) as info:
                await controller.create_batch(load_recipe(RECIPE))
            message = str(info.value)
            assert "no capability 'rocking.rate_sp'" in message
            assert "phase culture/setup/conditions" in message
            # the recipe writes no ph.pv, so its false writability is not the recipe's need
            assert controller.store is not None
            assert list_batches(controller.store) == [], "refused before the record opened"
            assert server.vessel("LV-01").setpoints == Setpoints(), "nothing was written"
            # the same devices, checked for writing ph.pv: the instrument says no
            device = await controller.device(unit)
            problems = await check_devices({"br": device}, [Need("br", "ph.pv", "write", "test")])
            assert problems == ["unit LV-01: the instrument does not allow writing 'ph.pv'"]
        finally:
            await controller.stop()


@pytest.mark.asyncio(loop_scope="function")
async def test_packaged_profile_passes_against_the_simulator() -> None:
    async with BioreactorServer(["LV-01"], url="opc.tcp://127.0.0.1:0/ok") as server:
        pool = DevicePool(timeout=3.0)
        try:
            device = pool.open(
                "LV-01", "rocking_bioreactor_opcua", server.endpoint, {"vessel": "LV-01"}
            )
            await device.connect()
            needs = [
                Need("br", cap, "write" if tag.writable else "read", "profile")
                for cap, tag in device.profile.tags.items()
            ]
            needs += recipe_needs(load_recipe(RECIPE))
            needs = [replace(n, alias="br") for n in needs]
            assert await check_devices({"br": device}, needs) == []
        finally:
            await pool.close()
