"""Device backend for ASCII serial instruments: profile tags → protocol points.

Profile options: ``dialect`` (``wm-pump`` or ``mt-sics``), ``baudrate``,
``framing`` (e.g. ``8N2``), ``terminator`` (``"\\r"`` or ``"\\r\\n"``),
``poll_interval_s``; for pumps ``pump_address`` (the plant's address
``pump_address`` overrides it). A tag's ``address`` names a point of the dialect;
a method's ``address`` names a dialect method.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from datetime import UTC, datetime
from typing import Any

from drivers.errors import ProfileError
from drivers.link import Link, LinkPolicy
from drivers.mtsics import BalanceProtocol
from drivers.polling import poll_subscription
from drivers.profile import DeviceProfile, MethodSpec, TagSpec
from drivers.serial_line import SerialLine
from drivers.tags import Quality, Reading, Value
from drivers.wm_pump import PumpProtocol

DIALECTS = ("wm-pump", "mt-sics")


def line_for(
    port: str, profile: DeviceProfile, timeout: float, link_policy: LinkPolicy | None = None
) -> SerialLine:
    """A serial line configured from the profile's line settings."""
    opts: dict[str, Any] = profile.options
    return SerialLine(
        port,
        baudrate=int(opts.get("baudrate", 9600)),
        framing=str(opts.get("framing", "8N1")),
        terminator=str(opts.get("terminator", "\r\n")).encode("ascii"),
        timeout=timeout,
        link_policy=link_policy,
    )


class SerialBackend:
    """Presents a profile's capabilities over one serial instrument."""

    def __init__(
        self,
        line: SerialLine,
        profile: DeviceProfile,
        address: dict[str, str],
        *,
        now: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.now = now
        self.line = line
        self.profile = profile
        dialect = str(profile.options.get("dialect", ""))
        if dialect not in DIALECTS:
            raise ProfileError(f"profile {profile.name!r}: dialect must be one of {DIALECTS}")
        self.dialect = dialect
        self.poll_interval_s = float(profile.options.get("poll_interval_s", 1.0))
        self._pump: PumpProtocol | None = None
        self._balance: BalanceProtocol | None = None
        if dialect == "wm-pump":
            pump_address = int(address.get("pump_address", profile.options.get("pump_address", 1)))
            self._pump = PumpProtocol(line, pump_address)
        else:
            self._balance = BalanceProtocol(line)
        if line.probe is None:
            line.probe = self._probe

    @property
    def link(self) -> Link:
        """The health of the (shared) line."""
        return self.line.link

    async def _probe(self) -> None:
        """A harmless request: pump status, or the balance's serial number."""
        if self._pump is not None:
            await self._pump.read(["running"])
        else:
            assert self._balance is not None
            await self._balance.read(["serial_number"])

    async def connect(self) -> None:
        await self.line.connect()

    async def read(self, specs: Sequence[TagSpec]) -> list[Reading]:
        points = [s.address for s in specs]
        now = self.now()
        if self._pump is not None:
            values = await self._pump.read(points)
            return [
                Reading(s.capability, values[s.address], s.unit, now, Quality.GOOD) for s in specs
            ]
        assert self._balance is not None
        got = await self._balance.read(points)
        return [
            Reading(s.capability, got[s.address].value, s.unit, now, got[s.address].quality)
            for s in specs
        ]

    async def write(self, spec: TagSpec, value: Value) -> None:
        if self._pump is None:
            raise ProfileError(f"profile {self.profile.name!r}: {spec.capability} is not writable")
        await self._pump.write(spec.address, value)

    async def call(self, spec: MethodSpec, args: Sequence[Value]) -> Value:
        if args:
            raise ProfileError(f"{spec.name}: serial instrument methods take no arguments")
        if self._pump is not None:
            await self._pump.call(spec.address)
            return None
        assert self._balance is not None
        return await self._balance.call(spec.address)

    async def subscribe(
        self, specs: Sequence[TagSpec], sink: Callable[[Reading], None]
    ) -> Callable[[], Awaitable[None]]:
        """Poll the tags every ``poll_interval_s``; a failed poll delivers BAD readings."""
        return await poll_subscription(
            self.read, specs, sink, self.poll_interval_s, f"serial-{self.profile.name}"
        )
