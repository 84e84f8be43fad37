"""Read plans cached per list of tag specs: what a backend works out once for a read.

Backends read the same capability lists again and again (a monitor's tags every poll),
so the work that depends only on the list — node IDs or register runs, prebuilt
requests, converters — is done on the first read and kept, up to `PLANS_MAX` lists per
device, the oldest dropped first.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Generic, TypeVar

from drivers.profile import TagSpec

PLANS_MAX = 64
"""Read plans kept per device (distinct capability lists read)."""

Plan = TypeVar("Plan")


class PlanCache(Generic[Plan]):
    """Plans built by `build` on first use, keyed by the identity of the specs."""

    def __init__(
        self, build: Callable[[tuple[TagSpec, ...]], Plan], limit: int = PLANS_MAX
    ) -> None:
        """Cache what `build` makes of a tuple of specs, at most `limit` of them."""
        self._build = build
        self._limit = limit
        # Each entry holds its specs: alive, their ids cannot be reused by other objects.
        self._plans: dict[tuple[int, ...], tuple[tuple[TagSpec, ...], Plan]] = {}
        self.built = 0
        """Plans built so far (a list read again reuses its plan)."""

    def get(self, specs: Sequence[TagSpec]) -> Plan:
        """The plan of this list of specs, built now if it is not cached."""
        entry = self._plans.get(tuple(map(id, specs)))
        if entry is None:
            frozen = tuple(specs)
            entry = (frozen, self._build(frozen))
            self.built += 1
            if len(self._plans) >= self._limit:
                del self._plans[next(iter(self._plans))]
            self._plans[tuple(map(id, frozen))] = entry
        return entry[1]

    def __len__(self) -> int:
        """Plans cached now."""
        return len(self._plans)
