"""The protocol-side interface a device delegates to (one implementation per protocol)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from typing import Protocol

from drivers.link import Link
from drivers.profile import MethodSpec, TagSpec
from drivers.tags import Reading, Value


class DeviceBackend(Protocol):
    """How one device's capabilities travel over one protocol."""

    @property
    def link(self) -> Link:
        """The health of the connection the device uses."""

    async def connect(self) -> None:
        """Make sure the underlying connection is up and addresses are resolved."""

    async def read(self, specs: Sequence[TagSpec]) -> list[Reading]:
        """Read many tags in as few round trips as the protocol allows."""

    async def write(self, spec: TagSpec, value: Value) -> None:
        """Write one tag; raise WriteRejected when the instrument refuses."""

    async def call(self, spec: MethodSpec, args: Sequence[Value]) -> Value:
        """Run a device method with its arguments in profile order."""

    async def subscribe(
        self, specs: Sequence[TagSpec], sink: Callable[[Reading], None]
    ) -> Callable[[], Awaitable[None]]:
        """Push every change of the tags to ``sink``; returns an async cancel."""
