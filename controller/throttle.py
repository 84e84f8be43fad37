"""Throttling failed sign-ins that arrive over the network (issue 16).

Account lockout after repeated wrong passwords is a Part 11 control for terminals whose
identity is established (trusted certificates). From an unauthenticated client it is a
weapon: anyone can lock every operator out. So the controller journals such failures
without counting them towards lockout and, per account, makes each further attempt after
`free` consecutive failures wait twice as long as the last (capped): an attempt inside
the wait is refused without checking the password. A success clears the account.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

MAX_TRACKED = 10_000


@dataclass
class SignInThrottle:
    """Per-account backoff after failed sign-ins (`clock`: monotonic seconds)."""

    free: int = 3
    base_s: float = 1.0
    cap_s: float = 60.0
    clock: Callable[[], float] = time.monotonic
    _failures: dict[str, tuple[int, float]] = field(default_factory=dict)

    def wait_s(self, account: str) -> float:
        """Seconds before `account` may try again (0: now)."""
        count, last = self._failures.get(account, (0, 0.0))
        if count < self.free:
            return 0.0
        delay = min(self.cap_s, self.base_s * 2 ** (count - self.free))
        return max(0.0, last + delay - self.clock())

    def failed(self, account: str) -> None:
        """Count a failed attempt of `account`."""
        if len(self._failures) >= MAX_TRACKED and account not in self._failures:
            self._failures.pop(next(iter(self._failures)))  # oldest first
        count, _last = self._failures.get(account, (0, 0.0))
        self._failures[account] = (count + 1, self.clock())

    def succeeded(self, account: str) -> None:
        """A right password: no more waiting for `account`."""
        self._failures.pop(account, None)
