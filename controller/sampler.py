"""Process data capture: subscribes to a batch's recorded tags, keeps the latest
values for conditions and monitors, and writes the samples to the record in blocks.

Sampling does not depend on how a server reports. Many servers notify only when a
value changes (report by exception); a steady value then sends nothing. Every tag
with a declared period (the CPPs) is therefore *confirmed*: when nothing was recorded
for it during its confirmation period (half its sampling period unless the profile says
otherwise), the sampler reads it and records what the
instrument answered — at the instrument's own timestamp when that is newer than the
last recorded sample, else at the time of the read on the instrument's clock (the
instrument confirmed that the value still holds). The answer is held back for two
publishing intervals and dropped if a notification of the tag arrives meanwhile, so
that a merely slow subscription keeps the record in the instrument's order. A value
is never invented: while the link is down the period's sample is a gap marker (no
value, quality ``bad``).

Loss of an instrument is decided by its link (session, keep-alive, failed reads;
see :mod:`drivers.link`), never by the silence of a healthy server: the sampler
reports each loss and each return of a device as a :class:`LinkEvent`.

Per tag, samples are recorded in strictly increasing time: a notification stamped
at or before the last recorded sample of its tag (already confirmed by a read) is
passed on to the listeners but not recorded twice.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from controller.clock import Clock
from drivers import ConnectionStatus, Device, DriverError, Quality, Reading, Value
from ebr import Journal

_log = logging.getLogger(__name__)

ReadingListener = Callable[[str, Reading], None]

DEFAULT_PERIOD_S = 60.0
"""Process seconds between two recorded samples of a CPP when its profile declares none."""

_MIN_TICK_WALL_S = 0.005
"""The confirmation loop never wakes more often than this (wall seconds)."""

_MIN_SILENCE_WALL_S = 0.1
"""A tag is confirmed only after this much wall time of silence too (two OPC UA
publishing intervals): on a fast simulated clock a confirmation period can be shorter
than the way of a notification from the server, and reading then would only duplicate
what is under way (and load instrument and controller for nothing)."""


@dataclass(frozen=True, slots=True)
class RecordedTag:
    """A tag the batch records: ``alias.capability`` on a bound device.

    ``period_s`` (process seconds) is the tag's declared sampling period: at least
    one sample per period is recorded. ``confirm_s`` (default: half the period) is
    how long the tag may stay silent before a confirmation read. None records what
    the instrument sends, without confirmation.
    """

    alias: str
    device: Device
    capability: str
    period_s: float | None = None
    confirm_s: float | None = None

    @property
    def silent_limit_s(self) -> float | None:
        """Process seconds without a sample after which the tag is read."""
        if self.period_s is None:
            return None
        return self.confirm_s if self.confirm_s is not None else self.period_s / 2

    @property
    def name(self) -> str:
        """The tag's name in the record, e.g. ``bioreactor.temperature.pv``."""
        return f"{self.alias}.{self.capability}"


@dataclass(frozen=True, slots=True)
class LinkEvent:
    """A device's link went down (``lost``) or came back.

    ``since`` is when the link went down (process time); ``at`` when this was
    decided; ``last_good`` the last good value of each recorded tag of the device
    before the loss; ``duration_s`` (on return) the process seconds it was down.
    """

    device: str
    lost: bool
    since: datetime
    at: datetime
    last_good: dict[str, Value]
    duration_s: float | None = None


LinkListener = Callable[[LinkEvent], None]


def declared_period(device: Device, capability: str) -> tuple[float, float | None]:
    """(sampling period, confirmation period) of a capability in process seconds: the
    profile tag's ``period_s`` / ``confirm_s``, else the profile's ``sample_period_s`` /
    ``confirm_period_s`` options, else :data:`DEFAULT_PERIOD_S` / half the period."""
    spec = device.profile.tags.get(capability)
    extra = {} if spec is None else spec.extra
    options = device.profile.options
    period = extra.get("period_s", options.get("sample_period_s", DEFAULT_PERIOD_S))
    confirm = extra.get("confirm_s", options.get("confirm_period_s"))
    return float(period), None if confirm is None else float(confirm)


class Sampler:
    """Subscribes to tags, confirms silent ones by reads, keeps latest values, and
    flushes samples to the journal in blocks."""

    def __init__(
        self,
        journal: Journal,
        batch_id: str,
        tags: list[RecordedTag],
        clock: Clock,
        *,
        block_rows: int = 4000,
        flush_interval_s: float = 0.5,
        on_link: LinkListener | None = None,
    ) -> None:
        self.journal = journal
        self.batch_id = batch_id
        self.tags = tags
        self.clock = clock
        self.block_rows = block_rows
        self.flush_interval_s = flush_interval_s
        self.on_link = on_link
        self.latest: dict[str, Reading] = {}
        #: devices whose link is down, with when it went down (process time)
        self.lost: dict[str, datetime] = {}
        #: confirmation reads made, and samples they recorded
        self.confirmations = 0
        self._rows: list[tuple[str, datetime, Any, str, str]] = []
        self._last_at: dict[str, datetime] = {}
        self._last_good: dict[str, Value] = {}
        #: per device: process seconds its latest notification's timestamp was behind ours
        self._lag: dict[str, float] = {}
        #: confirmations held back: tag name → (stamped reading, monotonic time read)
        self._pending: dict[str, tuple[Reading, float]] = {}
        self._listeners: list[ReadingListener] = []
        self._cancels: list[Callable[[], Awaitable[None]]] = []
        self._unwatch: list[Callable[[], None]] = []
        self._tasks: list[asyncio.Task[None]] = []
        self._changed = asyncio.Event()

    def listen(self, listener: ReadingListener) -> None:
        """Call ``listener(tag_name, reading)`` on every new value."""
        self._listeners.append(listener)

    def _by_device(self) -> list[tuple[Device, list[RecordedTag]]]:
        by_device: dict[int, tuple[Device, list[RecordedTag]]] = {}
        for tag in self.tags:
            by_device.setdefault(id(tag.device), (tag.device, []))[1].append(tag)
        return list(by_device.values())

    async def start(self) -> None:
        """Subscribe to every tag (one subscription per device), watch every link and
        start confirming tags with a period."""
        for device, tags in self._by_device():
            names = {t.capability: t.name for t in tags}

            def sink(
                reading: Reading, names: dict[str, str] = names, device: str = device.name
            ) -> None:
                when = _aware(reading.source_time)
                if when is not None:  # how far the instrument's time runs behind ours
                    self._lag[device] = (self.clock.now() - when).total_seconds()
                name = names[reading.capability]
                self._pending.pop(name, None)  # the subscription delivers: no need
                self._on_reading(name, reading, notified=True)

            cancel = await device.subscribe([t.capability for t in tags], sink)
            self._cancels.append(cancel)
            self._unwatch.append(device.watch_status(self._status_listener(device, tags)))
            periodic = [t for t in tags if t.period_s is not None]
            if periodic:
                self._tasks.append(
                    asyncio.create_task(self._confirm(device, periodic), name=f"confirm {device}")
                )
        self._tasks.append(asyncio.create_task(self._flush_periodically()))

    # -- the link ------------------------------------------------------------------------

    def _status_listener(
        self, device: Device, tags: list[RecordedTag]
    ) -> Callable[[ConnectionStatus], None]:
        def listener(status: ConnectionStatus) -> None:
            self._on_status(device, tags, status)

        return listener

    def _on_status(self, device: Device, tags: list[RecordedTag], status: ConnectionStatus) -> None:
        now = self.clock.now()
        if status is ConnectionStatus.CONNECTED:
            since = self.lost.pop(device.name, None)
            if since is not None and self.on_link is not None:
                duration = max(0.0, (now - since).total_seconds())
                self.on_link(LinkEvent(device.name, False, since, now, {}, duration))
            return
        if device.name in self.lost:
            return
        down = device.backend.link.down_s or 0.0
        since = now - timedelta(seconds=down * self.clock.scale)
        self.lost[device.name] = since
        last = {t.name: self._last_good.get(t.name) for t in tags}
        for tag in tags:  # the gap starts here: one explicit marker per tag
            self._record_gap(tag, now)
        if self.on_link is not None:
            self.on_link(LinkEvent(device.name, True, since, now, last))

    def _record_gap(self, tag: RecordedTag, when: datetime) -> None:
        last = self._last_at.get(tag.name)
        if last is not None and when <= last:
            return
        spec = tag.device.profile.tags.get(tag.capability)
        unit = "" if spec is None else spec.unit
        self._on_reading(tag.name, Reading(tag.capability, None, unit, when, Quality.BAD))

    # -- confirmation reads --------------------------------------------------------------

    async def _confirm(self, device: Device, tags: list[RecordedTag]) -> None:
        """Every tag silent for its period is read (or, link down, marked as a gap)."""
        floor = _MIN_SILENCE_WALL_S * self.clock.scale
        limits = {t.name: max(t.silent_limit_s or DEFAULT_PERIOD_S, floor) for t in tags}
        tick_wall = max(_MIN_TICK_WALL_S, min(limits.values()) / 4 / self.clock.scale)
        for tag in tags:
            self._last_at.setdefault(tag.name, self.clock.now())
        while True:
            await asyncio.sleep(tick_wall)
            self._commit([t.name for t in tags], _MIN_SILENCE_WALL_S)
            now = self.clock.now()
            due = [
                t
                for t in tags
                if t.name not in self._pending
                and (now - self._last_at[t.name]).total_seconds() >= limits[t.name]
            ]
            if due:
                await self.confirm(device, due)

    def _commit(self, names: list[str], held_wall_s: float) -> None:
        """Record the confirmations held back at least ``held_wall_s`` (wall) during which
        no notification of their tag arrived (a notification drops its tag's)."""
        now = time.monotonic()
        for name in names:
            pending = self._pending.get(name)
            if pending is not None and now - pending[1] >= held_wall_s:
                del self._pending[name]
                self._on_reading(name, pending[0])

    async def confirm(self, device: Device, tags: list[RecordedTag], *, hold: bool = True) -> bool:
        """Read ``tags`` now; a gap marker if the link is down or the read fails. True
        when the instrument answered.

        The answer is held back (``hold``) for two publishing intervals and recorded
        only if no notification of the tag arrives meanwhile: a subscription that is
        merely slow then keeps the record in the instrument's own order and times.
        """
        if device.name not in self.lost and device.connection_status is ConnectionStatus.CONNECTED:
            try:
                readings = await device.read([t.capability for t in tags])
            except DriverError as exc:
                _log.debug("%s: confirmation read failed: %s", device.name, exc)
            else:
                self.confirmations += 1
                at = self.clock.now() - timedelta(seconds=self._lag.get(device.name, 0.0))
                taken = time.monotonic()
                for tag, reading in zip(tags, readings, strict=True):
                    self._pending[tag.name] = (self._stamped(tag.name, reading, at), taken)
                if not hold:
                    self._commit([t.name for t in tags], 0.0)
                return True
        now = self.clock.now()
        for tag in tags:
            self._record_gap(tag, now)
        return False

    def _stamped(self, name: str, reading: Reading, now: datetime) -> Reading:
        """A read value at its own time when that is new, else at the time of the read
        on the instrument's clock (``now``: ours less the lag its notifications show, so
        that a confirmation never runs ahead of values the instrument has yet to send)."""
        when = _aware(reading.source_time)
        last = self._last_at.get(name)
        if when is not None and (last is None or when > last):
            return reading
        return Reading(reading.capability, reading.value, reading.unit, now, reading.quality)

    # -- recording -----------------------------------------------------------------------

    def _on_reading(self, name: str, reading: Reading, *, notified: bool = False) -> None:
        when = _aware(reading.source_time) or self.clock.now()
        last = self._last_at.get(name)
        fresh = last is None or when > last
        if not fresh and notified:
            # Already covered by a confirmation read stamped later: not recorded twice,
            # and not taken as newer than what the read saw.
            return
        if fresh:
            self._last_at[name] = when
            self._rows.append((name, when, reading.value, reading.unit, reading.quality.value))
        if reading.quality is not Quality.BAD:
            self._last_good[name] = reading.value
        self.latest[name] = reading
        for listener in self._listeners:
            listener(name, reading)
        self._changed.set()

    async def wait_for(self, predicate: Callable[[], bool]) -> None:
        """Return once ``predicate()`` holds, re-checking on every new value."""
        while not predicate():
            self._changed.clear()
            await self._changed.wait()

    def _uncovered(self, until: datetime) -> list[RecordedTag]:
        out = []
        for tag in self.tags:
            reading = self.latest.get(tag.name)
            when = None if reading is None else _aware(reading.source_time)
            if when is None or when < until:
                out.append(tag)
        return out

    async def drain(self, until: datetime, timeout_s: float = 2.0) -> bool:
        """Make the record cover every tag up to ``until``: tags whose last value is
        older are confirmed by a read (bounded). False if an instrument did not answer."""

        async def confirm_all() -> bool:
            ok = True
            for device, tags in self._by_device():
                missing = [t for t in self._uncovered(until) if t in tags]
                if missing:
                    ok = await self.confirm(device, missing, hold=False) and ok
            return ok

        # Notifications under way first (bounded), then reads for what stays uncovered.
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.wait_for(lambda: not self._uncovered(until)), timeout_s / 2)
        if not self._uncovered(until):
            return True
        try:
            await asyncio.wait_for(confirm_all(), timeout_s / 2)
        except TimeoutError:
            return False
        return not self._uncovered(until)

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
        """Unsubscribe, stop confirming and write everything still buffered."""
        for unwatch in self._unwatch:
            unwatch()
        self._unwatch.clear()
        tasks, self._tasks = self._tasks, []
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        for cancel in self._cancels:
            await cancel()
        self._cancels.clear()
        await self.flush()


def _aware(when: datetime | None) -> datetime | None:
    if when is not None and when.tzinfo is None:
        return when.replace(tzinfo=UTC)
    return when
