"""Start the simulators a plant file lists, all on one shared simulated clock.

Each spec is the plain dict of one ``[[simulators]]`` table, for example::

    {"name": "bioreactors", "kind": "opcua-bioreactor",
     "listen": "opc.tcp://127.0.0.1:4841/cellbatch/bioreactors",
     "vessels": ["BR-01"], "seed": 1}

Keys of kind ``opcua-bioreactor``: ``name``, ``kind``, ``listen``, ``vessels``
(required); ``seed`` (int, default 0), ``step_s`` (simulated seconds per
model step, default 60), ``report_by_exception`` (a deadband: notify a
measurement only when it moved more than this since it was last published) and
``serials`` (a table vessel → the serial number its
``Identification.SerialNumber`` node reports; a vessel not named reports none) and
``security`` (a table: ``certificate``, ``private_key``, ``trusted`` folder,
optional ``policies``, ``users``, ``allow_anonymous``; see
:mod:`simulators.bioreactor.security`) are optional.

Every simulator has a fault board (``server.faults``, :mod:`simulators.faults`);
:attr:`RunningSimulators.boards` lists them by name.

Kind ``modbus-cell-processor``: ``name``, ``kind``, ``listen``
(``modbus+tcp://HOST:PORT``, port 0 = any free port; or ``modbus+rtu://`` for
Modbus RTU on a new pty, endpoint ``modbus+rtu:///dev/pts/N``, with
``modbus+rtu:///PATH`` also creating a symlink at PATH); optional ``serial`` (the
serial number the instrument reports in holding registers 102–109, up to 16 ASCII
characters; default none).

Kind ``modbus-freezer`` (controlled-rate freezer): the same keys and ``listen``
forms as ``modbus-cell-processor``.

Kinds ``serial-pump`` and ``serial-balance`` serve on a new pseudo-terminal each
(endpoint ``serial:///dev/pts/N``). Optional ``listen = "serial:///some/path"``
also creates a symlink at that path to the pty (removed on stop); optional
``bench`` (default ``"bench"``) names the bench they share: a pump's flow lands
on every balance of its bench. ``serial-pump`` also takes ``address`` (1–16,
default 1) and ``tubing_ml_per_rev`` (default 0.5); ``serial-balance`` takes
``capacity_g`` (default 2200).

Unknown keys are refused so that typos in a plant file surface at start-up.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol
from urllib.parse import urlsplit

from simulators.bioreactor.opcua_server import BioreactorServer
from simulators.bioreactor.security import ServerSecurity
from simulators.centrifuge.modbus_server import CellProcessorServer
from simulators.clock import ScaledClock
from simulators.faults import FaultBoard
from simulators.freezer.modbus_server import FreezerServer
from simulators.serial_instruments.balance import BalanceSimulator
from simulators.serial_instruments.bench import Bench
from simulators.serial_instruments.pump import PumpSimulator

__all__ = ["KINDS", "RunningSimulators", "SimulatorServer", "start_simulators"]


class SimulatorServer(Protocol):
    """What every simulator offers the launcher."""

    @property
    def endpoint(self) -> str:
        """The URL clients connect to (real port or pty path once started)."""
        ...

    async def prepare(self) -> None:
        """Build what must exist before the shared clock starts."""

    async def start(self, clock: ScaledClock | None = None) -> None:
        """Start serving on ``clock``."""

    async def stop(self) -> None:
        """Stop serving (idempotent)."""

    @property
    def faults(self) -> FaultBoard:
        """The simulator's fault board."""
        ...


@dataclass
class RunningSimulators:
    """Simulators started by :func:`start_simulators`."""

    clock: ScaledClock
    servers: dict[str, SimulatorServer] = field(default_factory=dict)

    @property
    def endpoints(self) -> dict[str, str]:
        """Simulator name → URL clients connect to (real bound port)."""
        return {name: server.endpoint for name, server in self.servers.items()}

    @property
    def boards(self) -> dict[str, FaultBoard]:
        """Simulator name → its fault board."""
        return {name: server.faults for name, server in self.servers.items()}

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


def _check_keys(spec: Mapping[str, Any], allowed: set[str], where: str) -> None:
    unknown = sorted(set(spec) - allowed)
    if unknown:
        raise ValueError(f"{where}: unknown keys {', '.join(map(repr, unknown))}")


def _bioreactor(
    spec: Mapping[str, Any], time_scale: float, where: str, benches: dict[str, Bench]
) -> BioreactorServer:
    _check_keys(
        spec,
        {
            "name",
            "kind",
            "listen",
            "vessels",
            "seed",
            "step_s",
            "security",
            "biology",
            "report_by_exception",
            "serials",
        },
        where,
    )
    listen = _require(spec, "listen", str, where)
    vessels = _require(spec, "vessels", (list, tuple), where)
    if not all(isinstance(v, str) for v in vessels):
        raise ValueError(f"{where}: 'vessels' must be a list of strings, got {vessels!r}")
    seed = _require(spec, "seed", int, where) if "seed" in spec else 0
    step_s = float(_require(spec, "step_s", (int, float), where)) if "step_s" in spec else 60.0
    if not (math.isfinite(step_s) and step_s > 0.0):
        raise ValueError(f"{where}: 'step_s' must be positive, got {step_s!r}")
    deadband = None
    if "report_by_exception" in spec:
        deadband = float(_require(spec, "report_by_exception", (int, float), where))
    security = None
    if "security" in spec:
        table = _require(spec, "security", dict, where)
        security = ServerSecurity.from_spec(table, where)
    try:
        return BioreactorServer(
            list(vessels),
            url=listen,
            time_scale=time_scale,
            step_s=step_s,
            seed=seed,
            security=security,
            biology=str(spec.get("biology", "fixed")),
            report_by_exception=deadband,
            serials=dict(_require(spec, "serials", dict, where)) if "serials" in spec else None,
        )
    except ValueError as exc:
        raise ValueError(f"{where}: {exc}") from None


def _cell_processor(
    spec: Mapping[str, Any], time_scale: float, where: str, benches: dict[str, Bench]
) -> CellProcessorServer:
    _check_keys(spec, {"name", "kind", "listen", "serial"}, where)
    listen = _require(spec, "listen", str, where)
    serial = _require(spec, "serial", str, where) if "serial" in spec else ""
    try:
        return CellProcessorServer(url=listen, time_scale=time_scale, serial=serial)
    except ValueError as exc:
        raise ValueError(f"{where}: {exc}") from None


def _freezer(
    spec: Mapping[str, Any], time_scale: float, where: str, benches: dict[str, Bench]
) -> FreezerServer:
    _check_keys(spec, {"name", "kind", "listen", "serial"}, where)
    listen = _require(spec, "listen", str, where)
    serial = _require(spec, "serial", str, where) if "serial" in spec else ""
    try:
        return FreezerServer(url=listen, time_scale=time_scale, serial=serial)
    except ValueError as exc:
        raise ValueError(f"{where}: {exc}") from None


def _serial_common(
    spec: Mapping[str, Any], where: str, benches: dict[str, Bench]
) -> tuple[Bench, str | None]:
    link: str | None = None
    if "listen" in spec:
        listen = _require(spec, "listen", str, where)
        parts = urlsplit(listen)
        if parts.scheme != "serial" or parts.netloc:
            raise ValueError(f"{where}: 'listen' must be serial:///PATH, got {listen!r}")
        link = parts.path or None
    bench_name = _require(spec, "bench", str, where) if "bench" in spec else "bench"
    return benches.setdefault(bench_name, Bench()), link


def _number(spec: Mapping[str, Any], key: str, default: float, where: str) -> float:
    if key not in spec:
        return default
    value = float(_require(spec, key, (int, float), where))
    if not (math.isfinite(value) and value > 0.0):
        raise ValueError(f"{where}: {key!r} must be positive, got {value!r}")
    return value


def _serial_pump(
    spec: Mapping[str, Any], time_scale: float, where: str, benches: dict[str, Bench]
) -> PumpSimulator:
    keys = {"name", "kind", "listen", "bench", "address", "tubing_ml_per_rev"}
    _check_keys(spec, keys, where)
    address = _require(spec, "address", int, where) if "address" in spec else 1
    tubing = _number(spec, "tubing_ml_per_rev", 0.5, where)
    bench, link = _serial_common(spec, where, benches)
    try:
        return PumpSimulator(
            bench, name=str(spec["name"]), address=address, tubing_ml_per_rev=tubing, link=link
        )
    except ValueError as exc:
        raise ValueError(f"{where}: {exc}") from None


def _serial_balance(
    spec: Mapping[str, Any], time_scale: float, where: str, benches: dict[str, Bench]
) -> BalanceSimulator:
    _check_keys(spec, {"name", "kind", "listen", "bench", "capacity_g"}, where)
    capacity = _number(spec, "capacity_g", 2200.0, where)
    bench, link = _serial_common(spec, where, benches)
    return BalanceSimulator(bench, capacity_g=capacity, link=link)


Factory = Callable[[Mapping[str, Any], float, str, dict[str, Bench]], SimulatorServer]

#: Simulator kind → factory(spec, time scale, description for messages, shared benches).
KINDS: dict[str, Factory] = {
    "opcua-bioreactor": _bioreactor,
    "modbus-cell-processor": _cell_processor,
    "modbus-freezer": _freezer,
    "serial-pump": _serial_pump,
    "serial-balance": _serial_balance,
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
    prepared: dict[str, SimulatorServer] = {}
    benches: dict[str, Bench] = {}
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
        prepared[name] = factory(spec, time_scale, where, benches)
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
