"""Process data capture: subscribes to a batch's recorded tags, keeps the latest
values for conditions and monitors, and writes the samples to the record in blocks.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from drivers import Device, Quality, Reading
from ebr import Journal

ReadingListener = Callable[[str, Reading], None]
SilenceListener = Callable[[str, float, bool], None]
"""Called with (device name, silent wall seconds, lost) when an instrument falls silent
(lost=True) or delivers again (lost=False)."""


@dataclass(frozen=True, slots=True)
class RecordedTag:
    """A tag the batch records: ``alias.capability`` on a bound device."""

    alias: str
    device: Device
    capability: str

    @property
    def name(self) -> str:
        """The tag's name in the record, e.g. ``bioreactor.temperature.pv``."""
        return f"{self.alias}.{self.capability}"


class Sampler:
    """Subscribes to tags, keeps latest values, flushes samples to the journal in blocks."""

    def __init__(
        self,
        journal: Journal,
        batch_id: str,
        tags: list[RecordedTag],
        *,
        block_rows: int = 4000,
        flush_interval_s: float = 0.5,
        silence_s: float = 300.0,
        on_silence: SilenceListener | None = None,
    ) -> None:
        self.journal = journal
        self.batch_id = batch_id
        self.tags = tags
        self.block_rows = block_rows
        self.flush_interval_s = flush_interval_s
        self.latest: dict[str, Reading] = {}
        self._rows: list[tuple[str, datetime, Any, str, str]] = []
        self._listeners: list[ReadingListener] = []
        self._cancels: list[Callable[[], Awaitable[None]]] = []
        self._flusher: asyncio.Task[None] | None = None
        self._changed = asyncio.Event()
        self.silence_s = silence_s
        self.on_silence = on_silence
        self.lost: set[str] = set()
        self._last_good: dict[str, float] = {}
        self._watchdog: asyncio.Task[None] | None = None

    def listen(self, listener: ReadingListener) -> None:
        """Call ``listener(tag_name, reading)`` on every new value."""
        self._listeners.append(listener)

    async def start(self) -> None:
        """Subscribe to every tag (one subscription per device)."""
        by_device: dict[int, tuple[Device, list[RecordedTag]]] = {}
        for tag in self.tags:
            by_device.setdefault(id(tag.device), (tag.device, []))[1].append(tag)
        for device, tags in by_device.values():
            names = {t.capability: t.name for t in tags}

            def sink(
                reading: Reading, names: dict[str, str] = names, device: str = device.name
            ) -> None:
                self._on_reading(names[reading.capability], reading)
                if reading.quality is not Quality.BAD:
                    self._seen(device)

            cancel = await device.subscribe([t.capability for t in tags], sink)
            self._cancels.append(cancel)
            self._last_good[device.name] = time.monotonic()
        self._flusher = asyncio.create_task(self._flush_periodically())
        self._watchdog = asyncio.create_task(self._watch())

    def _seen(self, device: str) -> None:
        self._last_good[device] = time.monotonic()
        if device in self.lost:
            self.lost.discard(device)
            if self.on_silence is not None:
                self.on_silence(device, 0.0, False)

    async def _watch(self) -> None:
        """Report an instrument that delivered no good value for ``silence_s`` (wall)."""
        while True:
            await asyncio.sleep(self.silence_s / 4)
            now = time.monotonic()
            for device, last in self._last_good.items():
                silent = now - last
                if silent > self.silence_s and device not in self.lost:
                    self.lost.add(device)
                    if self.on_silence is not None:
                        self.on_silence(device, silent, True)

    def _on_reading(self, name: str, reading: Reading) -> None:
        when = reading.source_time or datetime.now(UTC)
        if when.tzinfo is None:
            when = when.replace(tzinfo=UTC)
        self.latest[name] = reading
        self._rows.append((name, when, reading.value, reading.unit, reading.quality.value))
        for listener in self._listeners:
            listener(name, reading)
        self._changed.set()

    async def wait_for(self, predicate: Callable[[], bool]) -> None:
        """Return once ``predicate()`` holds, re-checking on every new value."""
        while not predicate():
            self._changed.clear()
            await self._changed.wait()

    async def drain(self, until: datetime, timeout_s: float = 2.0) -> bool:
        """Wait (bounded) until every tag has a value stamped at or after ``until``,
        so the record covers the whole batch; False if the instruments did not deliver."""

        def covered() -> bool:
            for tag in self.tags:
                reading = self.latest.get(tag.name)
                when = None if reading is None else reading.source_time
                if when is None:
                    return False
                if when.tzinfo is None:
                    when = when.replace(tzinfo=UTC)
                if when < until:
                    return False
            return True

        try:
            await asyncio.wait_for(self.wait_for(covered), timeout_s)
        except TimeoutError:
            return False
        return True

    async def _flush_periodically(self) -> None:
        while True:
            await asyncio.sleep(self.flush_interval_s)
            await self.flush()

    async def flush(self) -> None:
        """Write buffered samples as blocks (each block's digest enters the journal)."""
        while self._rows:
            rows, self._rows = self._rows[: self.block_rows], self._rows[self.block_rows :]
            await self.journal.append_samples(self.batch_id, rows)

    async def stop(self) -> None:
        """Unsubscribe and write everything still buffered."""
        if self._watchdog is not None:
            self._watchdog.cancel()
        for cancel in self._cancels:
            await cancel()
        self._cancels.clear()
        if self._flusher is not None:
            self._flusher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._flusher
        await self.flush()
