"""A Mettler-Toledo MT-SICS level-0 balance (9600 8N1, CRLF). Claims no vendor compatibility.

| request | reply |
|---|---|
| `S` | `S S     100.00 g` (stable net weight); `S I` while the pan moves |
| `SI` | `S S …` or `S D …` (dynamic) immediately |
| `T` | `T S     100.00 g` (tare = current gross); `T I` while moving |
| `Z` | `Z A` (zero = current load, tare cleared); `Z I` while moving |
| `I4` | `I4 A "B021002593"` (serial number) |
| anything else | `ES` (syntax error) |

Above ``capacity_g`` gross the weight replies are `S +` (overload); below −5 g,
`S -` (underload). Faults: sensor faults on target ``weight``; ``alarm`` makes the
balance report overload (`S +`) until cleared.
"""

from __future__ import annotations

from typing import Final

from simulators.serial_instruments.bench import Bench
from simulators.serial_instruments.pty_port import PtyInstrument

UNDERLOAD_G: Final = -5.0


class BalanceSimulator(PtyInstrument):
    """An MT-SICS balance on a pty weighing what is on ``bench``."""

    sensor_targets = ("weight",)
    has_alarm = True

    def __init__(
        self,
        bench: Bench,
        *,
        capacity_g: float = 2200.0,
        serial_number: str = "B021002593",
        link: str | None = None,
    ) -> None:
        super().__init__(baudrate=9600, framing="8N1", terminator=b"\r\n", link=link)
        if not capacity_g > 0:
            raise ValueError(f"capacity_g must be positive, got {capacity_g}")
        self.bench = bench
        self.capacity_g = capacity_g
        self.serial_number = serial_number
        self.zero_g = 0.0
        self.tare_g = 0.0

    def gross(self, now: float) -> float:
        """Gross weight (g) relative to the last zero, as the (perhaps faulty) cell reads it."""
        return self.faults.sensor("weight", self.bench.mass(now) - self.zero_g)

    def _range(self, prefix: str, gross: float) -> str | None:
        if gross > self.capacity_g or self.faults.has("alarm"):
            return f"{prefix} +"
        if gross < UNDERLOAD_G:
            return f"{prefix} -"
        return None

    def handle(self, line: str, now: float) -> str | None:
        cmd = line.strip()
        gross = self.gross(now)
        moving = self.bench.moving(now)
        if cmd in ("S", "SI"):
            out = self._range("S", gross)
            if out:
                return out
            if cmd == "S" and moving:
                return "S I"
            return f"S {'D' if moving else 'S'} {gross - self.tare_g:>10.2f} g"
        if cmd == "T":
            out = self._range("T", gross)
            if out:
                return out
            if moving:
                return "T I"
            self.tare_g = gross
            return f"T S {self.tare_g:>10.2f} g"
        if cmd == "Z":
            if moving:
                return "Z I"
            out = self._range("Z", gross)
            if out:
                return out
            self.zero_g += gross
            self.tare_g = 0.0
            return "Z A"
        if cmd == "I4":
            return f'I4 A "{self.serial_number}"'
        return "ES"
