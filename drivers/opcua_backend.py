"""Device backend for OPC UA: resolves profile node templates into node ids."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence

from asyncua import ua

from drivers.errors import ProfileError
from drivers.link import Link
from drivers.opcua import OpcUaConnection, ReadPlan, source_time, variant_type
from drivers.plans import PlanCache
from drivers.profile import DeviceProfile, MethodSpec, TagSpec
from drivers.tags import Quality, Reading, Value

_SEVERITY = 0xC0000000
"""The severity bits of a status code: 00 good, 01 uncertain, 10/11 bad."""


def quality_of(status: ua.StatusCode | None) -> Quality:
    """Map an OPC UA status code to good / uncertain / bad."""
    if status is None or status.is_good():
        return Quality.GOOD
    if status.is_uncertain():
        return Quality.UNCERTAIN
    return Quality.BAD


def _reading(capability: str, unit: str, dv: ua.DataValue) -> Reading:
    """A DataValue as a reading of ``capability`` (a Bad status is a quality, not an error)."""
    variant = dv.Value
    status = dv.StatusCode
    # Good (severity 00) inline: the common case skips two StatusCode method calls.
    quality = Quality.GOOD if status is None or not status.value & _SEVERITY else quality_of(status)
    return Reading(
        capability,
        None if variant is None else variant.Value,
        unit,
        source_time(dv),
        quality,
    )


class _SpecsPlan:
    """A cached read of one list of tag specs: the prebuilt request and the labels."""

    __slots__ = ("labels", "read")

    def __init__(self, specs: tuple[TagSpec, ...], read: ReadPlan) -> None:
        self.read = read
        self.labels = tuple((s.capability, s.unit) for s in specs)


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
        self._plans = PlanCache(self._plan)

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
        return _reading(spec.capability, spec.unit, dv)

    def _plan(self, specs: tuple[TagSpec, ...]) -> _SpecsPlan:
        """The read of this list of specs: its prebuilt request and labels."""
        return _SpecsPlan(specs, ReadPlan([self.node_id(s.address) for s in specs]))

    async def read(self, specs: Sequence[TagSpec]) -> list[Reading]:
        plan = self._plans.get(specs)
        dvs = await self.connection.read(plan.read)
        return [
            _reading(capability, unit, dv)
            for (capability, unit), dv in zip(plan.labels, dvs, strict=True)
        ]

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
