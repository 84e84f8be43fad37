"""The ISA-88 state model of a procedural element, on ``transitions`` state machines.

Twelve states, eight commands; anything outside the table is refused. The
"-ing" states (Pausing, Holding, Restarting, Stopping, Aborting) end by
themselves when the element's logic says so (``finish``), and Running ends in
Complete when the logic is done (``complete``).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from enum import StrEnum
from typing import Any

from transitions.extensions.asyncio import AsyncMachine


class State(StrEnum):
    """ISA-88 procedural element states."""

    IDLE = "Idle"
    RUNNING = "Running"
    COMPLETE = "Complete"
    PAUSING = "Pausing"
    PAUSED = "Paused"
    HOLDING = "Holding"
    HELD = "Held"
    RESTARTING = "Restarting"
    STOPPING = "Stopping"
    STOPPED = "Stopped"
    ABORTING = "Aborting"
    ABORTED = "Aborted"


class Command(StrEnum):
    """ISA-88 commands an operator (or the engine) may give."""

    START = "start"
    PAUSE = "pause"
    RESUME = "resume"
    HOLD = "hold"
    RESTART = "restart"
    STOP = "stop"
    ABORT = "abort"
    RESET = "reset"


S = State
#: command → (states it is allowed from, state it leads to)
COMMAND_TABLE: dict[Command, tuple[frozenset[State], State]] = {
    Command.START: (frozenset({S.IDLE}), S.RUNNING),
    Command.PAUSE: (frozenset({S.RUNNING}), S.PAUSING),
    Command.RESUME: (frozenset({S.PAUSED}), S.RUNNING),
    Command.HOLD: (frozenset({S.RUNNING, S.PAUSING, S.PAUSED, S.RESTARTING}), S.HOLDING),
    Command.RESTART: (frozenset({S.HELD}), S.RESTARTING),
    Command.STOP: (
        frozenset({S.RUNNING, S.PAUSING, S.PAUSED, S.HOLDING, S.HELD, S.RESTARTING}),
        S.STOPPING,
    ),
    Command.ABORT: (frozenset(State) - {S.IDLE, S.COMPLETE, S.ABORTING, S.ABORTED}, S.ABORTING),
    Command.RESET: (frozenset({S.COMPLETE, S.STOPPED, S.ABORTED}), S.IDLE),
}
#: transient state → the state it ends in by itself
FINISHES: dict[State, State] = {
    S.PAUSING: S.PAUSED,
    S.HOLDING: S.HELD,
    S.RESTARTING: S.RUNNING,
    S.STOPPING: S.STOPPED,
    S.ABORTING: S.ABORTED,
}
FINAL_STATES = frozenset({S.COMPLETE, S.STOPPED, S.ABORTED})

StateListener = Callable[["Element", State, State, str], Awaitable[None]]
"""Called after every state change with (element, source, destination, trigger)."""


def _table() -> dict[tuple[State, str], State]:
    """(state, trigger) → destination, for every transition the model allows."""
    table = {
        (src, cmd.value): dest for cmd, (sources, dest) in COMMAND_TABLE.items() for src in sources
    }
    table.update({(src, "finish"): dest for src, dest in FINISHES.items()})
    table[(S.RUNNING, "complete")] = S.COMPLETE
    return table


TRANSITIONS = _table()


def _transitions() -> list[dict[str, Any]]:
    table: list[dict[str, Any]] = [
        {"trigger": cmd.value, "source": sorted(s.value for s in src), "dest": dest.value}
        for cmd, (src, dest) in COMMAND_TABLE.items()
    ]
    table += [
        {"trigger": "finish", "source": src.value, "dest": dest.value}
        for src, dest in FINISHES.items()
    ]
    table.append({"trigger": "complete", "source": S.RUNNING.value, "dest": S.COMPLETE.value})
    return table


class Element:
    """One procedural element (batch, unit procedure, operation or phase) and its state."""

    # Built once: ~30 KB and 0.2 ms per machine otherwise; every element is a model on it.
    _machine: AsyncMachine | None = None

    def __init__(
        self, path: str, level: str, listener: StateListener, initial: State = State.IDLE
    ) -> None:
        self.path = path
        self.level = level
        self.state: str = initial.value
        self._listener = listener
        # ``initial`` other than Idle restores an element from the journal (crash recovery).
        self.machine().add_model(self, initial=initial.value)

    @classmethod
    def machine(cls) -> AsyncMachine:
        """The one machine all elements share (queued per model, no back doors)."""
        if cls._machine is None:
            cls._machine = AsyncMachine(
                model=None,
                states=[s.value for s in State],
                transitions=_transitions(),
                initial=State.IDLE.value,
                auto_transitions=False,
                queued="model",
                send_event=True,
                after_state_change="_notify",
            )
        return cls._machine

    @property
    def current(self) -> State:
        """The element's state as an enum."""
        return State(self.state)

    def allows(self, command: Command) -> bool:
        """True when the state table allows ``command`` now."""
        return self.current in COMMAND_TABLE[command][0]

    async def apply(self, trigger: str) -> bool:
        """Fire a trigger (a command, ``finish`` or ``complete``); False if not allowed."""
        if (self.current, trigger) not in TRANSITIONS:
            return False
        await self.trigger(trigger)
        return True

    async def _notify(self, event: Any) -> None:
        await self._listener(
            self, State(event.transition.source), State(event.transition.dest), event.event.name
        )

    def release(self) -> None:
        """Detach from the shared machine once the element has ended."""
        self.machine().remove_model(self)

    # ``trigger`` is bound by transitions at add_model time.
    trigger: Callable[[str], Awaitable[bool]]

    def __repr__(self) -> str:
        return f"<{self.level} {self.path} {self.state}>"
