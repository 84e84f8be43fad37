"""Configuration pinned in the record: batch.created holds the plant file's and each
bound profile's content and SHA-256; a batch resumed with a changed profile journals
the difference, and review flags it."""

from __future__ import annotations

import asyncio
import contextlib
from pathlib import Path

import pytest

from controller.isa88 import Command, State
from controller.plant import load_plant
from controller.session import Controller
from drivers.profile import PROFILE_DIR
from ebr import read_journal, verify_batch
from ebr.review import load_rules, review
from recipes import load_recipe
from simulators.bioreactor.opcua_server import BioreactorServer

pytestmark = [pytest.mark.asyncio(loop_scope="function"), pytest.mark.slow]
RECIPE = Path(__file__).parent / "recipes" / "short-culture.yaml"


async def test_resume_with_a_changed_profile_is_journaled(tmp_path: Path) -> None:
    profile = tmp_path / "br.toml"
    original = (PROFILE_DIR / "rocking_bioreactor_opcua.toml").read_text(encoding="utf-8")
    profile.write_text(original, encoding="utf-8")
    async with BioreactorServer(["LV-01"], url="opc.tcp://127.0.0.1:0/pin", time_scale=600) as srv:
        plant_file = tmp_path / "plant.toml"
        plant_file.write_text(
            '[plant]\nname = "pin"\nmode = "simulation"\n\n[[units]]\nname = "LV-01"\n'
            f'class = "rocking_bioreactor"\nprofile = "br.toml"\nendpoint = "{srv.endpoint}"\n'
            'address = { vessel = "LV-01" }\n',
            encoding="utf-8",
        )
        db = f"sqlite:///{tmp_path / 'pin.sqlite'}"
        first = Controller(load_plant(plant_file), db, user="tester")
        await first.start()
        run = await first.create_batch(load_recipe(RECIPE), parameters={"culture_time": 600})
        task = asyncio.create_task(first.run(run))
        while not any(el.path == "culture/grow/culture" for el in run.chain):
            run.state_changed.clear()
            await asyncio.wait_for(run.state_changed.wait(), 60)
        task.cancel()  # the controller dies mid-culture
        with contextlib.suppress(asyncio.CancelledError):
            await task
        await first.stop()
        batch = run.control.batch_id
        # the engineer edits the profile while the batch is down
        profile.write_text(
            original.replace(
                'type = "Double", unit = "pH" }', 'type = "Double", unit = "pH", period_s = 30 }', 1
            ),
            encoding="utf-8",
        )
        second = Controller(load_plant(plant_file), db, user="tester")
        await second.start()
        try:
            resumed = await second.resume_batch(batch)
            rtask = asyncio.create_task(second.run(resumed))
            await asyncio.wait_for(resumed.ready.wait(), 30)
            assert await resumed.command(Command.ABORT, user="sup1", reason="end of test")
            assert await asyncio.wait_for(rtask, 30) is State.ABORTED
            assert second.store is not None
            entries = read_journal(second.store, batch)
            created = entries[0].data
            assert created["equipment"]["bioreactor"]["profile_content"] == original
            assert created["plant"]["content"] == plant_file.read_text(encoding="utf-8")
            (changed,) = [e.data for e in entries if e.kind == "config.changed"]
            assert changed["file"].startswith("profile rocking_bioreactor_opcua of unit LV-01")
            assert changed["was_sha256"] != changed["sha256"]
            assert '+"ph.pv"' in changed["diff"] and "period_s = 30" in changed["diff"]
            found = [
                f for f in review(second.store, batch, load_rules()) if "changed between" in f.title
            ]
            assert found and "period_s = 30" in found[0].detail
            assert verify_batch(second.store, batch).ok
        finally:
            await second.stop()
