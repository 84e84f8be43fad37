"""Throttling failed sign-ins that arrive over the network (issue 16).

Account lockout after repeated wrong passwords is a Part 11 control for terminals whose
identity is established (trusted certificates). From an unauthenticated client it is a
weapon: anyone can lock every operator out. So the controller journals such failures
without counting them towards lockout and throttles them twice over: per account (guesses
at one person's password, from anywhere) and per client address (one machine guessing at
many accounts). After `free` failures of a key each further attempt must wait twice as long
as the last (capped): an attempt inside the wait is refused without checking the password.
A success clears an account's count; a client address's count is only forgotten after
`forget_s` without failures (one valid account must not reset a guessing client).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

MAX_TRACKED = 10_000


@dataclass
class SignInThrottle:
    """Backoff after failed sign-ins, per key (an account or a client address;
    `clock`: monotonic seconds)."""

    free: int = 3
    base_s: float = 1.0
    cap_s: float = 60.0
    forget_s: float = 900.0
    clock: Callable[[], float] = time.monotonic
    _failures: dict[str, tuple[int, float]] = field(default_factory=dict)

    def failures(self, key: str) -> int:
        """Failed attempts of `key` that still count (none for `forget_s` forgets them)."""
        count, last = self._failures.get(key, (0, 0.0))
        return count if self.clock() - last < self.forget_s else 0

    def wait_s(self, key: str) -> float:
        """Seconds before `key` may try again (0: now)."""
        count = self.failures(key)
        if count < self.free:
            return 0.0
        delay = min(self.cap_s, self.base_s * 2 ** (count - self.free))
        return max(0.0, self._failures[key][1] + delay - self.clock())

    def failed(self, key: str) -> int:
        """Count a failed attempt of `key`; the count that now applies."""
        if len(self._failures) >= MAX_TRACKED and key not in self._failures:
            self._failures.pop(next(iter(self._failures)))  # oldest first
        count = self.failures(key) + 1
        self._failures.pop(key, None)  # re-inserted last: the dict stays oldest-first
        self._failures[key] = (count, self.clock())
        return count

    def succeeded(self, key: str) -> None:
        """A right password: no more waiting for `key`."""
        self._failures.pop(key, None)
