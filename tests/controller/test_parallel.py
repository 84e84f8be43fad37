"""Parallel branches (AND split/join): branches run at once, join before the next
step, and hold, restart and stop act on every branch."""

from __future__ import annotations

import asyncio
from datetime import datetime
from pathlib import Path
from typing import Any

from controller.batch import BatchRun, ControlRecipe
from controller.clock import ScaledClock
from controller.isa88 import Command, State
from controller.recorder import BatchRecorder
from drivers import DevicePool
from ebr import Journal, Store, read_journal
from recipes import Parallel, load_recipe

RECIPE = load_recipe(Path(__file__).parent / "recipes" / "parallel.yaml")


def test_the_recipe_keeps_its_flow() -> None:
    (op, tail) = RECIPE.procedure.unit_procedures[0].operations
    assert [p.name for p in op.phases] == ["before", "long_1", "long_2", "short", "after"]
    before, block, after = op.steps
    assert (before, after) == ("before", "after")
    assert isinstance(block, Parallel)
    assert block.branches == (("long_branch", ("long_1", "long_2")), ("short_branch", ("short",)))
    assert tail.steps == ("last",)


async def _run(tmp_path: Path, script: Any = None) -> tuple[State, list[Any]]:
    store = Store.open(f"sqlite:///{tmp_path / 'par.sqlite'}")
    journal = Journal(store)
    await journal.start()
    pool = DevicePool()
    device = pool.open("V", "rocking_bioreactor_opcua", "opc.tcp://127.0.0.1:9/x", {"vessel": "V"})
    clock = ScaledClock(3000.0)  # 30 simulated minutes = 0.6 s
    control = ControlRecipe("B-PAR", RECIPE, {}, {"vessel": device}, "COI", True)
    await journal.open_batch(
        "B-PAR",
        recipe_name="parallel",
        recipe_version="0.1.0",
        recipe_hash=RECIPE.content_hash,
        product="Test",
        coi="COI",
        simulation=True,
        data={},
    )
    run = BatchRun(control, BatchRecorder(journal, "B-PAR", clock), clock)
    task = asyncio.create_task(run.run())
    if script is not None:
        await script(run)
    state = await asyncio.wait_for(task, 20)
    await journal.stop()
    await pool.close()
    entries = read_journal(store, "B-PAR")
    store.close()
    return state, entries


def _spans(entries: list[Any]) -> dict[str, tuple[datetime, datetime]]:
    first: dict[str, datetime] = {}
    last: dict[str, datetime] = {}
    for e in entries:
        if e.kind == "element.state":
            t = datetime.fromisoformat(e.data["t"].replace("Z", "+00:00"))
            name = e.data["element"].rsplit("/", 1)[-1]
            first.setdefault(name, t)
            last[name] = t
    return {k: (first[k], last[k]) for k in first}


async def test_branches_overlap_and_join(tmp_path: Path) -> None:
    state, entries = await _run(tmp_path)
    assert state is State.COMPLETE
    spans = _spans(entries)
    # both branches start after "before" and overlap each other
    assert spans["long_1"][0] >= spans["before"][1]
    assert spans["short"][0] >= spans["before"][1]
    assert spans["short"][0] < spans["long_1"][1]
    # the join: "after" starts only when the longer branch has ended
    assert spans["after"][0] >= spans["long_2"][1]
    assert spans["after"][0] >= spans["short"][1]
    # the block took about the longer branch (60 min), not the sum (80 min)
    block = (spans["after"][0] - spans["before"][1]).total_seconds()
    assert 60 * 60 <= block < 75 * 60


async def test_hold_reaches_every_branch_and_restart_resumes_both(tmp_path: Path) -> None:
    async def script(run: BatchRun) -> None:
        while not any(el.path.endswith("/short") for el in run.chain):
            run.state_changed.clear()
            await asyncio.wait_for(run.state_changed.wait(), 10)
        assert await run.command(Command.HOLD, user="op1", reason="test")
        phases = [el for el in run.chain if el.level == "phase"]
        assert {el.path.rsplit("/", 1)[-1] for el in phases} == {"long_1", "short"}
        assert {el.current for el in run.chain} == {State.HELD}
        assert await run.command(Command.RESTART, user="op1", reason="test")

    state, entries = await _run(tmp_path, script)
    assert state is State.COMPLETE
    for phase in ("long_1", "short"):
        changes = [
            e.data["to"]
            for e in entries
            if e.kind == "element.state" and e.data["element"].endswith("/" + phase)
        ]
        assert changes == ["Running", "Holding", "Held", "Restarting", "Running", "Complete"]


async def test_stop_ends_every_branch(tmp_path: Path) -> None:
    async def script(run: BatchRun) -> None:
        while not any(el.path.endswith("/short") for el in run.chain):
            run.state_changed.clear()
            await asyncio.wait_for(run.state_changed.wait(), 10)
        assert await run.command(Command.STOP, user="sup1", reason="test")

    state, entries = await _run(tmp_path, script)
    assert state is State.STOPPED
    started = {
        e.data["element"].rsplit("/", 1)[-1]
        for e in entries
        if e.kind == "element.state" and e.data["to"] == "Running"
    }
    assert "long_2" not in started and "after" not in started and "last" not in started
