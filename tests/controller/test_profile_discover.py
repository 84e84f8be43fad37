"""`cellbatch profile discover` drafts a profile from a live OPC UA server; mapped to
the equipment class's capabilities, the draft runs a culture recipe."""

from __future__ import annotations

import asyncio
import re
import tomllib
from pathlib import Path

import pytest

from cellbatch.plant_cli import profile_discover
from controller.isa88 import State
from controller.plant import Plant, UnitConfig
from controller.session import Controller
from drivers import load_profile
from drivers.discover import discover, draft_profile
from ebr import read_journal, verify_batch
from recipes import EQUIPMENT_CLASSES, load_recipe
from simulators.bioreactor.opcua_server import BioreactorServer

pytestmark = [pytest.mark.slow]
RECIPE = Path(__file__).parent / "recipes" / "short-culture.yaml"
CLASS = EQUIPMENT_CLASSES["rocking_bioreactor"]


def engineer_maps(draft: str, vessel: str) -> str:
    """What the engineer does with the draft: keep this vessel's variables, rename each
    to the capability it implements, set the class and its units."""
    doc = tomllib.loads(draft)
    wanted = {re.sub(r"[^a-z]", "", cap): cap for cap in CLASS.capabilities}
    # the simulator's clock (so that the controller runs the same simulated time)
    clock = {
        "simulation.epoch": "simulation.epoch",
        "simulation.timescale": "simulation.time_scale",
    }
    lines = [
        "[profile]",
        'name = "mapped"',
        'equipment_class = "rocking_bioreactor"',
        'protocol = "opcua"',
        f'namespace_uri = "{doc["profile"]["namespace_uri"]}"',
        "",
        "[tags]",
    ]
    prefix = f"bioreactors.{vessel.lower().replace('-', '_')}."
    for key, spec in doc["tags"].items():
        cap = wanted.get(re.sub(r"[^a-z]", "", key.removeprefix(prefix)))
        if key in clock:
            cap = clock[key]
        elif not key.startswith(prefix) or cap is None:
            continue
        writable = "true" if spec.get("writable") else "false"
        unit = CLASS.capabilities[cap].unit if cap in CLASS.capabilities else ""
        lines.append(
            f'"{cap}" = {{ node = "{spec["node"]}", type = "{spec["type"]}", unit = "{unit}", '
            f"writable = {writable} }}"
        )
    for key, spec in doc["methods"].items():
        if key.startswith(prefix) and key.endswith("inoculate"):
            # the class names the arguments (the server calls them Volume, ViableCells)
            names = list(CLASS.methods["inoculate"].args)
            args = ", ".join(
                f'{{ name = "{n}", type = "{a["type"]}" }}'
                for n, a in zip(names, spec["args"], strict=True)
            )
            lines += [
                "",
                "[methods.inoculate]",
                f'object = "{spec["object"]}"',
                f'node = "{spec["node"]}"',
                f"args = [{args}]",
            ]
    return "\n".join(lines) + "\n"


@pytest.mark.asyncio(loop_scope="function")
async def test_discovered_profile_after_mapping_runs_a_culture(tmp_path: Path) -> None:
    async with BioreactorServer(
        ["BR-01", "BR-02"], url="opc.tcp://127.0.0.1:0/disc", time_scale=2000.0
    ) as server:
        found = await discover(server.endpoint)
        draft = draft_profile(found, "br")
        assert '"bioreactors.br_01.temperature.sp" = { node = "s=BR-01.Temperature.SP"' in draft
        assert 'type = "Double", unit = "°C", writable = true' in draft  # EUInformation
        (tmp_path / "draft.toml").write_text(draft, encoding="utf-8")
        assert len(load_profile(tmp_path / "draft.toml").tags) == len(found.variables)
        mapped = tmp_path / "mapped.toml"
        mapped.write_text(engineer_maps(draft, "BR-02"), encoding="utf-8")
        profile = load_profile(mapped)
        assert set(CLASS.capabilities) <= set(profile.tags)
        unit = UnitConfig("BR-02", "rocking_bioreactor", str(mapped), server.endpoint, {})
        plant = Plant("disc", "", "simulation", 2000.0, (unit,), (), "disc-plant")
        controller = Controller(plant, f"sqlite:///{tmp_path / 'd.sqlite'}", user="tester")
        await controller.start()
        try:
            run = await controller.create_batch(load_recipe(RECIPE))
            assert await asyncio.wait_for(controller.run(run), 120) is State.COMPLETE
            assert controller.store is not None
            entries = read_journal(controller.store, run.control.batch_id)
            created = entries[0].data["equipment"]["bioreactor"]
            assert created["profile_sha256"] == profile.sha256
            assert created["profile_content"] == mapped.read_text(encoding="utf-8")
            assert verify_batch(controller.store, run.control.batch_id).ok
        finally:
            await controller.stop()


def test_discover_command_names_an_unreachable_server(tmp_path: Path) -> None:
    from click.testing import CliRunner

    result = CliRunner().invoke(profile_discover, ["opc.tcp://127.0.0.1:9/none"])
    assert result.exit_code == 1
    assert result.output.startswith("error: opc.tcp://127.0.0.1:9/none: cannot connect")
