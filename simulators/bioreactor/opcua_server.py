"""OPC UA server publishing simulated rocking bioreactors on a real TCP socket.

One :class:`BioreactorServer` serves any number of vessels. An asyncio task
advances every vessel's :class:`~simulators.bioreactor.physics.BioreactorModel`
in fixed steps of ``step_s`` simulated seconds until it has caught up with the
:class:`~simulators.clock.ScaledClock`; steps are never skipped. Before each step
the setpoints are read from the address space into the models; after it every
measurement is written with ``SourceTimestamp`` = the simulated time of the step,
so a subscriber sees one notification per step per changing variable.

Clients reach the server through a :class:`~simulators.gate.TcpGate` on the
public port (asyncua listens on a private port of 127.0.0.1), so ``faults`` can
refuse, drop, silence, slow, garble or truncate connections; the server itself
shows sensor faults (stuck, drift, noise, spike) and ``bad_status`` on the
variable named by ``target`` (its node id string, e.g. ``BR-01.Temperature.PV``):
a measurement is published with that Bad status code, a setpoint refuses writes
with it. In report-by-exception mode (``report_by_exception`` = a deadband) a
measurement is written only when it moved beyond the deadband. With a
:class:`~simulators.bioreactor.security.ServerSecurity` it offers
Basic256Sha256 Sign and SignAndEncrypt endpoints with a trust list.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import random
import time
import zlib
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from types import TracebackType
from typing import Final
from urllib.parse import urlsplit, urlunsplit

from asyncua import Server, ua

from simulators.bioreactor.address_space import (
    NAMESPACE_URI,
    MethodCallback,
    SimulationNodes,
    VesselNodes,
    add_simulation,
    add_vessel,
    add_vessels_folder,
)
from simulators.bioreactor.kinetics import draw_growth
from simulators.bioreactor.physics import BioreactorModel, Setpoints, VesselStateError
from simulators.bioreactor.security import ServerSecurity, apply_security
from simulators.bioreactor.tags import TAGS
from simulators.bioreactor.uatyping import status, ua_time
from simulators.bioreactor.write_guard import install_range_guard
from simulators.clock import ScaledClock
from simulators.faults import FaultBoard, FaultError, Restarter
from simulators.gate import CONNECTION_KINDS, TcpGate

__all__ = ["DEFAULT_URL", "BioreactorServer", "LoopStats", "quiet_asyncua_logging"]

DEFAULT_URL: Final = "opc.tcp://127.0.0.1:0/cellbatch/bioreactors"
APPLICATION_URI: Final = "urn:cellbatch:simulators:bioreactor:server"
_IDLE_S: Final = 0.01  # longest wall-clock pause of the update loop

_log = logging.getLogger(__name__)


def quiet_asyncua_logging() -> None:
    """Lower asyncua's chatter to WARNING, some loggers to ERROR, unless configured."""
    for name, level in (
        ("asyncua", logging.WARNING),
        ("asyncua.server.address_space", logging.ERROR),  # "Write refused" per bad write
        ("asyncua.server.server", logging.ERROR),  # "No signing policy" (NoSecurity only)
    ):
        logger = logging.getLogger(name)
        if logger.level == logging.NOTSET:
            logger.setLevel(level)


@dataclass(frozen=True, slots=True)
class LoopStats:
    """Work done by the update loop so far."""

    steps: int
    busy_s: float
    vessels: int

    @property
    def us_per_step_per_vessel(self) -> float:
        """Mean wall-clock cost of one model step incl. publishing, per vessel (µs)."""
        if self.steps == 0 or self.vessels == 0:
            return 0.0
        return self.busy_s / self.steps / self.vessels * 1e6


def _doubles(args: tuple[ua.Variant, ...], count: int) -> list[float] | ua.StatusCode:
    """Unpack exactly ``count`` Double input arguments, or the status refusing them."""
    if len(args) < count:
        return status(ua.StatusCodes.BadArgumentsMissing)
    if len(args) > count:
        return status(ua.StatusCodes.BadTooManyArguments)
    values: list[float] = []
    for arg in args:
        if (
            not isinstance(arg, ua.Variant)
            or arg.VariantType != ua.VariantType.Double
            or not isinstance(arg.Value, float)  # also refuses arrays
        ):
            return status(ua.StatusCodes.BadTypeMismatch)
        values.append(arg.Value)
    return values


async def _cancel_status_clock(server: Server) -> None:
    """Cancel asyncua's 1 s ServerStatus.CurrentTime loop, which stop() would await."""
    task, server.iserver.time_task = server.iserver.time_task, None
    if task is not None:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


def _report_crash(task: asyncio.Task[None]) -> None:
    """Log an update loop that died (it only ever ends by cancellation otherwise)."""
    if not task.cancelled() and task.exception() is not None:
        _log.error("%s crashed", task.get_name(), exc_info=task.exception())


async def _write_epoch(server: Server, nodes: SimulationNodes, epoch: datetime) -> None:
    """Publish the clock's epoch (also the time of step 0)."""
    for nid in (nodes.epoch, nodes.time):
        stamp = ua_time(epoch)
        await server.write_attribute_value(
            nid, ua.DataValue(ua.Variant(stamp, ua.VariantType.DateTime), SourceTimestamp=stamp)
        )


def _bad_status(params: dict[str, object]) -> ua.StatusCode:
    return ua.StatusCode(getattr(ua.StatusCodes, str(params.get("status", "BadSensorFailure"))))


def _check_fault(kind: str, params: object) -> None:
    if kind == "bad_status" and isinstance(params, dict):
        name = str(params.get("status", "BadSensorFailure"))
        code = getattr(ua.StatusCodes, name, None)
        if not name.startswith("Bad") or not isinstance(code, int):
            raise FaultError(f"bad_status: {name!r} is not an OPC UA Bad status code name")


BIOLOGIES = ("fixed", "seeded")


def _vessel_seed(seed: int, name: str) -> int:
    """Independent, reproducible noise seed per vessel name."""
    return seed * 1_000_003 + zlib.crc32(name.encode("utf-8"))


class BioreactorServer:
    """A real OPC UA server for simulated bioreactors ``vessels``.

    Life cycle: ``prepare()`` (optional; the slow part, ~1.5 s: asyncua's standard
    address space plus ours), ``start()`` (clock, socket, update loop), ``stop()``.
    """

    def __init__(
        self,
        vessels: list[str],
        url: str = DEFAULT_URL,
        time_scale: float = 1.0,
        step_s: float = 60.0,
        seed: int = 0,
        security: ServerSecurity | None = None,
        biology: str = "fixed",
        report_by_exception: float | None = None,
        serials: dict[str, str] | None = None,
    ) -> None:
        """Validate the configuration; nothing is built or bound yet.

        ``serials``: vessel → the serial number it reports (node
        ``<vessel>.Identification.SerialNumber``); a vessel not named reports none.

        ``biology``: ``fixed`` (every vessel the default kinetics) or ``seeded`` (each
        vessel draws its lag, growth and death rates from ``seed`` and its name).
        ``report_by_exception`` (a deadband, ≥ 0) makes the server behave like many
        vendor servers: a measurement is written (so notified, with a new
        SourceTimestamp) only when it moved more than the deadband since it was last
        published, or its status changed; a steady value sends nothing.
        """
        if biology not in BIOLOGIES:
            raise ValueError(f"biology must be one of {', '.join(BIOLOGIES)}, got {biology!r}")
        if not vessels:
            raise ValueError("at least one vessel is required")
        for name in vessels:
            if not isinstance(name, str) or not name or "." in name or name != name.strip():
                raise ValueError(f"invalid vessel name {name!r} (non-empty, no '.', no padding)")
        if len(set(vessels)) != len(vessels):
            raise ValueError(f"duplicate vessel names in {vessels!r}")
        if not (math.isfinite(time_scale) and time_scale > 0.0):
            raise ValueError(f"time_scale must be a positive number, got {time_scale!r}")
        if not (math.isfinite(step_s) and step_s > 0.0):
            raise ValueError(f"step_s must be a positive number, got {step_s!r}")
        if urlsplit(url).scheme != "opc.tcp":
            raise ValueError(f"not an opc.tcp URL: {url!r}")
        if report_by_exception is not None and not (
            math.isfinite(report_by_exception) and report_by_exception >= 0.0
        ):
            raise ValueError(
                f"report_by_exception must be a deadband >= 0, got {report_by_exception!r}"
            )
        unknown = sorted(set(serials or {}) - set(vessels))
        if unknown:
            raise ValueError(f"serials name vessels that are not served: {', '.join(unknown)}")
        if not all(isinstance(v, str) for v in (serials or {}).values()):
            raise ValueError(f"serials must be text, got {serials!r}")
        self._serials = dict(serials or {})
        self._deadband = report_by_exception
        self._published: dict[ua.NodeId, tuple[float, int]] = {}
        self._url = url
        self._time_scale = float(time_scale)
        self._step_s = float(step_s)
        self._models = {
            name: BioreactorModel(
                seed=_vessel_seed(seed, name),
                growth=(
                    draw_growth(random.Random(_vessel_seed(seed, name) + 1))
                    if biology == "seeded"
                    else None
                ),
            )
            for name in vessels
        }
        self._server: Server | None = None
        self._sim_nodes: SimulationNodes | None = None
        self._vessel_nodes: list[VesselNodes] = []
        self._clock: ScaledClock | None = None
        self._endpoint: str | None = None
        self._task: asyncio.Task[None] | None = None
        self._steps = 0
        self._busy_s = 0.0
        self._security = security
        self._gate: TcpGate | None = None
        self._variables = {f"{v}.{t.path}" for v in vessels for t in TAGS}
        self.faults = FaultBoard(
            "bioreactor",
            (*CONNECTION_KINDS, "bad_status", "stuck", "drift", "noise", "spike", "restart"),
            targets=lambda: self._variables,
            check=_check_fault,
        )
        self._restarter = Restarter(self.faults, self.restart)
        self.faults.on_inject = self._restarter.injected
        #: times the server restarted (``restart`` fault or :meth:`restart`)
        self.restarts = 0

    # -- public API -----------------------------------------------------------------

    @property
    def endpoint(self) -> str:
        """The URL clients connect to, with the port actually bound."""
        if self._endpoint is None:
            raise RuntimeError("server not started")
        return self._endpoint

    @property
    def clock(self) -> ScaledClock:
        """The simulated clock driving the models (set by :meth:`start`)."""
        if self._clock is None:
            raise RuntimeError("server not started")
        return self._clock

    @property
    def time_scale(self) -> float:
        """Simulated seconds per wall-clock second."""
        return self._time_scale

    @property
    def step_s(self) -> float:
        """Simulated seconds per model step."""
        return self._step_s

    @property
    def vessel_names(self) -> tuple[str, ...]:
        """Names of the simulated vessels."""
        return tuple(self._models)

    @property
    def steps(self) -> int:
        """Model steps done; the models stand at ``clock.epoch + steps * step_s``."""
        return self._steps

    def stats(self) -> LoopStats:
        """Cost of the update loop so far."""
        return LoopStats(self._steps, self._busy_s, len(self._models))

    def vessel(self, name: str) -> BioreactorModel:
        """The physics model of vessel ``name`` (for fault injection in tests)."""
        try:
            return self._models[name]
        except KeyError:
            raise KeyError(f"no vessel {name!r}; have {', '.join(self._models)}") from None

    async def prepare(self) -> None:
        """Build the address space (idempotent); no socket is bound yet."""
        if self._server is not None:
            return
        quiet_asyncua_logging()
        server = Server()
        await server.init()
        # asyncua listens privately; the gate (started in start()) owns the public port.
        server.set_endpoint(urlunsplit(urlsplit(self._url)._replace(netloc="127.0.0.1:0")))
        server.set_server_name("cellbatch bioreactor simulator")
        if self._security is None:
            server.set_security_policy([ua.SecurityPolicyType.NoSecurity])
        else:
            await apply_security(server, self._security)
        server.allow_remote_admin(False)
        await server.set_application_uri(APPLICATION_URI)
        idx = await server.register_namespace(NAMESPACE_URI)
        folder = await add_vessels_folder(server, idx)
        for name, model in self._models.items():
            self._vessel_nodes.append(
                await add_vessel(
                    folder,
                    idx,
                    name,
                    model.setpoints,
                    self._inoculate_callback(name),
                    self._harvest_callback(name),
                    self._install_bag_callback(name),
                    self._serials.get(name, ""),
                )
            )
        self._sim_nodes = await add_simulation(server, idx, self._time_scale, self._step_s)
        install_range_guard(
            server,
            {nid: lim for v in self._vessel_nodes for nid, lim in v.limits.items()},
            self._write_refusal,
        )
        self._server = server

    async def start(self, clock: ScaledClock | None = None) -> None:
        """Bind the socket and run the models on ``clock`` (default: a new clock from now).

        Pass one clock to several servers to run them on the same simulated time;
        it must run at this server's ``time_scale``.
        """
        if self._task is not None:
            raise RuntimeError("server already started")
        if clock is not None and clock.scale != self._time_scale:
            raise ValueError(f"clock runs at {clock.scale}, not time_scale={self._time_scale}")
        await self.prepare()
        server, sim_nodes = self._server, self._sim_nodes
        if server is None or sim_nodes is None:
            raise RuntimeError("server was stopped while starting")
        self._clock = clock or ScaledClock(self._time_scale)
        await _write_epoch(server, sim_nodes, self._clock.epoch)
        await self._publish(server, sim_nodes)
        await server.start()
        parts = urlsplit(self._url)
        gate = TcpGate(self.faults, parts.hostname or "127.0.0.1", parts.port or 0)
        try:
            await gate.start(("127.0.0.1", self._private_port(server)))
        except OSError:
            await _cancel_status_clock(server)
            await server.stop()
            self._server = None
            raise
        self._gate = gate
        self._endpoint = self._bound_url(gate.port)
        self._task = asyncio.create_task(
            self._run(server, sim_nodes), name=f"bioreactor-sim {self._endpoint}"
        )
        self._task.add_done_callback(_report_crash)

    async def restart(self, downtime_s: float = 1.0) -> None:
        """Restart like a power-cycled instrument: the server goes away (sessions and
        subscriptions die), stays away ``downtime_s`` wall seconds and comes back on
        the same port, with a new start time and every setpoint at its default; the
        vessels' process state (temperature, volume, cells) is kept and the models go
        on from the clock's present (the down time is not simulated)."""
        clock, endpoint = self.clock, self.endpoint
        await self._shutdown()
        await asyncio.sleep(max(0.0, downtime_s))
        for model in self._models.values():
            model.setpoints = Setpoints()
        self._url = endpoint
        self._vessel_nodes = []
        self._sim_nodes = None
        self._published.clear()
        self._steps = int(clock.elapsed() // self._step_s)
        await self.start(clock)
        self.restarts += 1
        _log.warning("%s restarted after %.1f s with default setpoints", endpoint, downtime_s)

    async def stop(self) -> None:
        """Stop the update loop and close the server (idempotent); ends a restart."""
        await self._restarter.cancel()
        await self._shutdown()

    async def _shutdown(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        gate, self._gate = self._gate, None
        if gate is not None:
            await gate.stop()
        server, self._server = self._server, None
        if server is not None and server.bserver is not None:
            await _cancel_status_clock(server)
            await server.stop()

    async def __aenter__(self) -> BioreactorServer:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()

    # -- internals ------------------------------------------------------------------

    @staticmethod
    def _private_port(server: Server) -> int:
        port = server.bserver.port if server.bserver is not None else 0
        if not port:
            raise RuntimeError("cannot tell which port the OPC UA server bound")
        return int(port)

    def _write_refusal(self, node: ua.NodeId) -> ua.StatusCode | None:
        """A bad_status fault on a setpoint refuses writes to it with that status."""
        if not self.faults.faults:
            return None
        fault = self.faults.first("bad_status", str(node.Identifier))
        return _bad_status(fault.params) if fault is not None else None

    def _bound_url(self, port: int) -> str:
        parts = urlsplit(self._url)
        host = parts.hostname or "127.0.0.1"
        if ":" in host:
            host = f"[{host}]"
        return urlunsplit(parts._replace(netloc=f"{host}:{port}"))

    async def _run(self, server: Server, sim_nodes: SimulationNodes) -> None:
        """Catch the models up with the clock, then idle ≤ 10 ms; forever."""
        step_s, clock = self._step_s, self.clock
        while True:
            while (self._steps + 1) * step_s <= clock.elapsed():
                t0 = time.perf_counter()
                self._advance(server)
                await self._publish(server, sim_nodes)
                self._busy_s += time.perf_counter() - t0
                await asyncio.sleep(0)  # let client requests in between steps
            ahead = (self._steps + 1) * step_s - clock.elapsed()
            await asyncio.sleep(min(_IDLE_S, clock.wall_delay(max(ahead, 0.0))))

    def _advance(self, server: Server) -> None:
        """Read setpoints from the address space into the models and step them once."""
        read = server.read_attribute_value
        for nodes in self._vessel_nodes:
            model = self._models[nodes.name]
            sp = model.setpoints
            for field, nid in nodes.setpoints:
                variant = read(nid).Value
                if variant is not None and isinstance(variant.Value, float):
                    setattr(sp, field, variant.Value)
            model.step(self._step_s)
        self._steps += 1

    async def _publish(self, server: Server, sim_nodes: SimulationNodes) -> None:
        """Write every measurement and Simulation.Time stamped with the step's time."""
        write = server.write_attribute_value
        stamp = ua_time(self.clock.epoch + timedelta(seconds=self._steps * self._step_s))
        server_time = ua_time(datetime.now(UTC))
        double = ua.VariantType.Double
        faults = self.faults if self.faults.faults else None
        good = ua.StatusCode()
        for nodes in self._vessel_nodes:
            values = self._models[nodes.name].measurements()
            for name, nid in nodes.measurements:
                value, code = values[name], good
                if faults is not None:
                    target = f"{nodes.name}.{name}"
                    value = faults.sensor(target, value)
                    bad = faults.first("bad_status", target)
                    if bad is not None:
                        code = _bad_status(bad.params)
                if self._deadband is not None and self._unchanged(nid, value, code):
                    continue
                await write(
                    nid,
                    ua.DataValue(
                        ua.Variant(value, double),
                        StatusCode=code,
                        SourceTimestamp=stamp,
                        ServerTimestamp=server_time,
                    ),
                )
        await write(
            sim_nodes.time,
            ua.DataValue(
                ua.Variant(stamp, ua.VariantType.DateTime),
                SourceTimestamp=stamp,
                ServerTimestamp=server_time,
            ),
        )

    def _unchanged(self, nid: ua.NodeId, value: float, code: ua.StatusCode) -> bool:
        """Report by exception: True when ``value`` is within the deadband of the value
        last published on ``nid`` with the same status (then it is not written)."""
        last = self._published.get(nid)
        deadband = self._deadband or 0.0
        if last is not None and last[1] == code.value and abs(value - last[0]) <= deadband:
            return True
        self._published[nid] = (value, code.value)
        return False

    def _inoculate_callback(self, name: str) -> MethodCallback:
        model = self._models[name]

        async def inoculate(
            _parent: ua.NodeId, *args: ua.Variant
        ) -> list[ua.Variant] | ua.StatusCode:
            values = _doubles(args, 2)
            if isinstance(values, ua.StatusCode):
                return values
            try:
                model.inoculate(values[0], values[1])
            except VesselStateError:
                return status(ua.StatusCodes.BadInvalidState)
            except ValueError:
                return status(ua.StatusCodes.BadOutOfRange)
            _log.info("%s inoculated: %.0f mL, %.3g viable cells", name, values[0], values[1])
            return []

        return inoculate

    def _install_bag_callback(self, name: str) -> MethodCallback:
        model = self._models[name]

        async def install_bag(
            _parent: ua.NodeId, *args: ua.Variant
        ) -> list[ua.Variant] | ua.StatusCode:
            if args:
                return status(ua.StatusCodes.BadTooManyArguments)
            server = self._server
            if server is None:
                return status(ua.StatusCodes.BadServerHalted)
            model.install_bag()
            nodes = next(v for v in self._vessel_nodes if v.name == name)
            await server.write_attribute_value(
                nodes.volume_sp, ua.DataValue(ua.Variant(0.0, ua.VariantType.Double))
            )
            _log.info("%s: new bag installed", name)
            return []

        return install_bag

    def _harvest_callback(self, name: str) -> MethodCallback:
        model = self._models[name]

        async def harvest(
            _parent: ua.NodeId, *args: ua.Variant
        ) -> list[ua.Variant] | ua.StatusCode:
            values = _doubles(args, 1)
            if isinstance(values, ua.StatusCode):
                return values
            server = self._server
            if server is None:
                return status(ua.StatusCodes.BadServerHalted)
            try:
                cells = model.harvest(values[0])
            except VesselStateError:
                return status(ua.StatusCodes.BadInvalidState)
            except ValueError:
                return status(ua.StatusCodes.BadOutOfRange)
            # The model lowered its volume setpoint; mirror it so the next step keeps it.
            volume_sp = next(v.volume_sp for v in self._vessel_nodes if v.name == name)
            await server.write_attribute_value(
                volume_sp,
                ua.DataValue(ua.Variant(model.setpoints.volume_ml, ua.VariantType.Double)),
            )
            _log.info("%s harvested %.0f mL, %.3g viable cells", name, values[0], cells)
            return [ua.Variant(cells, ua.VariantType.Double)]

        return harvest
