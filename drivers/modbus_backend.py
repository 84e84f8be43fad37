"""Device backend for Modbus: profile tags → typed, scaled register values.

Tag addresses are ``co:N`` / ``di:N`` (bits) and ``hr:N`` / ``ir:N`` (registers),
zero-based as on the wire. Keys of a tag besides the common ones: ``length`` (registers of a
``string``, read-only ASCII), ``scale`` and
``offset`` (engineering value = raw × scale + offset), ``enum`` (a list naming the
raw values 0, 1, 2…), ``states`` (a table naming sparse raw values: ``{ 0 = "idle",
9 = "alarm" }``; others read ``unknown(N)``), ``bit`` (the value is that bit of the
register, a bool). Profile options: ``device_id`` (the plant's address
``device_id`` overrides it), ``byte_order`` and ``word_order`` (``big``/``little``),
``poll_interval_s`` (subscriptions), ``read_gap`` (unrequested registers a batched
read may span to join two runs; 0 = only strictly contiguous ones, the default,
since some devices refuse reads that touch unmapped addresses). A method lists the
``writes`` it performs, each ``{ address, type, value }`` or ``{ address, type, arg }``.
"""

from __future__ import annotations

import math
import struct
from collections.abc import Awaitable, Callable, Sequence
from datetime import UTC, datetime
from typing import Any, cast

from drivers.errors import ProfileError, WriteRejected
from drivers.link import Link
from drivers.modbus import (
    MAX_BITS_PER_READ,
    MAX_REGISTERS_PER_READ,
    STRING,
    ModbusConnection,
    Order,
    Point,
    ReadRequest,
    Table,
    decode,
    decode_string,
    encode,
)
from drivers.plans import PlanCache
from drivers.polling import poll_subscription
from drivers.profile import DeviceProfile, MethodSpec, TagSpec
from drivers.tags import Quality, Reading, Value


def _number_reader(
    data_type: str, at: int, word_order: Order
) -> Callable[[Sequence[int]], Any] | None:
    """``words → number`` for big-endian bytes, as :func:`decode` gives it (None: no fast path)."""
    if data_type == "uint16":
        return lambda words: words[at]
    if data_type == "int16":
        return lambda words: words[at] - 0x10000 if words[at] & 0x8000 else words[at]
    hi, lo = (at + 1, at) if word_order == "little" else (at, at + 1)
    if data_type == "uint32":
        return lambda words: words[hi] << 16 | words[lo]
    if data_type == "int32":

        def int32(words: Sequence[int]) -> int:
            n = words[hi] << 16 | words[lo]
            return n - 0x100000000 if n & 0x80000000 else n

        return int32
    if data_type == "float32":
        unpack = _FLOAT32.unpack
        return lambda words: unpack((words[hi] << 16 | words[lo]).to_bytes(4, "big"))[0]
    return None


def _order(profile: DeviceProfile, key: str) -> Order:
    value = str(profile.options.get(key, "big"))
    if value not in ("big", "little"):
        raise ProfileError(f"profile {profile.name!r}: {key} must be 'big' or 'little'")
    return cast(Order, value)


_Run = tuple[Table, int, int, list[tuple[int, int, int]]]
"""One read request of a plan: table, start, count, and (point index, offset, width)."""

_FLOAT32 = struct.Struct(">f")
_Convert = Callable[[Sequence[int]], Value]
"""Words of one request → the engineering value of one tag in it."""


class _SpecsPlan:
    """A cached read of one list of tag specs: prebuilt requests and per-tag converters."""

    __slots__ = ("fields", "requests")

    def __init__(
        self,
        requests: list[ReadRequest],
        fields: list[tuple[str, str, int, _Convert]],
    ) -> None:
        self.requests = requests
        #: Per spec, in order: capability, unit, request index, converter.
        self.fields = fields


class ModbusBackend:
    """Presents a profile's capabilities over a Modbus connection."""

    def __init__(
        self,
        connection: ModbusConnection,
        profile: DeviceProfile,
        address: dict[str, str],
        *,
        now: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.now = now
        self.connection = connection
        self.profile = profile
        self.device_id = int(address.get("device_id", profile.options.get("device_id", 1)))
        self.byte_order = _order(profile, "byte_order")
        self.word_order = _order(profile, "word_order")
        self.poll_interval_s = float(profile.options.get("poll_interval_s", 1.0))
        self.read_gap = int(profile.options.get("read_gap", 0))
        self._points: dict[str, Point] = {}
        self._plans = PlanCache(self._specs_plan)
        if connection.probe is None:
            connection.probe = self._probe

    @property
    def link(self) -> Link:
        """The health of the shared connection."""
        return self.connection.link

    async def _probe(self) -> None:
        """Read the profile's first register (or bit): proves the device answers."""
        spec = next(iter(self.profile.tags.values()), None)
        if spec is None:
            self.link.ok()
            return
        point = self.point(spec)
        await self.connection.read(point.table, point.address, point.width, self.device_id)

    def point(self, spec: TagSpec) -> Point:
        """The parsed register address of a tag (cached)."""
        length = spec.extra.get("length")
        key = f"{spec.address}/{spec.data_type}/{length}"
        point = self._points.get(key)
        if point is None:
            point = self._points[key] = Point.parse(spec.address, spec.data_type, length)
        return point

    async def connect(self) -> None:
        await self.connection.connect()

    # -- values ------------------------------------------------------------------------

    def _to_value(self, spec: TagSpec, point: Point, raw: Sequence[int]) -> Value:
        if point.data_type == "bool":
            return bool(raw[0])
        if point.data_type == STRING:
            return decode_string(raw, self.byte_order)
        number = decode(raw, point.data_type, self.byte_order, self.word_order)
        bit = spec.extra.get("bit")
        if bit is not None:
            return bool((int(number) >> int(bit)) & 1)
        states = spec.extra.get("states")
        if states is not None:
            return str(states.get(int(number), f"unknown({number})"))
        names = spec.extra.get("enum")
        if names is not None:
            return str(names[number]) if 0 <= number < len(names) else f"unknown({number})"
        scale, offset = spec.extra.get("scale"), spec.extra.get("offset")
        if scale is None and offset is None:
            return float(number) if point.data_type == "float32" else int(number)
        return float(number) * float(scale if scale is not None else 1.0) + float(offset or 0.0)

    def _to_raw(self, spec: TagSpec, point: Point, value: Value) -> list[int]:
        if point.data_type == STRING:
            raise WriteRejected(f"{spec.capability}: a string register block is read-only")
        if point.data_type == "bool":
            if not isinstance(value, bool | int):
                raise WriteRejected(f"{spec.capability}: {value!r} is not a bool")
            return [int(bool(value))]
        if spec.extra.get("bit") is not None:
            raise WriteRejected(f"{spec.capability}: one bit of a register cannot be written")
        states = spec.extra.get("states")
        if states is not None and isinstance(value, str):
            codes = {name: code for code, name in states.items()}
            if value not in codes:
                raise WriteRejected(f"{spec.capability}: {value!r} not one of {sorted(codes)}")
            value = codes[value]
        names = spec.extra.get("enum")
        if names is not None and isinstance(value, str):
            if value not in names:
                raise WriteRejected(f"{spec.capability}: {value!r} not one of {names}")
            value = names.index(value)
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise WriteRejected(f"{spec.capability}: {value!r} is not a number")
        scale = float(spec.extra.get("scale", 1.0))
        offset = float(spec.extra.get("offset", 0.0))
        raw: float | int = (float(value) - offset) / scale
        if point.data_type != "float32":
            if not math.isfinite(raw):
                raise WriteRejected(f"{spec.capability}: {value!r} is not finite")
            raw = round(raw)
        return encode(raw, point.data_type, self.byte_order, self.word_order)

    # -- DeviceBackend -------------------------------------------------------------------

    async def read(self, specs: Sequence[TagSpec]) -> list[Reading]:
        """Read tags in as few requests as contiguous addresses allow."""
        plan = self._plans.get(specs)
        send = self.connection.send
        requests = plan.requests
        if len(requests) == 1:
            runs: list[Sequence[int]] = [await send(requests[0])]
        else:
            runs = [await send(r) for r in requests]
        now = self.now()
        good = Quality.GOOD
        return [
            Reading(capability, convert(runs[run]), unit, now, good)
            for capability, unit, run, convert in plan.fields
        ]

    def _specs_plan(self, frozen: tuple[TagSpec, ...]) -> _SpecsPlan:
        """The read of this list of specs: its requests and one converter per tag."""
        points = [self.point(s) for s in frozen]
        requests: list[ReadRequest] = []
        fields: list[tuple[str, str, int, _Convert] | None] = [None] * len(frozen)
        for table, start, count, parts in self._plan(points):
            for i, offset, _width in parts:
                spec = frozen[i]
                convert = self._converter(spec, points[i], offset)
                fields[i] = (spec.capability, spec.unit, len(requests), convert)
            requests.append(ReadRequest(table, start, count, self.device_id))
        return _SpecsPlan(requests, [f for f in fields if f is not None])

    def _converter(self, spec: TagSpec, point: Point, offset: int) -> _Convert:
        """``words → value`` for one tag at ``offset`` in its request's words.

        Gives exactly what :meth:`_to_value` gives for the tag's slice of the words; the
        common cases (big-endian bytes; plain, enum or scaled values) are precomputed
        once, anything else goes through :meth:`_to_value` itself.
        """
        width = point.width

        def generic(words: Sequence[int]) -> Value:
            return self._to_value(spec, point, words[offset : offset + width])

        data_type = point.data_type
        if data_type == "bool":
            return lambda words: bool(words[offset])
        if "states" in spec.extra or "bit" in spec.extra or data_type == STRING:
            return generic
        if self.byte_order != "big":
            return generic
        number = _number_reader(data_type, offset, self.word_order)
        if number is None:
            return generic
        names = spec.extra.get("enum")
        scale, add = spec.extra.get("scale"), spec.extra.get("offset")
        if names is not None:
            if data_type == "float32":
                return generic
            try:
                labels = tuple(str(names[i]) for i in range(len(names)))
            except (TypeError, KeyError, IndexError):
                return generic

            def label(words: Sequence[int]) -> Value:
                n = number(words)
                return labels[n] if 0 <= n < len(labels) else f"unknown({n})"

            return label
        if scale is None and add is None:
            return number  # decode already gives float for float32, int otherwise
        try:
            factor = float(scale if scale is not None else 1.0)
            shift = float(add or 0.0)
        except (TypeError, ValueError):
            return generic
        return lambda words: float(number(words)) * factor + shift

    def _plan(self, points: Sequence[Point]) -> list[_Run]:
        """The requests reading `points`: contiguous runs per table, within the limits."""
        by_table: dict[Table, list[int]] = {}
        for i, p in enumerate(points):
            by_table.setdefault(p.table, []).append(i)
        plan: list[_Run] = []
        for table, indexes in by_table.items():
            limit = MAX_BITS_PER_READ if table in ("co", "di") else MAX_REGISTERS_PER_READ
            indexes.sort(key=lambda i: points[i].address)
            runs: list[list[int]] = []
            end = -1
            for i in indexes:
                p = points[i]
                if (
                    runs
                    and p.address <= end + self.read_gap
                    and p.address + p.width - points[runs[-1][0]].address <= limit
                ):
                    runs[-1].append(i)
                    end = max(end, p.address + p.width)
                else:
                    runs.append([i])
                    end = p.address + p.width
            for run in runs:
                start = points[run[0]].address
                stop = max(points[i].address + points[i].width for i in run)
                parts = [(i, points[i].address - start, points[i].width) for i in run]
                plan.append((table, start, stop - start, parts))
        return plan

    async def write(self, spec: TagSpec, value: Value) -> None:
        point = self.point(spec)
        await self.connection.write(
            point.table, point.address, self._to_raw(spec, point, value), self.device_id
        )

    async def call(self, spec: MethodSpec, args: Sequence[Value]) -> Value:
        """Perform the method's ``writes`` in order (arguments by name)."""
        named = {a.name: v for a, v in zip(spec.args, args, strict=True)}
        writes: list[dict[str, Any]] = list(spec.extra.get("writes", []))
        if not writes:
            raise ProfileError(f"profile {self.profile.name!r}: method {spec.name!r} has no writes")
        for step in writes:
            extra: dict[str, Any] = {k: step[k] for k in ("scale", "offset", "enum") if k in step}
            try:
                address, data_type = str(step["address"]), str(step["type"])
                value: Value = named[step["arg"]] if "arg" in step else step["value"]
            except KeyError as exc:
                raise ProfileError(f"method {spec.name!r}: write step lacks {exc}") from None
            await self.write(TagSpec(spec.name, address, data_type, "", True, False, extra), value)
        return None

    async def subscribe(
        self, specs: Sequence[TagSpec], sink: Callable[[Reading], None]
    ) -> Callable[[], Awaitable[None]]:
        """Poll the tags every ``poll_interval_s``; a failed poll delivers BAD readings."""
        for s in specs:
            self.point(s)
        return await poll_subscription(
            self.read, specs, sink, self.poll_interval_s, f"modbus-{self.profile.name}"
        )
