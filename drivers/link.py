"""Connection health: a status tag with a blip mask, and reconnection with capped backoff.

Every connection (OPC UA session, Modbus client, serial line) owns one :class:`Link`.
The connection reports each exchange: :meth:`Link.ok` after an answer, :meth:`Link.lost`
after a timeout or a dropped connection. The link turns that into a
:class:`ConnectionStatus`:

* ``connected`` — the last exchange succeeded, or the connection has been down for
  less than ``blip_s`` (a short blip does not flip the status);
* ``reconnecting`` — down for at least ``blip_s``;
* ``failed`` — down for at least ``fail_after_s`` (it keeps trying, at the capped delay).

While down, a background task reconnects (close, connect, probe; OPC UA also re-creates
its subscriptions) with exponential backoff from ``backoff_initial_s`` doubling up to
``backoff_max_s``; every attempt is bounded by ``attempt_timeout_s``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any

from drivers.errors import DriverError, ProfileError

_log = logging.getLogger(__name__)


class ConnectionStatus(StrEnum):
    """What a connection-status tag reports."""

    CONNECTED = "connected"
    RECONNECTING = "reconnecting"
    FAILED = "failed"


STATUS_CAPABILITY = "connection.status"
"""The capability name under which every device exposes its connection status."""


@dataclass(frozen=True, slots=True)
class LinkPolicy:
    """Timing of status and reconnection (wall-clock seconds)."""

    blip_s: float = 1.0
    fail_after_s: float = 10.0
    backoff_initial_s: float = 0.1
    backoff_max_s: float = 5.0
    attempt_timeout_s: float = 5.0

    def __post_init__(self) -> None:
        for name in (
            "blip_s",
            "fail_after_s",
            "backoff_initial_s",
            "backoff_max_s",
            "attempt_timeout_s",
        ):
            value = getattr(self, name)
            if not (isinstance(value, int | float) and math.isfinite(value) and value > 0):
                raise ProfileError(f"link policy: {name} must be a positive number, got {value!r}")
        if self.fail_after_s < self.blip_s:
            raise ProfileError("link policy: fail_after_s must not be shorter than blip_s")
        if self.backoff_max_s < self.backoff_initial_s:
            raise ProfileError("link policy: backoff_max_s must not be below backoff_initial_s")

    def with_options(self, options: dict[str, Any], where: str) -> LinkPolicy:
        """This policy with ``status_blip_s``, ``status_fail_after_s``,
        ``reconnect_backoff_initial_s`` and ``reconnect_backoff_max_s`` overridden by a profile."""
        keys = {
            "status_blip_s": "blip_s",
            "status_fail_after_s": "fail_after_s",
            "reconnect_backoff_initial_s": "backoff_initial_s",
            "reconnect_backoff_max_s": "backoff_max_s",
        }
        changes = {field: options[key] for key, field in keys.items() if key in options}
        if not changes:
            return self
        values = {f: getattr(self, f) for f in keys.values()} | changes
        try:
            return LinkPolicy(**values, attempt_timeout_s=self.attempt_timeout_s)
        except ProfileError as exc:
            raise ProfileError(f"{where}: {exc}") from None


StatusListener = Callable[[ConnectionStatus], None]
RecoveryListener = Callable[[bool], None]
"""Called when a connection is back after being down, with ``masked``: True when the
outage was shorter than the blip mask (the status never left ``connected``)."""


class Link:
    """Health of one connection; runs its reconnection while it is down."""

    def __init__(
        self,
        name: str,
        policy: LinkPolicy,
        reconnect: Callable[[], Awaitable[None]],
    ) -> None:
        """``reconnect`` closes, reopens and probes the connection (raises DriverError)."""
        self.name = name
        self.policy = policy
        self._reconnect = reconnect
        self._ever_up = False
        self._down_since: float | None = None
        self._reported: ConnectionStatus | None = None
        self._listeners: list[StatusListener] = []
        self._recovery: list[RecoveryListener] = []
        self._task: asyncio.Task[None] | None = None
        self._timers: list[asyncio.TimerHandle] = []
        self._closed = False
        #: Reconnection attempts made so far (successful or not).
        self.attempts = 0
        #: Times the connection came back after being down.
        self.recoveries = 0
        #: When the instrument says it last started, read at every (re)connect where the
        #: protocol tells (OPC UA ``ServerStatus.StartTime``); None where it does not.
        #: A value that changed across a reconnection means the instrument restarted.
        self.instrument_started: datetime | None = None

    @property
    def up(self) -> bool:
        """True when the last exchange succeeded."""
        return self._ever_up and self._down_since is None

    @property
    def down_s(self) -> float | None:
        """Wall seconds since the connection went down; None while it is up."""
        if self._down_since is None:
            return None
        return time.monotonic() - self._down_since

    @property
    def status(self) -> ConnectionStatus:
        """The status with the blip mask and failure timeout applied."""
        if self._down_since is None:
            return ConnectionStatus.CONNECTED if self._ever_up else ConnectionStatus.RECONNECTING
        down = time.monotonic() - self._down_since
        if down >= self.policy.fail_after_s:
            return ConnectionStatus.FAILED
        if down >= self.policy.blip_s or not self._ever_up:
            return ConnectionStatus.RECONNECTING
        return ConnectionStatus.CONNECTED

    def watch(self, listener: StatusListener) -> Callable[[], None]:
        """Call ``listener`` with every change of :attr:`status`; returns an unwatch."""
        self._listeners.append(listener)

        def unwatch() -> None:
            with contextlib.suppress(ValueError):
                self._listeners.remove(listener)

        return unwatch

    def on_recovery(self, listener: RecoveryListener) -> Callable[[], None]:
        """Call ``listener(masked)`` each time the connection is back after being down
        (also after a blip the status masked: an instrument may restart that fast);
        returns an unwatch."""
        self._recovery.append(listener)

        def unwatch() -> None:
            with contextlib.suppress(ValueError):
                self._recovery.remove(listener)

        return unwatch

    def ok(self) -> None:
        """An exchange succeeded: the connection is up."""
        if self._down_since is None and self._reported is ConnectionStatus.CONNECTED:
            return  # already up and reported so (no timers run while up): nothing changes
        was_down = self._down_since is not None
        masked = was_down and self._reported is ConnectionStatus.CONNECTED
        self._ever_up = True
        self._down_since = None
        self._cancel_timers()
        if was_down:
            # The reconnect task (if any) sees the link up after its sleep and ends; it
            # is not cancelled here, since this may run inside its own attempt.
            self.recoveries += 1
        self._publish()
        if was_down:
            for listener in list(self._recovery):
                try:
                    listener(masked)
                except Exception:  # a broken listener must not stop the others
                    _log.exception("%s: recovery listener failed", self.name)

    def lost(self, reason: BaseException | str) -> None:
        """A timeout or a dropped connection: mark down and start reconnecting."""
        if self._closed:
            return
        if self._down_since is None:
            _log.info("%s: connection lost (%s)", self.name, reason)
            self._down_since = time.monotonic()
            loop = asyncio.get_running_loop()
            self._cancel_timers()
            for delay in (self.policy.blip_s, self.policy.fail_after_s):
                self._timers.append(loop.call_later(delay + 0.001, self._publish))
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self._run(), name=f"reconnect {self.name}")
        self._publish()

    async def close(self) -> None:
        """Stop reconnecting (idempotent); the status stays as it was."""
        self._closed = True
        self._cancel_timers()
        task, self._task = self._task, None
        if task is not None and task is not asyncio.current_task():
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task

    def reopen(self) -> None:
        """Allow reconnection again after :meth:`close` (a connection reused after close)."""
        self._closed = False

    def _cancel_timers(self) -> None:
        for timer in self._timers:
            timer.cancel()
        self._timers.clear()

    def _publish(self) -> None:
        status = self.status
        if status is self._reported:
            return
        self._reported = status
        for listener in list(self._listeners):
            try:
                listener(status)
            except Exception:  # a broken listener must not stop the others
                _log.exception("%s: status listener failed", self.name)

    async def _run(self) -> None:
        delay = self.policy.backoff_initial_s
        while not self._closed and self._down_since is not None:
            await asyncio.sleep(delay)
            if self._closed or self._down_since is None:
                return
            self.attempts += 1
            try:
                await asyncio.wait_for(self._reconnect(), self.policy.attempt_timeout_s)
            except (DriverError, OSError, TimeoutError) as exc:
                _log.debug("%s: reconnect attempt %d failed: %s", self.name, self.attempts, exc)
                delay = min(delay * 2.0, self.policy.backoff_max_s)
                self._publish()
                continue
            self.ok()
            return
