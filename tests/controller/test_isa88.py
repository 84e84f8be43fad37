"""The ISA-88 state table: every state × command pair is allowed exactly as the table says."""

from __future__ import annotations

import itertools

import pytest

from controller.isa88 import COMMAND_TABLE, FINISHES, Command, Element, State

# The table from shared/notes/domain.md, written out independently of the code.
ALLOWED = {
    "start": {"Idle"},
    "pause": {"Running"},
    "resume": {"Paused"},
    "hold": {"Running", "Pausing", "Paused", "Restarting"},
    "restart": {"Held"},
    "stop": {"Running", "Pausing", "Paused", "Holding", "Held", "Restarting"},
    "abort": {s.value for s in State} - {"Idle", "Complete", "Aborting", "Aborted"},
    "reset": {"Complete", "Stopped", "Aborted"},
}
LEADS_TO = {
    "start": "Running",
    "pause": "Pausing",
    "resume": "Running",
    "hold": "Holding",
    "restart": "Restarting",
    "stop": "Stopping",
    "abort": "Aborting",
    "reset": "Idle",
}


def test_twelve_states_eight_commands() -> None:
    assert len(State) == 12
    assert len(Command) == 8
    assert {c.value for c in COMMAND_TABLE} == set(ALLOWED)


# A path of triggers from Idle that reaches each state.
PATHS: dict[str, list[str]] = {
    "Idle": [],
    "Running": ["start"],
    "Complete": ["start", "complete"],
    "Pausing": ["start", "pause"],
    "Paused": ["start", "pause", "finish"],
    "Holding": ["start", "hold"],
    "Held": ["start", "hold", "finish"],
    "Restarting": ["start", "hold", "finish", "restart"],
    "Stopping": ["start", "stop"],
    "Stopped": ["start", "stop", "finish"],
    "Aborting": ["start", "abort"],
    "Aborted": ["start", "abort", "finish"],
}


async def _element_in(state: str, log: list[tuple[str, str, str]]) -> Element:
    async def listener(el: Element, src: State, dst: State, trigger: str) -> None:
        log.append((src.value, dst.value, trigger))

    el = Element("batch-1", "batch", listener)
    for trigger in PATHS[state]:
        assert await el.apply(trigger), (state, trigger)
    assert el.state == state
    return el


@pytest.mark.parametrize(("state", "command"), list(itertools.product(PATHS, ALLOWED)))
async def test_command_allowed_exactly_per_table(state: str, command: str) -> None:
    log: list[tuple[str, str, str]] = []
    el = await _element_in(state, log)
    expected = state in ALLOWED[command]
    assert el.allows(Command(command)) is expected
    before = len(log)
    assert await el.apply(command) is expected
    if expected:
        assert el.state == LEADS_TO[command]
        assert log[-1] == (state, LEADS_TO[command], command)
    else:
        assert el.state == state
        assert len(log) == before
    el.release()


async def test_transient_states_finish_by_themselves() -> None:
    for transient, final in FINISHES.items():
        el = await _element_in(transient.value, [])
        assert await el.apply("finish")
        assert el.current is final
        el.release()


async def test_complete_only_from_running() -> None:
    for state in PATHS:
        el = await _element_in(state, [])
        assert await el.apply("complete") is (state == "Running")
        el.release()
