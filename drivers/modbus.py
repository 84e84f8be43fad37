"""Modbus TCP / RTU client connection: bounded calls, typed errors, typed register values.

Every call is bounded by a timeout and raises only typed driver errors:
:class:`DriverTimeout` (no answer), :class:`Disconnected` (refused or dropped),
:class:`WriteRejected` (exception 2 or 3 answering a write) and
:class:`ProtocolError` (any other exception response).
"""

from __future__ import annotations

import asyncio
import logging
import struct
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any, Final, Literal
from urllib.parse import urlsplit

from pymodbus.client import AsyncModbusSerialClient, AsyncModbusTcpClient
from pymodbus.exceptions import ConnectionException, ModbusException, ModbusIOException
from pymodbus.framer import FramerType
from pymodbus.pdu import ModbusPDU
from pymodbus.pdu.bit_message import ReadCoilsRequest, ReadDiscreteInputsRequest
from pymodbus.pdu.register_message import ReadHoldingRegistersRequest, ReadInputRegistersRequest

from drivers.errors import (
    Disconnected,
    DriverTimeout,
    ProfileError,
    ProtocolError,
    WriteRejected,
)
from drivers.link import Link, LinkPolicy

logging.getLogger("pymodbus").setLevel(logging.ERROR)

Table = Literal["co", "di", "hr", "ir"]
Order = Literal["big", "little"]

#: Registers per value and struct code of every supported data type.
DATA_TYPES: Final[dict[str, tuple[int, str]]] = {
    "int16": (1, "h"),
    "uint16": (1, "H"),
    "int32": (2, "i"),
    "uint32": (2, "I"),
    "float32": (2, "f"),
    "bool": (1, "?"),
}
STRING: Final = "string"
"""An ASCII text in ``length`` consecutive registers, two characters per register (first
character in the high byte with ``byte_order = "big"``), NUL- or space-padded; read-only.
Instruments report e.g. their serial number this way."""
MAX_REGISTERS_PER_READ: Final = 125
MAX_BITS_PER_READ: Final = 2000
EXCEPTION_NAMES: Final = {
    1: "illegal function",
    2: "illegal data address",
    3: "illegal data value",
    4: "device failure",
    5: "acknowledge",
    6: "device busy",
    10: "gateway path unavailable",
    11: "gateway target failed to respond",
}


@dataclass(frozen=True, slots=True)
class Point:
    """A parsed Modbus address: table (``hr:12`` → holding register 12) and data type."""

    table: Table
    address: int
    data_type: str
    length: int = 0  # registers of a string (STRING); 0 for every other type

    @property
    def width(self) -> int:
        """Registers (or bits) the value occupies."""
        if self.table in ("co", "di"):
            return 1
        return self.length if self.data_type == STRING else DATA_TYPES[self.data_type][0]

    @classmethod
    def parse(cls, address: str, data_type: str, length: object = None) -> Point:
        """``"ir:4"`` + ``"float32"`` → Point (a ``string`` also needs its ``length`` in
        registers); ProfileError for anything else."""
        table, _, number = address.partition(":")
        if table not in ("co", "di", "hr", "ir") or not number.isdigit():
            raise ProfileError(f"bad Modbus address {address!r} (want co:N, di:N, hr:N or ir:N)")
        if data_type == STRING:
            if table not in ("hr", "ir"):
                raise ProfileError(f"{address}: a string lives in registers (hr or ir)")
            if not isinstance(length, int) or isinstance(length, bool):
                raise ProfileError(f"{address}: a string needs length = registers (1–125)")
            if not 1 <= length <= MAX_REGISTERS_PER_READ:
                raise ProfileError(f"{address}: string length {length} is not 1–125 registers")
            return cls(table, int(number), data_type, length)  # type: ignore[arg-type]
        if data_type not in DATA_TYPES:
            raise ProfileError(f"unknown Modbus data type {data_type!r}")
        if (table in ("co", "di")) != (data_type == "bool"):
            raise ProfileError(f"{address}: coils/discrete inputs are bool, registers are not")
        value = int(number)
        if not 0 <= value <= 0xFFFF:
            raise ProfileError(f"Modbus address out of range: {address!r}")
        return cls(table, value, data_type)  # type: ignore[arg-type]


def decode(regs: Sequence[int], data_type: str, byte_order: Order, word_order: Order) -> Any:
    """Registers → int or float with the device's byte and word order."""
    width, code = DATA_TYPES[data_type]
    words = regs[:width]
    if word_order == "little":
        words = words[::-1]
    # Packing each register little-endian is swapping its two bytes.
    raw = struct.pack(("<" if byte_order == "little" else ">") + "H" * width, *words)
    return struct.unpack(f">{code}", raw)[0]


def decode_string(regs: Sequence[int], byte_order: Order) -> str:
    """Registers → the ASCII text they hold (padding NULs and spaces stripped)."""
    raw = struct.pack(("<" if byte_order == "little" else ">") + "H" * len(regs), *regs)
    return raw.split(b"\0", 1)[0].decode("ascii", errors="replace").strip()


def encode(value: float | int, data_type: str, byte_order: Order, word_order: Order) -> list[int]:
    """int or float → registers with the device's byte and word order."""
    _, code = DATA_TYPES[data_type]
    try:
        raw = struct.pack(f">{code}", value if code == "f" else int(value))
    except (struct.error, OverflowError, ValueError) as exc:
        raise WriteRejected(f"{value!r} does not fit {data_type}: {exc}") from None
    if byte_order == "little":
        raw = b"".join(raw[i : i + 2][::-1] for i in range(0, len(raw), 2))
    words = [int.from_bytes(raw[i : i + 2], "big") for i in range(0, len(raw), 2)]
    if word_order == "little":
        words.reverse()
    return words


_REQUEST_PDUS: Final[dict[str, type[ModbusPDU]]] = {
    "hr": ReadHoldingRegistersRequest,
    "ir": ReadInputRegistersRequest,
    "co": ReadCoilsRequest,
    "di": ReadDiscreteInputsRequest,
}
_READ_METHODS: Final = {
    "hr": "read_holding_registers",
    "ir": "read_input_registers",
    "co": "read_coils",
    "di": "read_discrete_inputs",
}


class ReadRequest:
    """One read (table, start, count, device id) built once and sent many times.

    Holds the pymodbus request PDU that ``client.read_input_registers`` & co. would build
    on every call (the transaction manager stamps a fresh transaction id on each send),
    so a cached read plan encodes nothing per call but the frame itself.
    """

    __slots__ = ("address", "count", "device_id", "method", "pdu", "registers", "table", "what")

    def __init__(self, table: Table, address: int, count: int, device_id: int) -> None:
        self.table: Table = table
        self.address = address
        self.count = count
        self.device_id = device_id
        self.registers = table in ("hr", "ir")
        self.method: str = _READ_METHODS[table]
        self.what = f"read {table}:{address}+{count} (device {device_id})"
        self.pdu: ModbusPDU | None
        try:
            self.pdu = _REQUEST_PDUS[table](address=address, count=count, dev_id=device_id)
        except ModbusException:
            # e.g. a device id over 255: pymodbus refuses it when the request is
            # built, so build it per call and let that error surface the usual way.
            self.pdu = None


def parse_endpoint(url: str) -> tuple[str, int]:
    """``modbus+tcp://HOST:PORT`` → (host, port), port 502 when absent;
    ``modbus+rtu:///dev/ttyUSB0`` → (device path, 0)."""
    parts = urlsplit(url)
    if parts.scheme == "modbus+rtu" and not parts.netloc and parts.path:
        return parts.path, 0
    if parts.scheme != "modbus+tcp" or not parts.hostname:
        raise ProfileError(f"not a modbus+tcp:// or modbus+rtu:/// endpoint: {url!r}")
    return parts.hostname, parts.port if parts.port is not None else 502


class ModbusConnection:
    """One Modbus client: TCP to a server, or RTU on a serial line (several device ids).

    pymodbus's own background reconnection is off: a request on a dropped
    connection makes one bounded attempt to reconnect, then raises Disconnected.
    A timeout or a drop also marks :attr:`link` down, whose task reconnects with
    capped backoff and checks the device with :attr:`probe` (set by a backend).
    """

    def __init__(
        self,
        url: str,
        *,
        timeout: float = 5.0,
        baudrate: int = 9600,
        framing: str = "8N1",
        link_policy: LinkPolicy | None = None,
    ) -> None:
        self.url = url
        self.timeout = timeout
        self.link = Link(url, link_policy or LinkPolicy(), self._reconnect)
        #: One cheap request proving the device answers (a read of a mapped register).
        self.probe: Callable[[], Awaitable[object]] | None = None
        parse_endpoint(url)  # checks the URL
        if url.startswith("modbus+rtu:") and (
            len(framing) != 3 or framing[1] not in "NEO" or framing[2] not in "12"
        ):
            raise ProfileError(f"bad serial framing {framing!r} (e.g. 8N1, 8E1)")
        self._baudrate = baudrate
        self._framing = framing
        self._client = self._new_client()
        self._lock = asyncio.Lock()

    def _new_client(self) -> AsyncModbusTcpClient | AsyncModbusSerialClient:
        """A fresh pymodbus client (a dropped one is never reused: its state may be stale)."""
        made: list[AsyncModbusTcpClient | AsyncModbusSerialClient] = []

        def traced(connected: bool) -> None:
            # pymodbus would let a request on a dropped connection wait for its
            # timeout: fail it at once, so a drop is told from a silent device.
            future = getattr(getattr(made[0], "ctx", None), "response_future", None)
            if not connected and isinstance(future, asyncio.Future) and not future.done():
                future.set_exception(ConnectionException("connection closed by the device"))

        host, port = parse_endpoint(self.url)
        client: AsyncModbusTcpClient | AsyncModbusSerialClient
        if self.url.startswith("modbus+rtu:"):
            client = AsyncModbusSerialClient(
                host,
                framer=FramerType.RTU,
                baudrate=self._baudrate,
                bytesize=int(self._framing[0]),
                parity=self._framing[1],
                stopbits=int(self._framing[2]),
                timeout=self.timeout,
                retries=0,
                reconnect_delay=0,
                trace_connect=traced,
            )
        else:
            client = AsyncModbusTcpClient(
                host,
                port=port,
                timeout=self.timeout,
                retries=0,
                reconnect_delay=0,
                trace_connect=traced,
            )
        made.append(client)
        return client

    def _renew(self) -> None:
        """Close the client and start over with a fresh one."""
        old, self._client = self._client, self._new_client()
        old.close()

    @property
    def connected(self) -> bool:
        """True while the TCP connection is up."""
        return bool(self._client.connected)

    async def connect(self) -> None:
        """Open the TCP connection (idempotent)."""
        self.link.reopen()
        async with self._lock:
            if self._client.connected:
                return
            try:
                ok = await asyncio.wait_for(self._client.connect(), self.timeout)
            except TimeoutError:
                raise DriverTimeout(
                    f"{self.url}: no connection within {self.timeout:.1f} s"
                ) from None
            except OSError as exc:
                raise Disconnected(f"{self.url}: cannot connect ({exc})") from None
            if not ok:
                raise Disconnected(f"{self.url}: cannot connect (refused or unreachable)")

    async def close(self) -> None:
        """Stop reconnecting and close the connection; never raises."""
        await self.link.close()
        self._client.close()

    async def _reconnect(self) -> None:
        """Close, connect and probe (the link's reconnect step)."""
        if not self._client.connected:
            self._renew()
        await self.connect()
        if self.probe is not None:
            await self.probe()
        else:
            self.link.ok()

    async def _call(
        self, what: str, request: Callable[[], Awaitable[Any]], *, write: bool = False
    ) -> Any:
        try:
            if not self._client.connected:  # dropped: one bounded attempt to reconnect
                await self.connect()
            response = await self._exchange(what, request)
        except (DriverTimeout, Disconnected) as exc:
            # A late answer would be taken for the next request's: start afresh.
            self._renew()
            self.link.lost(exc)
            raise
        self.link.ok()  # the device answered, even if with an exception code
        if response.isError():
            code = int(getattr(response, "exception_code", 0))
            text = f"{self.url}: {what}: exception {code} ({EXCEPTION_NAMES.get(code, '?')})"
            if write and code in (2, 3):
                raise WriteRejected(text)
            raise ProtocolError(text)
        return response

    async def _exchange(self, what: str, request: Callable[[], Awaitable[Any]]) -> Any:
        try:
            # asyncio.timeout, not wait_for: no extra task per call on the hot path.
            async with asyncio.timeout(self.timeout):
                return await request()
        except TimeoutError:
            raise DriverTimeout(f"{self.url}: {what}: no answer in {self.timeout:.1f} s") from None
        except ConnectionException as exc:
            raise Disconnected(f"{self.url}: {what}: connection lost ({exc})") from None
        except ModbusIOException as exc:
            if self._client.connected:
                raise DriverTimeout(f"{self.url}: {what}: no valid answer ({exc})") from None
            raise Disconnected(f"{self.url}: {what}: connection lost ({exc})") from None
        except ModbusException as exc:
            raise ProtocolError(f"{self.url}: {what}: {exc}") from None
        except OSError as exc:
            raise Disconnected(f"{self.url}: {what}: {exc}") from None

    async def read(self, table: Table, address: int, count: int, device_id: int) -> list[int]:
        """Read ``count`` registers (hr/ir) or bits (co/di, as 0/1) from ``address``."""
        return list(await self.send(ReadRequest(table, address, count, device_id)))

    async def send(self, request: ReadRequest) -> Sequence[int]:
        """Send a prebuilt read; its ``count`` registers or bits (0/1). Do not mutate them."""
        c, pdu = self._client, request.pdu
        if pdu is not None:
            r = await self._call(request.what, lambda: c.execute(False, pdu))
        else:
            method = getattr(c, request.method)
            address, count, d = request.address, request.count, request.device_id
            r = await self._call(request.what, lambda: method(address, count=count, device_id=d))
        count = request.count
        values: list[int] = r.registers if request.registers else [int(v) for v in r.bits]
        if len(values) != count:
            if len(values) < count:
                raise ProtocolError(
                    f"{self.url}: {request.what}: {len(values)} values in the answer"
                )
            values = values[:count]
        return values

    async def write(
        self, table: Table, address: int, values: Sequence[int], device_id: int
    ) -> None:
        """Write holding registers (function 6/16) or coils (5/15)."""
        c, d = self._client, device_id
        what = f"write {table}:{address} (device {device_id})"
        request: Callable[[], Awaitable[Any]]
        if table == "hr":
            regs = list(values)
            if len(regs) == 1:
                request = lambda: c.write_register(address, regs[0], device_id=d)  # noqa: E731
            else:
                request = lambda: c.write_registers(address, regs, device_id=d)  # noqa: E731
        elif table == "co":
            bits = [bool(v) for v in values]
            if len(bits) == 1:
                request = lambda: c.write_coil(address, bits[0], device_id=d)  # noqa: E731
            else:
                request = lambda: c.write_coils(address, bits, device_id=d)  # noqa: E731
        else:
            raise WriteRejected(f"{self.url}: {table}:{address} is read-only in Modbus")
        await self._call(what, request, write=True)


__all__ = [
    "DATA_TYPES",
    "ModbusConnection",
    "Point",
    "ReadRequest",
    "decode",
    "encode",
    "parse_endpoint",
]
