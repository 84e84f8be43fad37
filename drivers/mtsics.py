"""Mettler-Toledo MT-SICS level-0 balance protocol (ASCII, CRLF).

Points a profile can map: ``weight`` and ``stable`` (one ``SI``: immediate value,
stable or dynamic), ``weight_stable`` (``S``: the stable value; while the pan
moves it is not available), ``serial_number`` (``I4``). Methods: ``tare`` (``T``)
and ``zero`` (``Z``). Overload (``S +``) and underload (``S -``) read as BAD quality.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Final

from drivers.errors import ProfileError, ProtocolError, WriteRejected
from drivers.serial_line import SerialLine
from drivers.tags import Quality, Value

_WEIGHT = re.compile(r"(?P<cmd>S|T) (?P<status>[SD]) +(?P<value>-?\d+(?:\.\d+)?) (?P<unit>\S+)")
_I4 = re.compile(r'I4 A "(?P<sn>[^"]*)"')
POINTS: Final = frozenset({"weight", "stable", "weight_stable", "serial_number"})
ERRORS: Final = {"ES": "syntax error", "ET": "transmission error", "EL": "logic error"}


@dataclass(frozen=True, slots=True)
class PointValue:
    """A value read from the balance and how far to trust it."""

    value: Value
    quality: Quality


class BalanceProtocol:
    """One MT-SICS balance on a serial line."""

    def __init__(self, line: SerialLine) -> None:
        self.line = line

    def _errors(self, command: str, reply: str) -> None:
        if reply in ERRORS:
            raise ProtocolError(f"{self.line.port}: {command!r}: balance says {ERRORS[reply]}")

    async def _weigh(self, command: str) -> tuple[PointValue, PointValue]:
        reply = await self.line.request(command)
        self._errors(command, reply)
        if reply in ("S +", "S -"):
            bad = PointValue(None, Quality.BAD)
            return bad, bad
        if reply == "S I":  # busy: no stable value right now
            return PointValue(None, Quality.UNCERTAIN), PointValue(False, Quality.GOOD)
        m = _WEIGHT.fullmatch(reply)
        if m is None or m["cmd"] != "S":
            raise ProtocolError(f"{self.line.port}: {command!r}: bad weight answer {reply!r}")
        if m["unit"] != "g":
            raise ProtocolError(f"{self.line.port}: balance reports {m['unit']!r}, expected 'g'")
        stable = m["status"] == "S"
        weight = PointValue(float(m["value"]), Quality.GOOD if stable else Quality.UNCERTAIN)
        return weight, PointValue(stable, Quality.GOOD)

    async def read(self, points: list[str]) -> dict[str, PointValue]:
        """Values of the named points; ``weight`` and ``stable`` share one ``SI``."""
        unknown = set(points) - POINTS
        if unknown:
            raise ProfileError(f"unknown balance points {sorted(unknown)}")
        out: dict[str, PointValue] = {}
        if {"weight", "stable"} & set(points):
            out["weight"], out["stable"] = await self._weigh("SI")
        if "weight_stable" in points:
            out["weight_stable"], _ = await self._weigh("S")
        if "serial_number" in points:
            reply = await self.line.request("I4")
            self._errors("I4", reply)
            m = _I4.fullmatch(reply)
            if m is None:
                raise ProtocolError(f"{self.line.port}: bad I4 answer {reply!r}")
            out["serial_number"] = PointValue(m["sn"], Quality.GOOD)
        return out

    async def call(self, method: str) -> Value:
        """``tare`` (returns the tare weight, g) or ``zero``."""
        if method == "tare":
            reply = await self.line.request("T")
            self._errors("T", reply)
            if reply in ("T I", "T +", "T -"):
                raise WriteRejected(f"{self.line.port}: tare refused ({reply!r})")
            m = _WEIGHT.fullmatch(reply)
            if m is None or m["cmd"] != "T":
                raise ProtocolError(f"{self.line.port}: bad tare answer {reply!r}")
            return float(m["value"])
        if method == "zero":
            reply = await self.line.request("Z")
            self._errors("Z", reply)
            if reply in ("Z I", "Z +", "Z -"):
                raise WriteRejected(f"{self.line.port}: zero refused ({reply!r})")
            if reply != "Z A":
                raise ProtocolError(f"{self.line.port}: bad zero answer {reply!r}")
            return None
        raise ProfileError(f"unknown balance method {method!r}")
