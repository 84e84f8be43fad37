"""Typed tags: one capability of a device, its value quality and time."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from drivers.device import Device


class Quality(StrEnum):
    """OPC-style value quality, reduced to the three classes the engine acts on."""

    GOOD = "good"
    UNCERTAIN = "uncertain"
    BAD = "bad"


Value = float | int | bool | str | None


@dataclass(frozen=True, slots=True)
class Reading:
    """One value of a tag as the instrument reported it."""

    capability: str
    value: Value
    unit: str
    source_time: datetime | None
    quality: Quality


ReadingSink = Callable[[Reading], None]


class Tag:
    """A capability of a device (e.g. ``temperature.sp``), with unit and access."""

    def __init__(self, device: Device, capability: str, unit: str, writable: bool) -> None:
        self.device = device
        self.capability = capability
        self.unit = unit
        self.writable = writable

    async def read(self) -> Reading:
        """Read the current value from the instrument."""
        return (await self.device.read([self.capability]))[0]

    async def write(self, value: Value) -> Value:
        """Write a value; returns what the device reads back (verified for critical tags)."""
        return await self.device.write(self.capability, value)

    def subscribe(self, sink: ReadingSink) -> Awaitable[Callable[[], Awaitable[None]]]:
        """Deliver every change of this tag to ``sink``; await the result to unsubscribe."""
        return self.device.subscribe([self.capability], sink)

    def __repr__(self) -> str:
        return f"Tag({self.device.name}:{self.capability} [{self.unit}])"
