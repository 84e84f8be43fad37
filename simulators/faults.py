"""Fault injection: the faults a simulator can be told to show, and their effect on values.

Every simulator has a :class:`FaultBoard` (``server.faults``). Tests script it
directly; ``cellbatch sim serve --faults FILE`` schedules it (see
:mod:`simulators.fault_file`)::

    fault = server.faults.inject("stuck", target="BR-01.Temperature.PV")
    ...
    server.faults.clear(fault)          # or clear() for all

Kinds (each simulator accepts those its protocol allows, see ``simulators/README.md``):

==============  ==========================================  =====================
kind            effect                                      parameters
==============  ==========================================  =====================
``refuse``      new connections are refused                 —
``drop``        open connections are closed, new ones too    —
``silent``      requests get no answer                      —
``slow``        every answer is delayed                     ``delay_s``
``garbage``     answers are replaced by random bytes        —
``truncated``   answers are cut to half their length        —
``bad_crc``     RTU answers carry a wrong CRC               —
``exception``   Modbus requests answer an exception         ``code``, ``on``
``bad_status``  an OPC UA variable reads with a Bad status  ``target``, ``status``
``stuck``       a sensor keeps its value of the moment      ``target``
``drift``       a sensor drifts linearly                    ``target``, ``rate``
``noise``       a sensor gets Gaussian noise                ``target``, ``sigma``
``spike``       a sensor reads a fixed (out-of-range) value ``target``, ``value``
``alarm``       the instrument raises an alarm              ``code``
``restart``     the instrument restarts: gone for           ``downtime_s``
                ``downtime_s`` (wall), back with its
                default setpoints (process state kept)
==============  ==========================================  =====================

A simulator that can restart hands its ``restart(downtime_s)`` coroutine to a
:class:`Restarter`, which runs it once per injected ``restart`` fault and then clears
the fault (the fault is an event, not a lasting condition).

Times are wall-clock seconds: ``drift`` ``rate`` is units per wall second and
``slow`` ``delay_s`` a wall delay, whatever the simulation's time scale.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import random
import time
from collections.abc import Awaitable, Callable, Collection, Mapping
from dataclasses import dataclass, field
from typing import Any, Final

__all__ = ["KINDS", "PARAMETERS", "Fault", "FaultBoard", "FaultError", "Restarter"]

_log = logging.getLogger(__name__)

#: Parameters each kind takes: name → (type, required).
PARAMETERS: Final[dict[str, dict[str, tuple[type, bool]]]] = {
    "refuse": {},
    "drop": {},
    "silent": {},
    "slow": {"delay_s": (float, True)},
    "garbage": {},
    "truncated": {},
    "bad_crc": {},
    "exception": {"code": (int, True), "on": (str, False)},
    "bad_status": {"target": (str, True), "status": (str, False)},
    "stuck": {"target": (str, True)},
    "drift": {"target": (str, True), "rate": (float, True)},
    "noise": {"target": (str, True), "sigma": (float, True)},
    "spike": {"target": (str, True), "value": (float, True)},
    "alarm": {"code": (int, False)},
    "restart": {"downtime_s": (float, False)},
}
KINDS: Final = tuple(PARAMETERS)
SENSOR_KINDS: Final = frozenset({"stuck", "drift", "noise", "spike"})


class FaultError(ValueError):
    """A fault this simulator cannot show, or malformed parameters."""


@dataclass(eq=False)
class Fault:
    """One active fault."""

    kind: str
    params: dict[str, Any]
    started: float = field(default_factory=time.monotonic)
    #: The value a stuck sensor holds (taken at its first reading under the fault).
    held: float | None = None

    @property
    def target(self) -> str | None:
        """The sensor, variable or register the fault applies to (None: the whole device)."""
        target = self.params.get("target")
        return str(target) if target is not None else None

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.params.items())
        return f"Fault({self.kind}{', ' if args else ''}{args})"


Listener = Callable[[], None]


class FaultBoard:
    """The faults one simulator shows now; the protocol code asks it on every exchange."""

    def __init__(
        self,
        name: str,
        kinds: Collection[str],
        *,
        targets: Callable[[], Collection[str]] | None = None,
        check: Callable[[str, Mapping[str, Any]], None] | None = None,
        seed: int = 0,
    ) -> None:
        """``kinds`` this simulator supports; ``targets`` lists valid sensor targets;
        ``check`` validates kind-specific parameters (raises FaultError)."""
        unknown = set(kinds) - set(KINDS)
        if unknown:
            raise ValueError(f"unknown fault kinds {sorted(unknown)}")
        self.name = name
        self.kinds = tuple(k for k in KINDS if k in kinds)
        self._targets = targets
        self._check = check
        self._faults: list[Fault] = []
        self._listeners: list[Listener] = []
        self._random = random.Random(seed)
        #: Called with each injected fault (e.g. to raise an instrument alarm at once).
        self.on_inject: Callable[[Fault], None] | None = None

    # -- scripting -------------------------------------------------------------------

    def inject(self, kind: str, **params: Any) -> Fault:
        """Start showing a fault; returns it (for :meth:`clear`). Raises FaultError."""
        self.validate(kind, params)
        fault = Fault(kind, dict(params))
        self._faults.append(fault)
        if self.on_inject is not None:
            self.on_inject(fault)
        self._changed()
        return fault

    def clear(self, fault: Fault | None = None) -> None:
        """Stop showing ``fault`` (all faults when None); clearing twice is harmless."""
        if fault is None:
            self._faults.clear()
        elif fault in self._faults:
            self._faults.remove(fault)
        self._changed()

    def validate(self, kind: str, params: Mapping[str, Any]) -> None:
        """Raise FaultError unless this simulator can show ``kind`` with ``params``."""
        if kind not in PARAMETERS:
            raise FaultError(f"unknown fault kind {kind!r} (known: {', '.join(KINDS)})")
        if kind not in self.kinds:
            raise FaultError(f"{self.name}: cannot show {kind!r} (it can: {', '.join(self.kinds)})")
        spec = PARAMETERS[kind]
        unknown = sorted(set(params) - set(spec))
        if unknown:
            raise FaultError(f"{kind}: unknown parameters {', '.join(unknown)}")
        for name, (kind_type, required) in spec.items():
            if name not in params:
                if required:
                    raise FaultError(f"{kind}: missing parameter {name!r}")
                continue
            value = params[name]
            ok = (
                isinstance(value, int | float) and not isinstance(value, bool)
                if kind_type is float
                else isinstance(value, kind_type) and not isinstance(value, bool)
            )
            if not ok or (kind_type is float and not math.isfinite(value)):
                raise FaultError(f"{kind}: {name} must be {kind_type.__name__}, got {value!r}")
        if kind == "slow" and params["delay_s"] <= 0:
            raise FaultError("slow: delay_s must be positive")
        if kind == "restart" and params.get("downtime_s", 0.0) < 0:
            raise FaultError("restart: downtime_s must not be negative")
        if kind == "noise" and params["sigma"] <= 0:
            raise FaultError("noise: sigma must be positive")
        target = params.get("target")
        if target is not None and self._targets is not None:
            targets = self._targets()
            if target not in targets:
                shown = ", ".join(sorted(targets)[:8])
                raise FaultError(f"{kind}: {self.name} has no target {target!r} (e.g. {shown})")
        if self._check is not None:
            self._check(kind, params)

    def on_change(self, listener: Listener) -> None:
        """Call ``listener`` after every inject or clear."""
        self._listeners.append(listener)

    def _changed(self) -> None:
        for listener in list(self._listeners):
            listener()

    # -- asked by the protocol code --------------------------------------------------

    @property
    def faults(self) -> tuple[Fault, ...]:
        """Active faults, oldest first."""
        return tuple(self._faults)

    def first(self, kind: str, target: str | None = None) -> Fault | None:
        """The oldest active fault of ``kind`` (for ``target``, if given)."""
        for fault in self._faults:
            if fault.kind == kind and (target is None or fault.target == target):
                return fault
        return None

    def has(self, kind: str) -> bool:
        """True while a fault of ``kind`` is active."""
        return self.first(kind) is not None

    def sensor(self, target: str, value: float) -> float:
        """``value`` as the faulty sensor ``target`` reports it (unchanged without faults)."""
        for fault in self._faults:
            if fault.kind not in SENSOR_KINDS or fault.target != target:
                continue
            if fault.kind == "stuck":
                if fault.held is None:
                    fault.held = value
                value = fault.held
            elif fault.kind == "drift":
                value += float(fault.params["rate"]) * (time.monotonic() - fault.started)
            elif fault.kind == "noise":
                value += self._random.gauss(0.0, float(fault.params["sigma"]))
            else:  # spike
                value = float(fault.params["value"])
        return value

    def garble(self, size: int) -> bytes:
        """``size`` random bytes (a garbage answer)."""
        return bytes(self._random.getrandbits(8) for _ in range(max(size, 1)))


class Restarter:
    """Runs a simulator's ``restart(downtime_s)`` for each injected ``restart`` fault,
    one at a time, then clears the fault; a restart fault injected while one runs is
    cleared at once (the instrument is already restarting)."""

    def __init__(self, board: FaultBoard, restart: Callable[[float], Awaitable[None]]) -> None:
        """``restart`` takes the fault's ``downtime_s`` (default 1 s)."""
        self._board = board
        self._restart = restart
        self._task: asyncio.Task[None] | None = None

    @property
    def running(self) -> bool:
        """True while a restart is under way."""
        return self._task is not None

    def injected(self, fault: Fault) -> None:
        """Start the restart a ``restart`` fault asks for (other kinds are ignored)."""
        if fault.kind != "restart":
            return
        if self._task is not None:
            _log.warning("%s: already restarting; %r ignored", self._board.name, fault)
            asyncio.get_running_loop().call_soon(self._board.clear, fault)
            return

        async def run() -> None:
            try:
                await self._restart(float(fault.params.get("downtime_s", 1.0)))
            except Exception:  # said here: nobody awaits this task
                _log.exception("%s: the restart failed; the simulator stays down", self._board.name)
            finally:
                self._task = None
                self._board.clear(fault)

        self._task = asyncio.get_running_loop().create_task(run(), name="restart")

    async def cancel(self) -> None:
        """End a restart under way (when the simulator stops); idempotent."""
        task, self._task = self._task, None
        if task is not None and task is not asyncio.current_task():
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
