"""The controller's OPC UA address space, browsed by an independent client (asyncua's
`Client`, as `uals`/`uaread` are): a running batch is an object whose state, recipe and
unit values (the temperature PV and SP) can be read without calling a method; the
object follows the batch live (Held with the operator's reason after a hold)."""

from __future__ import annotations

import asyncio
import signal
import time
from pathlib import Path

import pytest
from asyncua import Client, Node, ua

from cellbatch.service_client import call
from controller.service import NAMESPACE
from recipes import load_recipe
from tests.e2e.test_service import PROMPTS, Serve
from tests.e2e.test_service import setup as setup  # the fixture

pytestmark = [pytest.mark.e2e]


def browsed_recipe(folder: Path) -> Path:
    """The prompts recipe with a temperature CPP and its setpoint written first: the
    batch then waits at its first prompt (nobody answers), Running, for as long as the
    test needs, whatever an earlier test did to the shared vessel."""
    text = (
        PROMPTS.read_text()
        .replace(
            "equipment:\n",
            "formula:\n  temperature: {value: 37.0, unit: degC, min: 30, max: 40}\n"
            "monitors:\n"
            "  - name: temperature\n    unit: bioreactor\n    tag: temperature.pv\n"
            "    engineering_unit: degC\n    alert: {low: 36.5, high: 37.5}\n"
            "    action: {low: 36.0, high: 38.0}\n    delay: 10 min\n    on_action: alarm\n"
            "equipment:\n",
            1,
        )
        .replace(
            "          phases:\n            - name: confirm_bag\n",
            "          phases:\n"
            "            - name: conditions\n              type: setpoint\n"
            "              set: {temperature.sp: $temperature}\n"
            "            - name: confirm_bag\n",
            1,
        )
    )
    assert "conditions" in text and "monitors:" in text
    recipe = folder / "browsed.yaml"
    recipe.write_text(text)
    return recipe


async def _until_read(node: Node, wanted: object, limit_s: float = 30) -> object:
    """Read `node` until it equals `wanted` (or, with wanted None, has a good value)."""
    deadline = time.monotonic() + limit_s
    seen: object = None
    while time.monotonic() < deadline:
        value = await node.read_data_value(raise_on_bad_status=False)
        seen = value.Value.Value if value.Value is not None else None
        good = value.StatusCode is None or value.StatusCode.is_good()
        if (wanted is None and good) or (wanted is not None and seen == wanted):
            return seen
        await asyncio.sleep(0.2)
    raise AssertionError(f"{node} stayed {seen!r}, wanted {wanted!r}")


async def test_a_client_browses_a_running_batch(
    setup: tuple[Path, Path, str], tmp_path: Path
) -> None:
    plant, db, endpoint = setup
    recipe = load_recipe(browsed_recipe(tmp_path)).content_hash  # Start names a library recipe
    serve = Serve(plant, db, endpoint, recipes=(tmp_path,))
    try:
        started = await call(endpoint, "Start", recipe, "{}", "COI-UA-1", "olga", "")
        assert started["ok"], started
        batch_id = started["batch_id"]
        async with Client(endpoint, timeout=10) as client:
            idx = await client.get_namespace_index(NAMESPACE)
            folder = await client.nodes.objects.get_child([f"{idx}:Batches"])
            deadline = time.monotonic() + 30
            names: list[str] = []
            while batch_id not in names and time.monotonic() < deadline:
                names = [(await n.read_browse_name()).Name for n in await folder.get_children()]
                await asyncio.sleep(0.2)
            assert batch_id in names
            batch = await folder.get_child([f"{idx}:{batch_id}"])
            assert await (await batch.get_child([f"{idx}:Recipe"])).read_value() == "prompts"
            assert await (await batch.get_child([f"{idx}:COI"])).read_value() == "COI-UA-1"
            state = await batch.get_child([f"{idx}:State"])
            await _until_read(state, "Running")
            cpp = await batch.get_child([f"{idx}:Units", f"{idx}:bioreactor", f"{idx}:temperature"])
            children = {(await n.read_browse_name()).Name for n in await cpp.get_children()}
            assert {"PV", "SP", "EngineeringUnit", "AlertLow", "ActionHigh"} <= children
            pv = await _until_read(await cpp.get_child([f"{idx}:PV"]), None)
            assert isinstance(pv, float) and 0.0 < pv < 60.0
            assert await (await cpp.get_child([f"{idx}:EngineeringUnit"])).read_value() == "degC"
            assert await (await cpp.get_child([f"{idx}:ActionHigh"])).read_value() == 38.0
            sp = await cpp.get_child([f"{idx}:SP"])
            assert await _until_read(sp, 37.0) == 37.0  # the recipe's setpoint phase wrote it
            prompts = await (await batch.get_child([f"{idx}:OpenPrompts"])).read_value()
            assert len(prompts) == 1 and "bench/receive/confirm_bag" in prompts[0]
            held = await call(endpoint, "Command", batch_id, "hold", "olga", "", "bag check")
            assert held["ok"], held
            await _until_read(state, "Held")
            why = await (await batch.get_child([f"{idx}:Why"])).read_value()
            assert why == "hold by olga: bag check"
            with pytest.raises(ua.UaStatusCodeError):  # read-only to clients
                await state.write_value(ua.Variant("Running", ua.VariantType.String))
        await call(endpoint, "Command", batch_id, "abort", "olga", "", "end of test")
    finally:
        assert serve.end(signal.SIGTERM) == 0
