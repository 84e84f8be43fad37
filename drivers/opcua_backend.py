"""Device backend for OPC UA: resolves profile node templates into node ids."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from asyncua import ua

from drivers.errors import ProfileError
from drivers.link import Link
from drivers.opcua import OpcUaConnection, source_time, variant_type
from drivers.profile import DeviceProfile, MethodSpec, TagSpec
from drivers.tags import Quality, Reading, Value


def quality_of(status: ua.StatusCode | None) -> Quality:
    """Map an OPC UA status code to good / uncertain / bad."""
    if status is None or status.is_good():
        return Quality.GOOD
    if status.is_uncertain():
        return Quality.UNCERTAIN
    return Quality.BAD


class OpcUaBackend:
    """Presents a profile's capabilities over an OPC UA session."""

    def __init__(
        self, connection: OpcUaConnection, profile: DeviceProfile, address: dict[str, str]
    ) -> None:
        self.connection = connection
        self.profile = profile
        self.address = address
        self._ns: int | None = None
        self._ids: dict[str, ua.NodeId] = {}

    @property
    def link(self) -> Link:
        """The health of the shared session."""
        return self.connection.link

    async def connect(self) -> None:
        await self.connection.connect()
        if self._ns is None:
            self._ns = await self.connection.namespace_index(
                str(self.profile.options["namespace_uri"])
            )

    def node_id(self, template: str) -> ua.NodeId:
        """The node id of an address template, with the device's address filled in."""
        node_id = self._ids.get(template)
        if node_id is None:
            if self._ns is None:
                raise ProfileError(f"profile {self.profile.name!r}: device not connected")
            try:
                ident = template.format(**self.address)
            except KeyError as exc:
                raise ProfileError(f"address template {template!r} needs {exc}") from None
            node_id = ua.NodeId(ua.String(ident), ua.Int16(self._ns))
            self._ids[template] = node_id
        return node_id

    def _reading(self, spec: TagSpec, dv: ua.DataValue) -> Reading:
        value: Any = dv.Value.Value if dv.Value is not None else None
        quality = quality_of(dv.StatusCode)
        return Reading(spec.capability, value, spec.unit, source_time(dv), quality)

    async def read(self, specs: Sequence[TagSpec]) -> list[Reading]:
        dvs = await self.connection.read([self.node_id(s.address) for s in specs])
        return [self._reading(s, dv) for s, dv in zip(specs, dvs, strict=True)]

    async def write(self, spec: TagSpec, value: Value) -> None:
        await self.connection.write(self.node_id(spec.address), value, variant_type(spec.data_type))

    async def call(self, spec: MethodSpec, args: Sequence[Value]) -> Value:
        variants = [
            ua.Variant(v, variant_type(a.data_type)) for a, v in zip(spec.args, args, strict=True)
        ]
        result: Value = await self.connection.call(
            self.node_id(spec.object_address), self.node_id(spec.address), variants
        )
        return result

    async def subscribe(
        self, specs: Sequence[TagSpec], sink: Callable[[Reading], None]
    ) -> Callable[[], Awaitable[None]]:
        specs = list(specs)

        def on_change(index: int, dv: ua.DataValue) -> None:
            sink(self._reading(specs[index], dv))

        return await self.connection.subscribe([self.node_id(s.address) for s in specs], on_change)
