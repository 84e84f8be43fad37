"""A serial instrument behind a pseudo-terminal, served from the master side with asyncio.

Clients open the slave path (``/dev/pts/N``) like any serial port. The instrument
checks the line settings the client chose (baud rate, data bits, parity, stop
bits) on every request, as a UART would: a mismatch gets garbled bytes back.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import termios
import tty
from pathlib import Path
from typing import Final

from simulators.clock import ScaledClock
from simulators.faults import FaultBoard

BAUD: Final = {9600: termios.B9600, 19200: termios.B19200, 38400: termios.B38400}
_PARITY_FLAGS: Final = {"N": 0, "E": termios.PARENB, "O": termios.PARENB | termios.PARODD}
GARBLED: Final = b"\xfe\x9f\x86\xe3"


def make_link(link: Path, target: str) -> None:
    """Point a symlink at ``link`` to ``target`` (replacing an older symlink)."""
    link.parent.mkdir(parents=True, exist_ok=True)
    if link.is_symlink():
        link.unlink()
    link.symlink_to(target)


def remove_link(link: Path) -> None:
    """Remove the symlink at ``link`` if there is one."""
    if link.is_symlink():
        link.unlink()


class PtyBridge:
    """Two pty pairs whose master sides are joined: a null-modem cable between two slaves.

    A server that opens a serial port itself (pymodbus's RTU server) takes
    ``server_path``; clients open ``client_path``. With a fault board, the bytes
    from server to client show its line faults: silent (dropped), slow (delayed),
    garbage (random bytes), truncated (first half only) and bad_crc (last byte of
    each chunk flipped, which breaks a Modbus RTU frame's CRC).
    """

    def __init__(self, faults: FaultBoard | None = None) -> None:
        self.faults = faults
        self._fds: list[int] = []
        self.server_path = ""
        self.client_path = ""

    def open(self) -> None:
        """Create both pairs and start copying bytes between the masters."""
        master_a, slave_a = os.openpty()
        master_b, slave_b = os.openpty()
        self._fds = [master_a, slave_a, master_b, slave_b]
        for fd in (slave_a, slave_b):
            tty.setraw(fd)
        loop = asyncio.get_running_loop()
        for src, dst in ((master_a, master_b), (master_b, master_a)):
            os.set_blocking(src, False)
            loop.add_reader(src, self._copy, src, dst, src == master_a)
        self.server_path, self.client_path = os.ttyname(slave_a), os.ttyname(slave_b)

    def _copy(self, src: int, dst: int, answer: bool) -> None:
        try:
            data = os.read(src, 4096)
        except OSError:  # nothing to read, or the other side is gone
            return
        board = self.faults
        if answer and board is not None and board.faults:
            if board.has("silent"):
                return
            if board.has("garbage"):
                data = board.garble(len(data))
            if board.has("truncated"):
                data = data[: len(data) // 2]
            if board.has("bad_crc") and data:
                data = data[:-1] + bytes([data[-1] ^ 0xFF])
            slow = board.first("slow")
            if slow is not None:
                asyncio.get_running_loop().call_later(
                    float(slow.params["delay_s"]), _write, dst, data
                )
                return
        _write(dst, data)

    def close(self) -> None:
        """Stop copying and close every descriptor (idempotent)."""
        if not self._fds:
            return
        loop = asyncio.get_running_loop()
        for fd in (self._fds[0], self._fds[2]):
            loop.remove_reader(fd)
        for fd in self._fds:
            with contextlib.suppress(OSError):
                os.close(fd)
        self._fds = []


def _write(fd: int, data: bytes) -> None:
    with contextlib.suppress(OSError):  # the other side is gone
        os.write(fd, data)


class PtyInstrument:
    """Base class: owns the pty pair, splits requests into lines, writes replies.

    Subclasses implement :meth:`handle` (one request line → reply text or None).
    ``faults`` (a :class:`~simulators.faults.FaultBoard`) shows silent (no reply),
    slow (``delay_s`` before the reply), garbage (non-ASCII bytes), truncated (a
    reply cut before its terminator) and the sensor and alarm faults a subclass
    supports. The older ``fault`` attribute (``"silent"``, ``"garbage"``,
    ``"truncated"``) still works.
    """

    #: Sensor fault targets and whether the instrument has an alarm (subclasses).
    sensor_targets: tuple[str, ...] = ()
    has_alarm = False

    def __init__(
        self,
        *,
        baudrate: int,
        framing: str,
        terminator: bytes,
        link: str | None = None,
    ) -> None:
        if baudrate not in BAUD:
            raise ValueError(f"unsupported baud rate {baudrate}")
        self.baudrate = baudrate
        self.framing = framing
        self.terminator = terminator
        self.link = link
        self.fault: str | None = None
        kinds = ["silent", "slow", "garbage", "truncated"]
        if self.sensor_targets:
            kinds += ["stuck", "drift", "noise", "spike"]
        if self.has_alarm:
            kinds.append("alarm")
        self.faults = FaultBoard(type(self).__name__, kinds, targets=lambda: self.sensor_targets)
        self.requests = 0
        self._master = -1
        self._slave = -1
        self._path = ""
        self._buffer = b""
        self._clock: ScaledClock | None = None

    @property
    def path(self) -> str:
        """The slave device path clients open."""
        return self._path

    @property
    def endpoint(self) -> str:
        """``serial:///dev/pts/N``."""
        return f"serial://{self._path}"

    @property
    def clock(self) -> ScaledClock:
        """The simulated clock (set by :meth:`start`)."""
        if self._clock is None:
            raise RuntimeError("simulator not started")
        return self._clock

    async def prepare(self) -> None:
        """Nothing to build ahead of the clock."""

    async def start(self, clock: ScaledClock | None = None) -> None:
        """Open the pty pair and serve the master side on the running loop."""
        self._clock = clock or ScaledClock(1.0)
        self._master, self._slave = os.openpty()
        tty.setraw(self._slave)
        attrs = termios.tcgetattr(self._slave)
        attrs[4] = attrs[5] = BAUD[self.baudrate]
        termios.tcsetattr(self._slave, termios.TCSANOW, attrs)
        os.set_blocking(self._master, False)
        self._path = os.ttyname(self._slave)
        if self.link:
            make_link(Path(self.link), self._path)
        asyncio.get_running_loop().add_reader(self._master, self._readable)

    async def stop(self) -> None:
        """Stop serving and close the pty pair (idempotent)."""
        if self._master >= 0:
            with contextlib.suppress(Exception):
                asyncio.get_running_loop().remove_reader(self._master)
            for fd in (self._master, self._slave):
                with contextlib.suppress(OSError):
                    os.close(fd)
            self._master = self._slave = -1
            if self.link:
                remove_link(Path(self.link))

    def _line_ok(self) -> bool:
        """True when the client's line settings match the instrument's."""
        cflag, ispeed = termios.tcgetattr(self._slave)[2], termios.tcgetattr(self._slave)[4]
        bits = {5: termios.CS5, 6: termios.CS6, 7: termios.CS7, 8: termios.CS8}[
            int(self.framing[0])
        ]
        parity = _PARITY_FLAGS[self.framing[1]]
        stop = termios.CSTOPB if self.framing[2] == "2" else 0
        return (
            ispeed == BAUD[self.baudrate]
            and cflag & termios.CSIZE == bits
            and cflag & (termios.PARENB | termios.PARODD) == parity
            and cflag & termios.CSTOPB == stop
        )

    def _readable(self) -> None:
        try:
            data = os.read(self._master, 4096)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:  # no client has the slave open any more
            return
        self._buffer += data
        sep = self.terminator[-1:]
        while sep in self._buffer:
            raw, self._buffer = self._buffer.split(sep, 1)
            line = raw.strip(b"\r\n")
            if line:
                self._respond(line)
        if len(self._buffer) > 1024:
            self._buffer = b""

    def _respond(self, line: bytes) -> None:
        self.requests += 1
        if not self._line_ok():
            self._send(GARBLED + self.terminator)
            return
        try:
            text = line.decode("ascii")
        except UnicodeDecodeError:
            text = "\x00"
        reply = self.handle(text, self.clock.elapsed())
        board = self.faults
        if reply is None or self.fault == "silent" or board.has("silent"):
            return
        if self.fault == "garbage" or board.has("garbage"):
            data = GARBLED + self.terminator
        elif self.fault == "truncated" or board.has("truncated"):
            data = reply.encode("ascii")[: max(1, len(reply) // 2)]
        else:
            data = reply.encode("ascii") + self.terminator
        slow = board.first("slow")
        if slow is None:
            self._send(data)
        else:
            asyncio.get_running_loop().call_later(float(slow.params["delay_s"]), self._send, data)

    def _send(self, data: bytes) -> None:
        with contextlib.suppress(OSError):
            os.write(self._master, data)

    def handle(self, line: str, now: float) -> str | None:
        """Answer one request line at simulated time ``now`` (None: stay silent)."""
        raise NotImplementedError
