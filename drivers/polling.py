"""Subscriptions for protocols without them (Modbus, serial): poll at an interval."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable, Sequence
from datetime import UTC, datetime

from drivers.errors import DriverError
from drivers.profile import TagSpec
from drivers.tags import Quality, Reading


async def poll_subscription(
    read: Callable[[Sequence[TagSpec]], Awaitable[list[Reading]]],
    specs: Sequence[TagSpec],
    sink: Callable[[Reading], None],
    interval_s: float,
    name: str,
) -> Callable[[], Awaitable[None]]:
    """Deliver every tag every ``interval_s``; a failed poll delivers BAD readings.

    Returns an async cancel. Polls never overlap: the next starts ``interval_s``
    after the previous one ended.
    """
    specs = list(specs)

    async def poll() -> None:
        while True:
            try:
                readings = await read(specs)
            except DriverError:
                now = datetime.now(UTC)
                readings = [Reading(s.capability, None, s.unit, now, Quality.BAD) for s in specs]
            for reading in readings:
                sink(reading)
            await asyncio.sleep(interval_s)

    task = asyncio.create_task(poll(), name=f"poll-{name}")

    async def cancel() -> None:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task

    return cancel
