"""A scaled simulation clock that several processes can share.

Simulated UTC time is ``epoch + (wall_now - epoch) * scale``. Two processes that
know the same ``epoch`` and ``scale`` compute the same simulated time, which is
how an OPC UA client follows a simulator (it reads ``Simulation.Epoch`` and
``Simulation.TimeScale`` from the server).

The wall clock is sampled once at construction; later readings add a
``time.monotonic()`` delta, so simulated time never steps backwards even if the
system clock is adjusted.
"""

from __future__ import annotations

import asyncio
import math
import time
from datetime import UTC, datetime, timedelta

__all__ = ["ScaledClock"]


class ScaledClock:
    """Simulated UTC time running ``scale`` times faster than the wall clock."""

    __slots__ = ("_epoch", "_mono_anchor", "_scale", "_wall_offset_s")

    def __init__(self, scale: float, epoch: datetime | None = None) -> None:
        """Start a clock; ``epoch`` defaults to the current UTC wall time."""
        if not (math.isfinite(scale) and scale > 0.0):
            raise ValueError(f"time scale must be a positive finite number, got {scale!r}")
        wall = time.time()
        self._mono_anchor = time.monotonic()
        if epoch is None:
            epoch = datetime.fromtimestamp(wall, UTC)
        elif epoch.tzinfo is None or epoch.utcoffset() is None:
            raise ValueError("epoch must be timezone-aware")
        self._epoch = epoch.astimezone(UTC)
        self._scale = float(scale)
        # Wall seconds between the epoch and the monotonic anchor.
        self._wall_offset_s = wall - self._epoch.timestamp()

    @property
    def scale(self) -> float:
        """Simulated seconds per wall-clock second."""
        return self._scale

    @property
    def epoch(self) -> datetime:
        """UTC instant at which simulated and wall time coincide."""
        return self._epoch

    def elapsed(self) -> float:
        """Simulated seconds since the epoch (monotonic, never decreases)."""
        return (self._wall_offset_s + time.monotonic() - self._mono_anchor) * self._scale

    def now(self) -> datetime:
        """Current simulated time (timezone-aware UTC)."""
        return self._epoch + timedelta(seconds=self.elapsed())

    def wall_delay(self, sim_seconds: float) -> float:
        """Wall-clock seconds that ``sim_seconds`` of simulated time take."""
        if not (math.isfinite(sim_seconds) and sim_seconds >= 0.0):
            raise ValueError(f"a delay must be a non-negative finite number, got {sim_seconds!r}")
        return sim_seconds / self._scale

    async def sleep(self, sim_seconds: float) -> None:
        """Sleep for ``sim_seconds`` of simulated time."""
        await asyncio.sleep(self.wall_delay(sim_seconds))

    def __repr__(self) -> str:
        return f"ScaledClock(scale={self._scale!r}, epoch={self._epoch.isoformat()!r})"
