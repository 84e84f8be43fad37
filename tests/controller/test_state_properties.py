"""Property test: random operator command sequences against a running batch.

Whatever the order and timing, no element leaves the ISA-88 table, every refusal
is journaled, a hold reaches every active element, and replaying the journal
gives the batch's state.
"""

from __future__ import annotations

import asyncio
import tempfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from controller.batch import BatchRun, ControlRecipe
from controller.clock import ScaledClock
from controller.isa88 import COMMAND_TABLE, FINAL_STATES, FINISHES, Command, State
from controller.recorder import BatchRecorder
from drivers import DevicePool
from ebr import Journal, Store, read_journal
from recipes import load_recipe

RECIPE = load_recipe(Path(__file__).parent / "recipes" / "hold-only.yaml")
OPERATOR_COMMANDS = [c for c in Command if c not in (Command.START, Command.RESET)]
STEADY = {State.RUNNING, State.HELD, State.PAUSED, *FINAL_STATES}

commands = st.lists(
    st.tuples(
        st.sampled_from(OPERATOR_COMMANDS),
        st.integers(min_value=0, max_value=3),
        st.booleans(),  # given to the active phase instead of the batch
    ),
    min_size=1,
    max_size=12,
)


async def _scenario(script: list[tuple[Command, int, bool]], db: Path) -> None:
    store = Store.open(f"sqlite:///{db}")
    journal = Journal(store)
    await journal.start()
    pool = DevicePool()
    # hold_for never touches the instrument: the device is bound but never connected.
    device = pool.open(
        "V-1", "rocking_bioreactor_opcua", "opc.tcp://127.0.0.1:9/none", {"vessel": "V-1"}
    )
    clock = ScaledClock(60_000.0)  # 20 simulated minutes = 20 ms
    control = ControlRecipe("B-PROP", RECIPE, {}, {"vessel": device}, "COI-P", True)
    await journal.open_batch(
        "B-PROP",
        recipe_name="hold-only",
        recipe_version="0.1.0",
        recipe_hash=RECIPE.content_hash,
        product="Test",
        coi="COI-P",
        simulation=True,
        data={},
    )
    run = BatchRun(control, BatchRecorder(journal, "B-PROP", clock), clock)
    task = asyncio.create_task(run.run())
    refusals = 0
    try:
        while run.state is State.IDLE:
            run.state_changed.clear()
            await asyncio.wait_for(run.state_changed.wait(), 5)
        for command, pause_ms, at_phase in script:
            await asyncio.sleep(pause_ms / 1000)
            phases = [el for el in run.chain if el.level == "phase"]
            target = phases[0] if at_phase and phases else run.batch
            scoped = target is not run.batch and command in (Command.PAUSE, Command.RESUME)
            parents_run = all(
                el.current is State.RUNNING
                for el in run.chain
                if el is run.batch or target.path.startswith(el.path + "/")
            )
            allowed = target.allows(command) and (
                parents_run if scoped else run.batch.allows(command)
            )
            batch_before = run.batch.current
            accepted = await run.command(
                command, user="prop", reason="property", element=target.path
            )
            assert accepted is allowed, (command, target, run.chain)
            refusals += not accepted
            states = [el.current for el in run.chain]
            assert all(isinstance(s, State) for s in states)
            if accepted and command is Command.HOLD:
                assert set(states) == {State.HELD}, states  # a hold reaches every element
            if accepted and scoped:
                assert run.batch.current is batch_before, "a scoped command leaves the batch"
            if run.state in STEADY:
                assert not set(states) & set(FINISHES), states  # nothing left mid-transition
        if run.state not in FINAL_STATES:
            await run.command(Command.ABORT, user="prop", reason="test")
        await asyncio.wait_for(task, 10)
        final = run.state  # the table lets an ended batch be aborted, after run() returned
    finally:
        if not task.done():
            task.cancel()
        await journal.stop()
        await pool.close()

    entries = read_journal(store, "B-PROP")
    store.close()
    assert final in FINAL_STATES
    assert sum(e.kind == "command.refused" for e in entries) == refusals
    for e in entries:
        if e.kind == "command.refused":
            command, state = Command(e.data["command"]), State(e.data["state"])
            if e.data["blocked_by"] != e.data["element"] and command in (
                Command.PAUSE,
                Command.RESUME,
            ):
                assert state is not State.RUNNING  # a parent that is not running
            else:
                assert state not in COMMAND_TABLE[command][0]
    # Replaying the journal's batch state changes gives the batch's state, and every
    # recorded change of every element is a transition of the table.
    replayed = State.IDLE
    for e in entries:
        if e.kind == "batch.state":
            assert State(e.data["from"]) is replayed
            replayed = State(e.data["to"])
        if e.kind.endswith(".state"):
            src, dst, trigger = State(e.data["from"]), State(e.data["to"]), e.data["trigger"]
            if trigger == "finish":
                assert FINISHES[src] is dst
            elif trigger == "complete":
                assert (src, dst) == (State.RUNNING, State.COMPLETE)
            else:
                allowed_from, leads_to = COMMAND_TABLE[Command(trigger)]
                assert src in allowed_from and dst is leads_to
    assert replayed is final


@pytest.mark.slow
@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(script=commands)
def test_random_command_sequences_keep_the_state_model(
    script: list[tuple[Command, int, bool]],
) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        asyncio.run(_scenario(script, Path(tmp) / "prop.sqlite"))
