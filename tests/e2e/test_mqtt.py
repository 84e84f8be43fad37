"""e2e: `cellbatch run` with an `[mqtt]` table publishes a batch a subscriber sees."""

from __future__ import annotations

import asyncio
import secrets
import sys
from pathlib import Path

import pytest

from tests.controller.test_publish import Subscriber, _clear_retained, needs_broker
from tests.e2e.conftest import ROOT, plant_for_unit

SHORT = ROOT / "tests" / "controller" / "recipes" / "short-culture.yaml"


@needs_broker
@pytest.mark.asyncio
async def test_run_publishes_states_and_values(served_url: str, tmp_path: Path) -> None:
    prefix = f"cellbatch-test/{secrets.token_hex(4)}"
    plant = plant_for_unit(tmp_path / "plant.toml", served_url, "MQTT-01")
    with plant.open("a") as f:
        f.write(f'\n[mqtt]\nurl = "mqtt://127.0.0.1:1883"\nprefix = "{prefix}"\n')
    db = f"sqlite:///{tmp_path / 'mqtt.sqlite'}"
    try:
        async with Subscriber(prefix) as sub:
            proc = await asyncio.create_subprocess_exec(
                *(sys.executable, "-m", "cellbatch", "run", str(SHORT), "--plant", str(plant)),
                *("--db", db, "--param", "culture_time=20"),
                cwd=ROOT,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE,
            )
            out, err = await asyncio.wait_for(proc.communicate(), 90)
            assert proc.returncode == 0, err.decode()
            batch = out.decode().splitlines()[0].removeprefix("batch ")
            # the controller flushed before exiting: everything is at the broker
            await sub.until(lambda: bool(sub.on("controller/status")[1:]))
            states = [p["state"] for p in sub.on(f"batches/{batch}/state")]
            assert states[0] == "Idle" and states[-1] == "Complete", states
            assert "Running" in states
            temps = sub.on("units/MQTT-01/temperature/pv")
            assert temps and {p["batch"] for p in temps} == {batch}
            assert sub.on("controller/status")[-1]["online"] is False
    finally:
        await _clear_retained(prefix)
