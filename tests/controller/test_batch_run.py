"""The engine over real OPC UA: a short culture run to completion, held and restarted,
stopped, aborted, failed and held by a monitor; the record tells each story."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio

from controller.batch import BatchRun
from controller.isa88 import Command, State
from controller.plant import Plant, UnitConfig
from controller.session import BatchSetupError, Controller
from ebr import read_journal, read_samples, verify_batch
from ebr.record.query import list_batches
from recipes import load_recipe
from simulators.bioreactor.opcua_server import BioreactorServer

pytestmark = [pytest.mark.asyncio(loop_scope="session"), pytest.mark.slow]
RECIPE = Path(__file__).parent / "recipes" / "short-culture.yaml"


def plant_for(server: BioreactorServer, *vessels: str) -> Plant:
    units = tuple(
        UnitConfig(
            v, "rocking_bioreactor", "rocking_bioreactor_opcua", server.endpoint, {"vessel": v}
        )
        for v in vessels
    )
    return Plant("test", "", "simulation", server.clock.scale, units, (), "test-plant")


@pytest_asyncio.fixture(loop_scope="session")
async def make_controller(tmp_path: Path) -> AsyncIterator[Callable[..., Any]]:
    made: list[Controller] = []

    async def make(plant: Plant) -> Controller:
        controller = Controller(plant, f"sqlite:///{tmp_path / 'store.sqlite'}", user="tester")
        await controller.start()
        made.append(controller)
        return controller

    yield make
    for controller in made:
        await controller.stop()


async def wait_phase(run: BatchRun, path: str, state: State = State.RUNNING) -> None:
    """Wait (bounded) until the element at ``path`` is in ``state``."""

    async def reached() -> None:
        while not any(el.path == path and el.current is state for el in run.chain):
            run.state_changed.clear()
            await run.state_changed.wait()

    await asyncio.wait_for(reached(), 60)  # a bound for a loaded machine, not a pace


def journal_of(controller: Controller, batch_id: str) -> list[Any]:
    assert controller.store is not None
    return list(read_journal(controller.store, batch_id))


def states_of(entries: list[Any], element: str) -> list[str]:
    return [
        e.data["to"] for e in entries if e.kind.endswith(".state") and e.data["element"] == element
    ]


async def test_runs_to_completion_and_records_everything(
    bioreactors: BioreactorServer, make_controller: Callable[..., Any]
) -> None:
    controller = await make_controller(plant_for(bioreactors, "SV-04"))
    run = await controller.create_batch(load_recipe(RECIPE), coi="COI-T-1")
    assert await asyncio.wait_for(controller.run(run), 30) is State.COMPLETE
    entries = journal_of(controller, run.control.batch_id)
    kinds = [e.kind for e in entries]
    assert kinds[0] == "batch.created"
    created = entries[0].data
    assert created["recipe"]["name"] == "short-culture"
    assert created["recipe"]["content_hash"] == load_recipe(RECIPE).content_hash
    assert created["equipment"]["bioreactor"]["unit"] == "SV-04"
    assert states_of(entries, run.control.batch_id) == ["Running", "Complete"]
    assert states_of(entries, "culture/grow/culture") == ["Running", "Complete"]
    # Every write: intent (with old and new value) before the result, paired by seq.
    intents = {e.seq: e for e in entries if e.kind == "write.intent"}
    results = [e for e in entries if e.kind == "write.result"]
    assert len(intents) == len(results) == 5
    for result in results:
        intent = intents[result.data["intent"]]
        assert intent.seq < result.seq
        assert result.data["ok"] is True
        assert "old" in intent.data and "new" in intent.data
    assert any(e.kind == "method.result" and e.data["ok"] for e in entries)
    assert "samples.block" in kinds
    assert controller.store is not None
    assert verify_batch(controller.store, run.control.batch_id).ok
    assert not controller.allocations, "units are released at the end"


async def test_hold_and_restart_resume_the_held_phase(
    bioreactors: BioreactorServer, make_controller: Callable[..., Any]
) -> None:
    controller = await make_controller(plant_for(bioreactors, "SV-05"))
    run = await controller.create_batch(load_recipe(RECIPE))
    task = asyncio.create_task(controller.run(run))
    await wait_phase(run, "culture/grow/culture")
    assert await run.command(Command.HOLD, user="op1", reason="check bag")
    assert run.state is State.HELD
    assert [el.current for el in run.chain] == [State.HELD] * 4
    assert not await run.command(Command.RESUME, user="op1"), "resume is not allowed from Held"
    await asyncio.sleep(0.3)  # 10 simulated minutes held
    assert await run.command(Command.RESTART, user="op1", reason="test")
    assert await asyncio.wait_for(task, 30) is State.COMPLETE
    entries = journal_of(controller, run.control.batch_id)
    assert states_of(entries, "culture/grow/culture") == [
        "Running",
        "Holding",
        "Held",
        "Restarting",
        "Running",
        "Complete",
    ]
    assert states_of(entries, run.control.batch_id) == [
        "Running",
        "Holding",
        "Held",
        "Restarting",
        "Running",
        "Complete",
    ]
    refused = [e for e in entries if e.kind == "command.refused"]
    assert refused and refused[0].data["command"] == "resume" and refused[0].data["state"] == "Held"
    # The phase ran its full 45 minutes of process time outside the hold.
    progress = [
        e
        for e in entries
        if e.kind == "phase.progress" and e.data["element"] == "culture/grow/culture"
    ]
    assert progress[-1].data["progress"]["elapsed_s"] == pytest.approx(45 * 60)
    # The inoculation was not repeated by the restart.
    assert sum(e.kind == "method.intent" for e in entries) == 1
    # Holding logic stopped the rocking while held; restart put the rate back.
    rocking = [
        (e.data["old"], e.data["new"])
        for e in entries
        if e.kind == "write.intent" and e.data["element"] == "culture/grow/culture"
    ]
    assert rocking == [(8.0, 0.0), (0.0, 8.0)]


@pytest.mark.parametrize(
    ("command", "final"), [(Command.STOP, State.STOPPED), (Command.ABORT, State.ABORTED)]
)
async def test_stop_and_abort_end_the_batch(
    bioreactors: BioreactorServer,
    make_controller: Callable[..., Any],
    command: Command,
    final: State,
) -> None:
    vessel = "SV-06" if command is Command.STOP else "SV-07"
    controller = await make_controller(plant_for(bioreactors, vessel))
    run = await controller.create_batch(load_recipe(RECIPE))
    task = asyncio.create_task(controller.run(run))
    await wait_phase(run, "culture/grow/culture")
    assert await run.command(command, user="sup1", reason="test")
    assert await asyncio.wait_for(task, 10) is final
    entries = journal_of(controller, run.control.batch_id)
    assert states_of(entries, run.control.batch_id)[-1] == final.value
    assert states_of(entries, "culture/grow/culture")[-1] == final.value
    assert not states_of(entries, "culture/grow/stop_rocking"), "no step starts after the end"


async def test_refused_write_holds_the_batch(
    bioreactors: BioreactorServer, make_controller: Callable[..., Any]
) -> None:
    controller = await make_controller(plant_for(bioreactors, "SV-08"))
    # 45 °C is inside the recipe's limits but outside what the instrument accepts.
    run = await controller.create_batch(load_recipe(RECIPE), parameters={"temperature": 45.0})
    task = asyncio.create_task(controller.run(run))
    await wait_phase(run, run.control.batch_id, State.HELD)
    assert [el.current for el in run.chain] == [State.HELD] * 4
    assert run.chain[-1].path == "culture/setup/conditions"
    entries = journal_of(controller, run.control.batch_id)
    failed = [e for e in entries if e.kind == "write.result" and not e.data["ok"]]
    assert failed and "BadOutOfRange" in failed[0].data["error"]
    assert any(e.kind == "phase.failed" for e in entries)
    assert await run.command(Command.STOP, user="sup1", reason="test")
    assert await asyncio.wait_for(task, 10) is State.STOPPED


async def test_action_limit_breach_holds_the_batch(
    bioreactors: BioreactorServer, make_controller: Callable[..., Any]
) -> None:
    controller = await make_controller(plant_for(bioreactors, "SV-09"))
    run = await controller.create_batch(load_recipe(RECIPE))
    task = asyncio.create_task(controller.run(run))
    await wait_phase(run, "culture/grow/culture")
    bioreactors.vessel("SV-09").force("Temperature.PV", 39.0)
    try:
        await wait_phase(run, run.control.batch_id, State.HELD)
    finally:
        bioreactors.vessel("SV-09").force("Temperature.PV", None)
    entries = journal_of(controller, run.control.batch_id)
    raised = [e for e in entries if e.kind == "alarm.raised"]
    assert (
        raised
        and raised[-1].data["level"] == "action"
        and raised[-1].data["monitor"] == "temperature"
    )
    accepted = [e for e in entries if e.kind == "command.accepted" and e.data["command"] == "hold"]
    assert accepted[0].data["user"].startswith("engine:monitor")
    # Every raised alarm waits for a person's acknowledgement, once.
    assert sorted(run.open_alarms) == [e.seq for e in raised]
    action = raised[-1].seq
    assert await run.acknowledge(action, user="op1", comment="seen, investigating")
    assert not await run.acknowledge(action, user="op2")
    assert not await run.acknowledge(10**6, user="op2")
    assert action not in run.open_alarms
    entries = journal_of(controller, run.control.batch_id)
    (ack,) = [e for e in entries if e.kind == "alarm.acknowledged"]
    assert ack.data["alarm"] == action and ack.data["user"] == "op1"
    assert ack.data["monitor"] == "temperature" and ack.data["comment"] == "seen, investigating"
    refused = [e for e in entries if e.kind == "command.refused"]
    assert [e.data["command"] for e in refused] == ["acknowledge", "acknowledge"]
    assert await run.command(Command.ABORT, user="sup1", reason="test")
    assert await asyncio.wait_for(task, 10) is State.ABORTED
    # Held within the monitor's delay plus two sample periods of the breach starting.
    assert controller.store is not None
    breach = min(
        datetime.fromisoformat(x.time.replace("Z", "+00:00"))
        for x in read_samples(controller.store, run.control.batch_id)
        if x.tag == "bioreactor.temperature.pv" and (x.value or 0) >= 38.9
    )
    held = datetime.fromisoformat(accepted[0].data["t"].replace("Z", "+00:00"))
    delay = load_recipe(RECIPE).monitors[0].delay_s
    assert 0 <= (held - breach).total_seconds() <= delay + 2 * 60


async def test_parameter_outside_limits_and_busy_units_are_refused(
    bioreactors: BioreactorServer, make_controller: Callable[..., Any]
) -> None:
    controller = await make_controller(plant_for(bioreactors, "SV-10"))
    recipe = load_recipe(RECIPE)
    with pytest.raises(BatchSetupError, match="outside its limits"):
        await controller.create_batch(recipe, parameters={"temperature": 60.0})
    with pytest.raises(BatchSetupError, match="unknown parameter"):
        await controller.create_batch(recipe, parameters={"nope": 1.0})
    first = await controller.create_batch(recipe)
    with pytest.raises(BatchSetupError, match="no free unit"):
        await controller.create_batch(recipe)
    controller.release(first.control.batch_id)


async def test_ramp_moves_the_setpoint_in_equal_steps(
    bioreactors: BioreactorServer, make_controller: Callable[..., Any]
) -> None:
    controller = await make_controller(plant_for(bioreactors, "SV-01"))
    recipe = load_recipe(Path(__file__).parent / "recipes" / "ramp.yaml")
    run = await controller.create_batch(recipe)
    assert await asyncio.wait_for(controller.run(run), 30) is State.COMPLETE
    entries = journal_of(controller, run.control.batch_id)
    ramp = [
        e.data["new"]
        for e in entries
        if e.kind == "write.intent" and e.data["element"] == "up/cool/cool_down"
    ]
    assert ramp == pytest.approx([34.0, 33.0, 32.0, 31.0, 30.0])
    times = [
        e.data["t"]
        for e in entries
        if e.kind == "write.intent" and e.data["element"] == "up/cool/cool_down"
    ]
    assert len(set(times)) == 5


class _PowerCut(Exception):
    """Stands in for the process dying right after an entry was committed."""


async def test_resume_after_the_last_phase_of_an_operation_completed(
    bioreactors: BioreactorServer, make_controller: Callable[..., Any]
) -> None:
    """The controller dies after the inoculation phase completed but before its operation
    did: the resumed batch comes back Held, says it is ready for a restart (it used to
    wait for nothing), and finishes."""
    plant = plant_for(bioreactors, "SV-11")
    first = await make_controller(plant)
    run = await first.create_batch(load_recipe(RECIPE), coi="COI-T-CUT")
    batch_id = run.control.batch_id

    def cut(entry: Any) -> None:
        data = entry.data
        if data.get("element") == "culture/seed/inoculate" and data.get("to") == "Complete":
            raise _PowerCut

    run.recorder.listeners.append(cut)
    with pytest.raises(_PowerCut):
        await asyncio.wait_for(first.run(run), 30)
    await first.stop()  # the batch is no longer running: nothing more is journaled
    assert states_of(journal_of(first, batch_id), "culture/seed") == ["Running"]

    second = await make_controller(plant)
    resumed = await second.resume_batch(batch_id)
    task = asyncio.create_task(second.run(resumed))
    await asyncio.wait_for(resumed.ready.wait(), 10)
    assert resumed.state is State.HELD
    assert await resumed.command(Command.RESTART, user="tester", reason="after the cut")
    assert await asyncio.wait_for(task, 30) is State.COMPLETE
    entries = journal_of(second, batch_id)
    assert states_of(entries, "culture/seed")[-1] == "Complete"
    assert [e.kind for e in entries].count("method.intent") == 1


async def test_a_blank_chain_of_identity_is_refused_before_anything_binds(
    make_controller: Callable[..., Any], bioreactors: BioreactorServer
) -> None:
    controller = await make_controller(plant_for(bioreactors, "SV-13"))
    with pytest.raises(BatchSetupError, match="must not be blank"):
        await controller.create_batch(load_recipe(RECIPE), coi="   ")
    assert controller.store is not None
    assert list_batches(controller.store) == []  # nothing was recorded
