"""Start the simulators a plant file lists, all on one shared simulated clock.

Each spec is the plain dict of one ``[[simulators]]`` table, for example::

    {"name": "bioreactors", "kind": "opcua-bioreactor",
     "listen": "opc.tcp://127.0.0.1:4841/cellbatch/bioreactors",
     "vessels": ["BR-01"], "seed": 1}

Keys of kind ``opcua-bioreactor``: ``name``, ``kind``, ``listen``, ``vessels``
(required); ``seed`` (int, default 0) and ``step_s`` (simulated seconds per
model step, default 60) are optional. Unknown keys are refused so that typos in
a plant file surface at start-up.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from simulators.bioreactor.opcua_server import BioreactorServer
from simulators.clock import ScaledClock

__all__ = ["KINDS", "RunningSimulators", "start_simulators"]


@dataclass
class RunningSimulators:
    """Simulators started by :func:`start_simulators`."""

    clock: ScaledClock
    servers: dict[str, BioreactorServer] = field(default_factory=dict)

    @property
    def endpoints(self) -> dict[str, str]:
        """Simulator name → URL clients connect to (real bound port)."""
        return {name: server.endpoint for name, server in self.servers.items()}

    async def stop(self) -> None:
        """Stop every simulator, last started first."""
        for name in reversed(list(self.servers)):
            await self.servers.pop(name).stop()


def _require(spec: Mapping[str, Any], key: str, kind: type | tuple[type, ...], where: str) -> Any:
    if key not in spec:
        raise ValueError(f"{where}: missing key {key!r}")
    value = spec[key]
    if not isinstance(value, kind) or isinstance(value, bool):
        expected = " or ".join(k.__name__ for k in (kind if isinstance(kind, tuple) else (kind,)))
        raise ValueError(f"{where}: {key!r} must be {expected}, got {value!r}")
    return value


def _bioreactor(spec: Mapping[str, Any], time_scale: float, where: str) -> BioreactorServer:
    allowed = {"name", "kind", "listen", "vessels", "seed", "step_s"}
    unknown = sorted(set(spec) - allowed)
    if unknown:
        raise ValueError(f"{where}: unknown keys {', '.join(map(repr, unknown))}")
    listen = _require(spec, "listen", str, where)
    vessels = _require(spec, "vessels", (list, tuple), where)
    if not all(isinstance(v, str) for v in vessels):
        raise ValueError(f"{where}: 'vessels' must be a list of strings, got {vessels!r}")
    seed = _require(spec, "seed", int, where) if "seed" in spec else 0
    step_s = float(_require(spec, "step_s", (int, float), where)) if "step_s" in spec else 60.0
    if not (math.isfinite(step_s) and step_s > 0.0):
        raise ValueError(f"{where}: 'step_s' must be positive, got {step_s!r}")
    try:
        return BioreactorServer(
            list(vessels), url=listen, time_scale=time_scale, step_s=step_s, seed=seed
        )
    except ValueError as exc:
        raise ValueError(f"{where}: {exc}") from None


#: Simulator kind → factory(spec, time scale, description for messages).
KINDS: dict[str, Callable[[Mapping[str, Any], float, str], BioreactorServer]] = {
    "opcua-bioreactor": _bioreactor,
}


async def start_simulators(
    specs: Sequence[Mapping[str, Any]], time_scale: float
) -> RunningSimulators:
    """Validate every spec, build every server, then start them all on one clock.

    The clock starts once every address space is built, so all simulators begin
    at its epoch together. Raises ValueError for an invalid spec (unknown kind,
    missing or unknown key, duplicate name) before anything is built; if a server
    fails to start, the ones already running are stopped again.
    """
    if not (math.isfinite(time_scale) and time_scale > 0.0):
        raise ValueError(f"time_scale must be a positive number, got {time_scale!r}")
    prepared: dict[str, BioreactorServer] = {}
    for i, spec in enumerate(specs):
        where = f"simulator #{i + 1}"
        name = _require(spec, "name", str, where)
        where = f"simulator {name!r}"
        if name in prepared:
            raise ValueError(f"{where}: duplicate simulator name")
        kind = _require(spec, "kind", str, where)
        factory = KINDS.get(kind)
        if factory is None:
            raise ValueError(
                f"{where}: unknown simulator kind {kind!r} (known: {', '.join(sorted(KINDS))})"
            )
        prepared[name] = factory(spec, time_scale, where)
    for server in prepared.values():
        await server.prepare()
    running = RunningSimulators(ScaledClock(time_scale))
    try:
        for name, server in prepared.items():
            running.servers[name] = server
            try:
                await server.start(running.clock)
            except OSError as exc:
                raise OSError(exc.errno, f"simulator {name!r}: {exc.strerror or exc}") from exc
    except BaseException:
        await running.stop()
        raise
    return running
