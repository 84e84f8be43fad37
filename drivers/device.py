"""Devices: an instrument presented as named capabilities, built from a device profile."""

from __future__ import annotations

import math
from collections.abc import Awaitable, Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path

from drivers.backend import DeviceBackend
from drivers.errors import ProfileError, ReadBackMismatch, WriteRejected
from drivers.modbus import ModbusConnection
from drivers.modbus_backend import ModbusBackend
from drivers.opcua import OpcUaConnection
from drivers.opcua_backend import OpcUaBackend
from drivers.profile import DeviceProfile, load_profile
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

    @property
    def equipment_class(self) -> str:
        """The equipment class this device implements (from its profile)."""
        return self.profile.equipment_class

    def has(self, capability: str) -> bool:
        """True when the profile maps this capability."""
        return capability in self.profile.tags

    def tag(self, capability: str) -> Tag:
        """A typed handle on one capability."""
        spec = self.profile.tag(capability)
        return Tag(self, capability, spec.unit, spec.writable)

    async def connect(self) -> None:
        """Connect (shared sessions are opened once)."""
        await self.backend.connect()

    async def read(self, capabilities: Sequence[str]) -> list[Reading]:
        """Read several capabilities in one round trip."""
        return await self.backend.read([self.profile.tag(c) for c in capabilities])

    async def write(self, capability: str, value: Value) -> Value:
        """Write a capability; critical ones are read back and must match."""
        spec = self.profile.tag(capability)
        if not spec.writable:
            raise WriteRejected(f"{self.name}: {capability} is read-only")
        await self.backend.write(spec, value)
        if not spec.verify:
            return value
        (reading,) = await self.backend.read([spec])
        if reading.quality is Quality.BAD or not _same(reading.value, value):
            raise ReadBackMismatch(
                f"{self.name}: {capability} wrote {value!r}, read back {reading.value!r}"
            )
        return reading.value

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
        """Push every change of the capabilities to ``sink``; await it for an async cancel."""
        return self.backend.subscribe([self.profile.tag(c) for c in capabilities], sink)


def _same(a: Value, b: Value) -> bool:
    if isinstance(a, float) and isinstance(b, int | float):
        return math.isclose(a, float(b), rel_tol=1e-6, abs_tol=1e-9)
    return a == b


Connection = OpcUaConnection | ModbusConnection | SerialLine


class DevicePool:
    """Opens devices from profiles, sharing one connection per endpoint.

    The profile's ``protocol`` picks the backend: ``opcua`` (``opc.tcp://…``),
    ``modbus`` (``modbus+tcp://HOST:PORT`` or ``modbus+rtu:///dev/…``) or ``serial`` (``serial:///dev/…``;
    devices on one port share its line and its request lock).
    """

    def __init__(self, *, timeout: float = 5.0) -> None:
        self.timeout = timeout
        self._connections: dict[str, Connection] = {}
        #: Receive-time stamp for instruments that send no timestamp of their own (Modbus,
        #: serial). The controller sets it to its process clock, so a simulation records
        #: simulated time.
        self.now: Callable[[], datetime] = lambda: datetime.now(UTC)

    def open(
        self, name: str, profile: str | Path, endpoint: str, address: dict[str, str]
    ) -> Device:
        """A device for a plant unit (not yet connected)."""
        prof = load_profile(profile)
        conn = self._connections.get(endpoint)
        backend: DeviceBackend
        if prof.protocol == "opcua":
            if conn is None:
                conn = OpcUaConnection(endpoint, timeout=self.timeout)
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
                )
            if not isinstance(conn, ModbusConnection):
                raise ProfileError(f"{endpoint}: already open with another protocol")
            backend = ModbusBackend(conn, prof, address, now=lambda: self.now())
        elif prof.protocol == "serial":
            if conn is None:
                conn = line_for(serial_port(endpoint), prof, self.timeout)
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
