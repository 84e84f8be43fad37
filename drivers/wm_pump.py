"""Watson-Marlow-style peristaltic pump protocol (ASCII, address-prefixed, CR-terminated).

Points a profile can map: ``speed_sp`` (rpm setpoint, read from ``nRS``, written
with ``nSP``), ``tacho`` (actual rpm, ``nRT``), ``running`` (``nZY``),
``direction`` (``CW``/``CCW`` from ``nRS``). Methods: ``start`` (``nGO``),
``stop`` (``nST``), ``reverse`` (``nRC``).
"""

from __future__ import annotations

import math
import re
from typing import Final

from drivers.errors import ProfileError, ProtocolError, WriteRejected
from drivers.serial_line import SerialLine
from drivers.tags import Value

_STATUS = re.compile(r"(?P<model>\S+) (?P<rpm>\d+(?:\.\d+)?) (?P<dir>CW|CCW) (?P<run>[01]) !")
_NUMBER = re.compile(r"\d+(?:\.\d+)?")
POINTS: Final = frozenset({"speed_sp", "tacho", "running", "direction"})
WRITABLE: Final = frozenset({"speed_sp"})
METHODS: Final = {"start": "GO", "stop": "ST", "reverse": "RC"}


class PumpProtocol:
    """One pump (by address) on a serial line."""

    def __init__(self, line: SerialLine, address: int) -> None:
        if not 1 <= address <= 16:
            raise ProfileError(f"pump address must be 1–16, got {address}")
        self.line = line
        self.address = address

    async def _ask(self, command: str) -> str:
        reply = await self.line.request(f"{self.address}{command}")
        if reply == "?":
            raise ProtocolError(f"{self.line.port}: pump refused {command!r}")
        return reply

    async def _act(self, command: str) -> None:
        reply = await self.line.request(f"{self.address}{command}")
        if reply == "?":
            raise WriteRejected(f"{self.line.port}: pump refused {command!r}")
        if reply != "OK":
            raise ProtocolError(f"{self.line.port}: {command!r}: unexpected answer {reply!r}")

    async def read(self, points: list[str]) -> dict[str, Value]:
        """Values of the named points, one request per distinct command."""
        unknown = set(points) - POINTS
        if unknown:
            raise ProfileError(f"unknown pump points {sorted(unknown)}")
        out: dict[str, Value] = {}
        if {"speed_sp", "direction"} & set(points):
            reply = await self._ask("RS")
            m = _STATUS.fullmatch(reply)
            if m is None:
                raise ProtocolError(f"{self.line.port}: bad status answer {reply!r}")
            out["speed_sp"], out["direction"] = float(m["rpm"]), m["dir"]
        if "tacho" in points:
            reply = await self._ask("RT")
            if _NUMBER.fullmatch(reply) is None:
                raise ProtocolError(f"{self.line.port}: bad tacho answer {reply!r}")
            out["tacho"] = float(reply)
        if "running" in points:
            reply = await self._ask("ZY")
            if reply not in ("0", "1"):
                raise ProtocolError(f"{self.line.port}: bad running answer {reply!r}")
            out["running"] = reply == "1"
        return out

    async def write(self, point: str, value: Value) -> None:
        """Write a writable point (``speed_sp``)."""
        if point not in WRITABLE:
            raise WriteRejected(f"pump point {point!r} is not writable")
        if (
            isinstance(value, bool)
            or not isinstance(value, int | float)
            or not math.isfinite(value)
        ):
            raise WriteRejected(f"pump speed must be a number, got {value!r}")
        await self._act(f"SP{float(value):.1f}")

    async def call(self, method: str) -> None:
        """Run ``start``, ``stop`` or ``reverse``."""
        try:
            command = METHODS[method]
        except KeyError:
            raise ProfileError(f"unknown pump method {method!r}") from None
        await self._act(command)
