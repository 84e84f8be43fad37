"""A Watson-Marlow-style peristaltic pump: ASCII commands over RS-232/485 (9600 8N2, CR).

Commands carry the pump's address ``n`` (1–16) as a prefix; a pump ignores
requests for other addresses (multi-drop line). Claims no vendor compatibility.

| request | reply | meaning |
|---|---|---|
| `nSP12.5` | `OK` | set speed, rpm (0–220); out of range → `?` |
| `nGO` / `nST` | `OK` | start / stop |
| `nRC` | `OK` | reverse direction (CW ↔ CCW) |
| `nRS` | `520Du 12.5 CW 1 !` | status: model, speed setpoint, direction, running |
| `nRT` | `12.5` | tachometer: actual rpm (0 when stopped) |
| `nZY` | `1` / `0` | running? |
| anything else | `?` | |

Flow = rpm × tubing mL/rev, clockwise onto the bench's balance, counter-clockwise off it.
Faults: sensor faults on target ``tacho`` (the `nRT` reading; the flow is unaffected).
"""

from __future__ import annotations

import re
from typing import Final

from simulators.serial_instruments.bench import Bench
from simulators.serial_instruments.pty_port import PtyInstrument

MAX_RPM: Final = 220.0
MODEL: Final = "520Du"
_REQUEST = re.compile(r"(?P<addr>\d{1,2})(?P<cmd>[A-Z]{2})(?P<arg>.*)")


class PumpSimulator(PtyInstrument):
    """A peristaltic pump on a pty whose flow goes onto ``bench``."""

    sensor_targets = ("tacho",)

    def __init__(
        self,
        bench: Bench,
        *,
        name: str = "pump",
        address: int = 1,
        tubing_ml_per_rev: float = 0.5,
        link: str | None = None,
    ) -> None:
        super().__init__(baudrate=9600, framing="8N2", terminator=b"\r", link=link)
        if not 1 <= address <= 16:
            raise ValueError(f"pump address must be 1–16, got {address}")
        if not tubing_ml_per_rev > 0:
            raise ValueError(f"tubing_ml_per_rev must be positive, got {tubing_ml_per_rev}")
        self.bench = bench
        self.name = name
        self.address = address
        self.tubing_ml_per_rev = tubing_ml_per_rev
        self.rpm_sp = 0.0
        self.clockwise = True
        self.running = False

    @property
    def flow_ml_per_min(self) -> float:
        """Signed flow onto the balance (mL/min)."""
        if not self.running:
            return 0.0
        return self.rpm_sp * self.tubing_ml_per_rev * (1.0 if self.clockwise else -1.0)

    def _apply(self, now: float) -> None:
        self.bench.set_flow(self.name, self.flow_ml_per_min / 60.0, now)

    def handle(self, line: str, now: float) -> str | None:
        match = _REQUEST.fullmatch(line.strip())
        if match is None:
            return "?"
        if int(match["addr"]) != self.address:
            return None
        cmd, arg = match["cmd"], match["arg"]
        if cmd == "SP":
            try:
                rpm = float(arg)
            except ValueError:
                return "?"
            if not 0.0 <= rpm <= MAX_RPM:
                return "?"
            self.rpm_sp = rpm
        elif arg:
            return "?"
        elif cmd == "GO":
            self.running = True
        elif cmd == "ST":
            self.running = False
        elif cmd == "RC":
            self.clockwise = not self.clockwise
        elif cmd == "RS":
            direction = "CW" if self.clockwise else "CCW"
            return f"{MODEL} {self.rpm_sp:.1f} {direction} {int(self.running)} !"
        elif cmd == "RT":
            return f"{self.faults.sensor('tacho', self.rpm_sp if self.running else 0.0):.1f}"
        elif cmd == "ZY":
            return "1" if self.running else "0"
        else:
            return "?"
        self._apply(now)
        return "OK"
