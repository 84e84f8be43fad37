"""The engine's clock: real time in production, scaled time in simulation.

A scaled clock runs ``scale`` times faster than the wall clock from an epoch;
the simulators publish their epoch and scale, so a controller in another
process runs exactly the same simulated time as the instruments.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable
from datetime import UTC, datetime
from typing import Protocol, TypeVar

T = TypeVar("T")


class Clock(Protocol):
    """What the engine needs of time."""

    scale: float

    def now(self) -> datetime:
        """Current process time (UTC, tz-aware)."""

    async def sleep(self, seconds: float) -> None:
        """Wait ``seconds`` of process time."""


class ScaledClock:
    """Process time = epoch + (wall − epoch) × scale; scale 1 is real time."""

    def __init__(self, scale: float = 1.0, epoch: datetime | None = None) -> None:
        if scale <= 0:
            raise ValueError(f"time scale must be positive, got {scale}")
        self.scale = scale
        wall = time.time()
        self.epoch = epoch if epoch is not None else datetime.fromtimestamp(wall, UTC)
        # Anchor on the monotonic clock so a wall-clock step never moves process time back.
        self._mono0 = time.monotonic()
        self._wall0 = wall

    def now(self) -> datetime:
        """Current process time."""
        wall = self._wall0 + (time.monotonic() - self._mono0)
        epoch_s = self.epoch.timestamp()
        return datetime.fromtimestamp(epoch_s + (wall - epoch_s) * self.scale, UTC)

    async def sleep(self, seconds: float) -> None:
        """Wait ``seconds`` of process time."""
        await asyncio.sleep(max(0.0, seconds) / self.scale)

    async def timeout(self, seconds: float, aw: Awaitable[T]) -> T:
        """Await ``aw`` for at most ``seconds`` of process time (TimeoutError after)."""
        return await asyncio.wait_for(aw, max(0.0, seconds) / self.scale)


def real_clock() -> ScaledClock:
    """The production clock."""
    return ScaledClock(1.0)
