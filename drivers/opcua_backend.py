"""Device backend for OPC UA: resolves profile node templates into node ids.

A node template (``{vessel}`` filled from the plant's address) is one of: a plain
string identifier (``BR-01.Temperature.PV``, in the tag's or the profile's namespace),
``i=NUMBER``, ``s=STRING``, ``g=GUID`` or ``b=BASE64`` (same namespace), or a full
``ns=INDEX;i=…`` / ``nsu=URI;s=…``. The namespace of a tag is its own
``namespace_uri`` / ``namespace_index`` if given, else the profile's.
"""

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
        self._uris: dict[str, int] = {}
        self._connected = False
        self._ids: dict[tuple[str, str, int | None], ua.NodeId] = {}
        self._plans = PlanCache(self._plan)

    @property
    def link(self) -> Link:
        """The health of the shared session."""
        return self.connection.link

    def _namespace_uris(self) -> set[str]:
        """Every namespace URI the profile names (profile, tags, ``nsu=`` templates)."""
        uris = set()
        options = self.profile.options
        if "namespace_uri" in options:
            uris.add(str(options["namespace_uri"]))
        templates = [s.address for s in self.profile.tags.values() if s.address]
        templates += [
            a for m in self.profile.methods.values() for a in (m.address, m.object_address)
        ]
        for spec in self.profile.tags.values():
            if "namespace_uri" in spec.extra:
                uris.add(str(spec.extra["namespace_uri"]))
        for template in templates:
            if template.startswith("nsu="):
                uris.add(template[4:].partition(";")[0])
        return uris

    async def connect(self) -> None:
        await self.connection.connect()
        if self._connected:
            return
        for uri in sorted(self._namespace_uris()):
            self._uris[uri] = await self.connection.namespace_index(uri)
        options = self.profile.options
        if "namespace_uri" in options:
            self._ns = self._uris[str(options["namespace_uri"])]
        elif "namespace_index" in options:
            self._ns = int(options["namespace_index"])
        self._connected = True

    def _namespace(self, spec: TagSpec | None) -> int | None:
        extra = spec.extra if spec is not None else {}
        if "namespace_index" in extra:
            return int(extra["namespace_index"])
        if "namespace_uri" in extra:
            return self._uris.get(str(extra["namespace_uri"]))
        return self._ns

    def node_id(self, template: str, spec: TagSpec | None = None) -> ua.NodeId:
        """The node id of an address template, with the device's address filled in
        (in ``spec``'s namespace when the template names none)."""
        if not self._connected:
            raise ProfileError(f"profile {self.profile.name!r}: device not connected")
        ns = self._namespace(spec)
        key = (template, "" if spec is None else spec.capability, ns)
        node_id = self._ids.get(key)
        if node_id is None:
            try:
                ident = template.format(**self.address)
            except KeyError as exc:
                raise ProfileError(f"address template {template!r} needs {exc}") from None
            node_id = self._parse(ident, ns)
            self._ids[key] = node_id
        return node_id

    def _parse(self, ident: str, ns: int | None) -> ua.NodeId:
        where = f"profile {self.profile.name!r}: node {ident!r}"
        if ident.startswith("nsu="):
            uri, _, body = ident[4:].partition(";")
            ns, ident = self._uris.get(uri), body
            if ns is None:
                raise ProfileError(f"{where}: namespace {uri!r} not resolved")
        elif ident.startswith("ns="):
            try:
                return ua.NodeId.from_string(ident)
            except (ValueError, ua.UaError) as exc:
                raise ProfileError(f"{where}: {exc}") from None
        if ns is None:
            raise ProfileError(f"{where}: no namespace (namespace_uri or namespace_index)")
        if ident[:2] in ("i=", "s=", "g=", "b="):
            try:
                return ua.NodeId.from_string(f"ns={ns};{ident}")
            except (ValueError, ua.UaError) as exc:
                raise ProfileError(f"{where}: {exc}") from None
        return ua.NodeId(ua.String(ident), ua.Int16(ns))

    def _reading(self, spec: TagSpec, dv: ua.DataValue) -> Reading:
        return _reading(spec.capability, spec.unit, dv)

    def _plan(self, specs: tuple[TagSpec, ...]) -> _SpecsPlan:
        """The read of this list of specs: its prebuilt request and labels."""
        return _SpecsPlan(specs, ReadPlan([self.node_id(s.address, s) for s in specs]))

    async def read(self, specs: Sequence[TagSpec]) -> list[Reading]:
        plan = self._plans.get(specs)
        dvs = await self.connection.read(plan.read)
        return [
            _reading(capability, unit, dv)
            for (capability, unit), dv in zip(plan.labels, dvs, strict=True)
        ]

    async def not_writable(self, specs: Sequence[TagSpec]) -> list[str]:
        """The capabilities whose node's AccessLevel does not allow the current write
        (or that the server does not know)."""
        dvs = await self.connection.read_attribute(
            [self.node_id(s.address, s) for s in specs], ua.AttributeIds.AccessLevel
        )
        refused = []
        for spec, dv in zip(specs, dvs, strict=True):
            level = None if dv.Value is None else dv.Value.Value
            if not isinstance(level, int) or not level & ua.AccessLevel.CurrentWrite.mask:
                refused.append(spec.capability)
        return refused

    async def write(self, spec: TagSpec, value: Value) -> None:
        await self.connection.write(
            self.node_id(spec.address, spec), value, variant_type(spec.data_type)
        )

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

        return await self.connection.subscribe(
            [self.node_id(s.address, s) for s in specs], on_change
        )
