"""A serial line for ASCII request/response instruments (pyserial-asyncio-fast).

One :class:`SerialLine` per port; an ``asyncio.Lock`` keeps one request in flight.
Every read is bounded by the timeout. Errors are typed: :class:`Disconnected`
(port cannot be opened or vanished), :class:`DriverTimeout` (no byte of an answer),
:class:`ProtocolError` (a truncated answer, or bytes that are not ASCII text).
After any error the port is closed and reopened on the next request, so a late or
partial answer can never be taken for the answer to the next request.
A timeout or a lost port also marks :attr:`SerialLine.link` down; its task reopens
the port and sends :attr:`SerialLine.probe` (set by the instrument's backend) with
capped backoff until the instrument answers again.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable
from typing import Final
from urllib.parse import urlsplit

import serial
import serial_asyncio_fast

from drivers.errors import Disconnected, DriverTimeout, ProfileError, ProtocolError
from drivers.link import Link, LinkPolicy

PARITIES: Final = {"N": serial.PARITY_NONE, "E": serial.PARITY_EVEN, "O": serial.PARITY_ODD}
MAX_LINE: Final = 512


def parse_endpoint(url: str) -> str:
    """``serial:///dev/pts/3`` → ``/dev/pts/3``."""
    parts = urlsplit(url)
    if parts.scheme != "serial" or not parts.path:
        raise ProfileError(f"not a serial endpoint: {url!r}")
    return parts.path


class SerialLine:
    """Request/response over one serial port with a line terminator."""

    def __init__(
        self,
        port: str,
        *,
        baudrate: int = 9600,
        framing: str = "8N1",
        terminator: bytes = b"\r\n",
        timeout: float = 1.0,
        link_policy: LinkPolicy | None = None,
    ) -> None:
        self.link = Link(port, link_policy or LinkPolicy(), self._reconnect)
        #: One harmless request proving the instrument answers (set by its backend).
        self.probe: Callable[[], Awaitable[object]] | None = None
        if len(framing) != 3 or framing[1] not in PARITIES or framing[0] not in "5678":
            raise ProfileError(f"bad serial framing {framing!r} (e.g. 8N1, 8N2, 7E1)")
        if framing[2] not in "12":
            raise ProfileError(f"bad stop bits in {framing!r}")
        self.port = port
        self.baudrate = baudrate
        self.framing = framing
        self.terminator = terminator
        self.timeout = timeout
        self.lock = asyncio.Lock()
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None

    async def connect(self) -> None:
        """Open the port (idempotent)."""
        self.link.reopen()
        if self._writer is not None:
            return
        try:
            self._reader, self._writer = await asyncio.wait_for(
                serial_asyncio_fast.open_serial_connection(
                    url=self.port,
                    baudrate=self.baudrate,
                    bytesize=int(self.framing[0]),
                    parity=PARITIES[self.framing[1]],
                    stopbits=int(self.framing[2]),
                ),
                self.timeout,
            )
        except TimeoutError:
            raise DriverTimeout(f"{self.port}: cannot open within {self.timeout:.1f} s") from None
        except (serial.SerialException, OSError) as exc:
            raise Disconnected(f"{self.port}: cannot open ({exc})") from None

    async def close(self) -> None:
        """Stop reconnecting and close the port; never raises."""
        await self.link.close()
        await self._close_port()

    async def _reconnect(self) -> None:
        """Probe the instrument (the link's reconnect step); a request reopens the port."""
        if self.probe is not None:
            await self.probe()
        else:
            await self.connect()
            self.link.ok()

    async def _close_port(self) -> None:
        writer, self._writer, self._reader = self._writer, None, None
        if writer is not None:
            writer.close()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(writer.wait_closed(), 1.0)

    async def request(self, command: str, *, expect_reply: bool = True) -> str:
        """Send ``command`` + terminator; return the reply line without terminator."""
        async with self.lock:
            try:
                await self.connect()
                assert self._reader is not None and self._writer is not None
                try:
                    self._writer.write(command.encode("ascii") + self.terminator)
                    try:
                        async with asyncio.timeout(self.timeout):
                            await self._writer.drain()
                    except TimeoutError:
                        raise DriverTimeout(f"{self.port}: {command!r}: cannot send") from None
                    except (serial.SerialException, OSError) as exc:
                        raise Disconnected(f"{self.port}: {command!r}: {exc}") from None
                    reply = await self._read_line(self._reader, command) if expect_reply else ""
                except BaseException:
                    await self._close_port()
                    raise
            except (DriverTimeout, Disconnected) as exc:
                self.link.lost(exc)
                raise
            except ProtocolError:
                self.link.ok()  # the instrument answered, if badly
                raise
            self.link.ok()
            return reply

    async def _read_line(self, reader: asyncio.StreamReader, command: str) -> str:
        try:
            # asyncio.timeout, not wait_for: no extra task per call on the hot path.
            async with asyncio.timeout(self.timeout):
                raw = await reader.readuntil(self.terminator)
        except TimeoutError:
            partial = bytes(getattr(reader, "_buffer", b""))
            if partial:
                raise ProtocolError(
                    f"{self.port}: {command!r}: truncated answer {partial!r}"
                ) from None
            raise DriverTimeout(
                f"{self.port}: {command!r}: no answer in {self.timeout:.1f} s"
            ) from None
        except asyncio.IncompleteReadError as exc:
            raise Disconnected(f"{self.port}: {command!r}: port closed ({exc.partial!r})") from None
        except asyncio.LimitOverrunError:
            raise ProtocolError(f"{self.port}: {command!r}: answer without terminator") from None
        except (serial.SerialException, OSError) as exc:
            raise Disconnected(f"{self.port}: {command!r}: {exc}") from None
        body = raw[: -len(self.terminator)]
        if len(body) > MAX_LINE or any(b < 0x20 or b > 0x7E for b in body):
            raise ProtocolError(f"{self.port}: {command!r}: garbage answer {raw!r}")
        return body.decode("ascii")
