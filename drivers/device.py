"""Devices: an instrument presented as named capabilities, built from a device profile."""

from __future__ import annotations

import math
from collections.abc import Awaitable, Callable, Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path

from drivers.backend import DeviceBackend
from drivers.errors import ProfileError, ReadBackMismatch, WriteRejected
from drivers.link import (
    STATUS_CAPABILITY,
    ConnectionStatus,
    LinkPolicy,
    RecoveryListener,
    StatusListener,
)
from drivers.modbus import ModbusConnection
from drivers.modbus_backend import ModbusBackend
from drivers.opcua import OpcUaConnection
from drivers.opcua_backend import OpcUaBackend
from drivers.opcua_security import OpcUaSecurity
from drivers.profile import DeviceProfile, TagSpec, load_profile
from drivers.serial_backend import SerialBackend, line_for
from drivers.serial_line import SerialLine
from drivers.serial_line import parse_endpoint as serial_port
from drivers.tags import Quality, Reading, ReadingSink, Tag, Value


class Device:
    """One instrument (or one vessel of a multi-vessel instrument)."""

    def __init__(self, name: str, profile: DeviceProfile, backend: DeviceBackend) -> None:
        self.name = name
        self.profile = profile
        self.backend = backend
        #: derived capabilities (computed from another tag), by name
        self._derived = {c: s for c, s in profile.tags.items() if s.derived_from is not None}

    @property
    def equipment_class(self) -> str:
        """The equipment class this device implements (from its profile)."""
        return self.profile.equipment_class

    def has(self, capability: str) -> bool:
        """True when the profile maps this capability (``connection.status`` always)."""
        return capability == STATUS_CAPABILITY or capability in self.profile.tags

    def tag(self, capability: str) -> Tag:
        """A typed handle on one capability."""
        if capability == STATUS_CAPABILITY:
            return Tag(self, capability, "", False)
        spec = self.profile.tag(capability)
        return Tag(self, capability, spec.unit, spec.writable)

    @property
    def connection_status(self) -> ConnectionStatus:
        """``connected`` / ``reconnecting`` / ``failed`` (short blips masked)."""
        return self.backend.link.status

    @property
    def instrument_started(self) -> datetime | None:
        """When the instrument says it last started (OPC UA ``ServerStatus.StartTime``,
        read at every connect); None where its protocol does not tell (Modbus, serial)."""
        return self.backend.link.instrument_started

    def watch_status(self, listener: StatusListener) -> Callable[[], None]:
        """Call ``listener`` on every change of the connection status; returns an unwatch."""
        return self.backend.link.watch(listener)

    def watch_recovery(self, listener: RecoveryListener) -> Callable[[], None]:
        """Call ``listener(masked)`` each time the connection is back after being down
        (``masked``: shorter than the blip mask); returns an unwatch."""
        return self.backend.link.on_recovery(listener)

    def status_reading(self) -> Reading:
        """The connection status as a reading of the ``connection.status`` tag."""
        status = self.connection_status
        return Reading(STATUS_CAPABILITY, status.value, "", datetime.now(UTC), Quality.GOOD)

    async def connect(self) -> None:
        """Connect (shared sessions are opened once)."""
        await self.backend.connect()

    def _wire(self, capabilities: Sequence[str]) -> list[str]:
        """The capabilities read on the wire for ``capabilities``: derived ones replaced
        by their source, ``connection.status`` left out, each once."""
        wire: dict[str, None] = {}
        for c in capabilities:
            if c == STATUS_CAPABILITY:
                continue
            spec = self._derived.get(c)
            wire[spec.derived_from if spec is not None and spec.derived_from else c] = None
        return list(wire)

    def _derive(self, spec: TagSpec, source: Reading) -> Reading:
        return Reading(
            spec.capability,
            spec.derive(source.value),
            spec.unit,
            source.source_time,
            source.quality,
        )

    async def read(self, capabilities: Sequence[str]) -> list[Reading]:
        """Read several capabilities in one round trip (``connection.status`` needs none;
        a derived capability is computed from its source tag)."""
        if STATUS_CAPABILITY not in capabilities and not (
            self._derived and any(c in self._derived for c in capabilities)
        ):
            return await self.backend.read([self.profile.tag(c) for c in capabilities])
        wire = self._wire(capabilities)
        readings = await self.backend.read([self.profile.tag(c) for c in wire]) if wire else []
        got = dict(zip(wire, readings, strict=True))
        out = []
        for c in capabilities:
            if c == STATUS_CAPABILITY:
                out.append(self.status_reading())
            elif c in self._derived:
                out.append(self._derive(self._derived[c], got[self._wire([c])[0]]))
            else:
                out.append(got[c])
        return out

    async def write(self, capability: str, value: Value) -> Value:
        """Write a capability; critical ones are read back and must match."""
        spec = self.profile.tag(capability)
        if not spec.writable:
            raise WriteRejected(f"{self.name}: {capability} is read-only")
        await self.backend.write(spec, value)
        if not spec.verify:
            return value
        (reading,) = await self.backend.read([spec])
        if reading.quality is Quality.BAD or not same_value(reading.value, value):
            raise ReadBackMismatch(
                f"{self.name}: {capability} wrote {value!r}, read back {reading.value!r}"
            )
        return reading.value

    async def not_writable(self, capabilities: Sequence[str]) -> list[str]:
        """Of ``capabilities``, those the instrument itself says cannot be written (OPC UA
        AccessLevel); protocols without access metadata answer from the profile only."""
        check = getattr(self.backend, "not_writable", None)
        if check is None:
            return []
        refused: list[str] = await check([self.profile.tag(c) for c in capabilities])
        return refused

    async def call(self, method: str, args: dict[str, Value]) -> Value:
        """Run a device method; arguments by name, checked against the profile."""
        spec = self.profile.method(method)
        names = [a.name for a in spec.args]
        if set(args) != set(names):
            raise ProfileError(f"{self.name}: {method} takes {names}, got {sorted(args)}")
        return await self.backend.call(spec, [args[n] for n in names])

    def subscribe(
        self, capabilities: Sequence[str], sink: ReadingSink
    ) -> Awaitable[Callable[[], Awaitable[None]]]:
        """Push every change of the capabilities to ``sink``; await it for an async cancel.

        ``connection.status`` delivers its current value at once, then every change; a
        derived capability is delivered with every value of its source tag.
        """
        derived = [c for c in capabilities if c in self._derived]
        if STATUS_CAPABILITY not in capabilities and not derived:
            return self.backend.subscribe([self.profile.tag(c) for c in capabilities], sink)
        return self._subscribe_with_status(capabilities, sink)

    def _deriving_sink(self, capabilities: Sequence[str], sink: ReadingSink) -> ReadingSink:
        """A sink for the wire tags that passes on the asked ones and derives the rest."""
        asked = set(capabilities)
        by_source: dict[str, list[TagSpec]] = {}
        for c in capabilities:
            spec = self._derived.get(c)
            if spec is not None and spec.derived_from is not None:
                by_source.setdefault(spec.derived_from, []).append(spec)

        def deliver(reading: Reading) -> None:
            if reading.capability in asked:
                sink(reading)
            for spec in by_source.get(reading.capability, ()):
                sink(self._derive(spec, reading))

        return deliver

    async def _subscribe_with_status(
        self, capabilities: Sequence[str], sink: ReadingSink
    ) -> Callable[[], Awaitable[None]]:
        wire = [self.profile.tag(c) for c in self._wire(capabilities)]
        deliver = self._deriving_sink(capabilities, sink)
        cancel_wire = await self.backend.subscribe(wire, deliver) if wire else None
        if STATUS_CAPABILITY not in capabilities:

            async def cancel_only() -> None:
                if cancel_wire is not None:
                    await cancel_wire()

            return cancel_only
        unwatch = self.watch_status(lambda _status: sink(self.status_reading()))
        sink(self.status_reading())

        async def cancel() -> None:
            unwatch()
            if cancel_wire is not None:
                await cancel_wire()

        return cancel


def same_value(a: Value, b: Value) -> bool:
    """True when two values are the same (floats within a relative 1e-6)."""
    if isinstance(a, int | float) and isinstance(b, int | float) and float in (type(a), type(b)):
        return math.isclose(a, float(b), rel_tol=1e-6, abs_tol=1e-9)
    return a == b


Connection = OpcUaConnection | ModbusConnection | SerialLine


class DevicePool:
    """Opens devices from profiles, sharing one connection per endpoint.

    The profile's ``protocol`` picks the backend: ``opcua`` (``opc.tcp://…``),
    ``modbus`` (``modbus+tcp://HOST:PORT`` or ``modbus+rtu:///dev/…``) or ``serial`` (``serial:///dev/…``;
    devices on one port share its line and its request lock).
    """

    def __init__(self, *, timeout: float = 5.0, link: LinkPolicy | None = None) -> None:
        """``timeout`` bounds every call; ``link`` sets status masks and reconnect backoff
        (a profile's ``status_*`` / ``reconnect_*`` options override it)."""
        self.timeout = timeout
        self.link = link or LinkPolicy(attempt_timeout_s=max(timeout * 2, 1.0))
        self._connections: dict[str, Connection] = {}
        #: Receive-time stamp for instruments that send no timestamp of their own (Modbus,
        #: serial). The controller sets it to its process clock, so a simulation records
        #: simulated time.
        self.now: Callable[[], datetime] = lambda: datetime.now(UTC)

    def open(
        self,
        name: str,
        profile: str | Path,
        endpoint: str,
        address: dict[str, str],
        connection: Mapping[str, object] | None = None,
    ) -> Device:
        """A device for a plant unit (not yet connected).

        ``connection`` holds the unit's connection settings: for OPC UA the security
        policy, mode, certificates and identity (see :mod:`drivers.opcua_security`).
        """
        prof = load_profile(profile)
        conn = self._connections.get(endpoint)
        policy = self.link.with_options(prof.options, f"profile {prof.name!r}")
        if connection and prof.protocol != "opcua":
            raise ProfileError(f"{name}: connection settings apply to OPC UA units only")
        backend: DeviceBackend
        if prof.protocol == "opcua":
            if conn is None:
                security = OpcUaSecurity.from_options(connection or {}, f"unit {name!r}")
                conn = OpcUaConnection(
                    endpoint, timeout=self.timeout, security=security, link_policy=policy
                )
            if not isinstance(conn, OpcUaConnection):
                raise ProfileError(f"{endpoint}: already open with another protocol")
            backend = OpcUaBackend(conn, prof, address)
        elif prof.protocol == "modbus":
            if conn is None:
                conn = ModbusConnection(
                    endpoint,
                    timeout=self.timeout,
                    baudrate=int(prof.options.get("baudrate", 9600)),
                    framing=str(prof.options.get("framing", "8N1")),
                    link_policy=policy,
                )
            if not isinstance(conn, ModbusConnection):
                raise ProfileError(f"{endpoint}: already open with another protocol")
            backend = ModbusBackend(conn, prof, address, now=lambda: self.now())
        elif prof.protocol == "serial":
            if conn is None:
                conn = line_for(serial_port(endpoint), prof, self.timeout, policy)
            if not isinstance(conn, SerialLine):
                raise ProfileError(f"{endpoint}: already open with another protocol")
            backend = SerialBackend(conn, prof, address, now=lambda: self.now())
        else:
            raise ProfileError(f"profile {prof.name!r}: protocol {prof.protocol!r} not supported")
        self._connections[endpoint] = conn
        return Device(name, prof, backend)

    async def close(self) -> None:
        """Close every connection."""
        for conn in self._connections.values():
            await conn.close()
        self._connections.clear()
