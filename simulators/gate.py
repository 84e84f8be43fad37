"""A TCP front door for a simulator: forwards bytes, and shows connection faults.

The protocol server (asyncua, pymodbus) listens on a private port of 127.0.0.1;
:class:`TcpGate` listens on the public address and joins every client to a fresh
connection to it. While its :class:`~simulators.faults.FaultBoard` says so, the gate
refuses connections (its listening socket is closed), drops them, answers nothing,
delays answers, or replaces or cuts them — on the real socket, so the client sees
exactly what a broken instrument or network would give it.
"""

from __future__ import annotations

import asyncio
import contextlib
import time

from simulators.faults import FaultBoard

__all__ = ["CONNECTION_KINDS", "TcpGate"]

#: Fault kinds the gate shows.
CONNECTION_KINDS = ("refuse", "drop", "silent", "slow", "garbage", "truncated")


class TcpGate:
    """Forwards ``host:port`` to a private upstream port, applying connection faults."""

    def __init__(self, board: FaultBoard, host: str, port: int) -> None:
        self.board = board
        self.host = host
        self.port = port
        self.upstream: tuple[str, int] = ("127.0.0.1", 0)
        self._server: asyncio.Server | None = None
        self._pipes: set[_ClientSide] = set()
        self._stopped = False
        board.on_change(self._faults_changed)

    async def start(self, upstream: tuple[str, int]) -> int:
        """Listen (port 0 = any free port) and forward to ``upstream``; returns the port."""
        self.upstream = upstream
        await self._listen()
        return self.port

    async def _listen(self) -> None:
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(
            lambda: _ClientSide(self), self.host, self.port, reuse_address=True
        )
        if self.port == 0:
            self.port = self._server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        """Close the listening socket and every connection (idempotent)."""
        self._stopped = True
        for pipe in list(self._pipes):
            pipe.abort()
        server, self._server = self._server, None
        if server is not None:
            server.close()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(server.wait_closed(), 1.0)

    def _faults_changed(self) -> None:
        if self._stopped:
            return
        if self.board.has("drop"):
            for pipe in list(self._pipes):
                pipe.abort()
        refusing = self.board.has("refuse")
        if refusing and self._server is not None:
            server, self._server = self._server, None
            server.close()
        elif not refusing and self._server is None:
            task = asyncio.get_running_loop().create_task(self._listen())
            task.add_done_callback(_ignore_result)


def _ignore_result(task: asyncio.Task[None]) -> None:
    if not task.cancelled():
        task.exception()


class _ClientSide(asyncio.Protocol):
    """The client's connection to the gate."""

    def __init__(self, gate: TcpGate) -> None:
        self.gate = gate
        self.transport: asyncio.Transport | None = None
        self.upstream: asyncio.Transport | None = None
        self._pending: list[bytes] = []
        self._send_at = 0.0

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        if self.gate.board.has("drop") or self.gate.board.has("refuse"):
            transport.abort()
            return
        self.gate._pipes.add(self)
        task = asyncio.get_running_loop().create_task(self._connect_upstream())
        task.add_done_callback(_ignore_result)

    async def _connect_upstream(self) -> None:
        loop = asyncio.get_running_loop()
        try:
            transport, _ = await loop.create_connection(
                lambda: _ServerSide(self), *self.gate.upstream
            )
        except OSError:
            self.abort()
            return
        self.upstream = transport
        for data in self._pending:
            transport.write(data)
        self._pending.clear()

    def data_received(self, data: bytes) -> None:
        if self.gate.board.has("silent"):
            return
        if self.upstream is None:
            self._pending.append(data)
        else:
            self.upstream.write(data)

    def to_client(self, data: bytes) -> None:
        """An answer from the server, as the faults let it through."""
        board = self.gate.board
        if board.has("silent") or self.transport is None:
            return
        if board.has("garbage"):
            data = board.garble(len(data))
        if board.has("truncated"):
            data = data[: len(data) // 2]
        slow = board.first("slow")
        if slow is None:
            self.transport.write(data)
            return
        # Keep the order of answers: never send before an earlier delayed one.
        now = time.monotonic()
        self._send_at = max(self._send_at, now + float(slow.params["delay_s"]))
        asyncio.get_running_loop().call_at(
            asyncio.get_running_loop().time() + (self._send_at - now), self._write, data
        )

    def _write(self, data: bytes) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.write(data)

    def abort(self) -> None:
        """Close both sides at once (a dropped connection)."""
        self.gate._pipes.discard(self)
        if self.transport is not None:
            self.transport.abort()
        if self.upstream is not None:
            self.upstream.abort()

    def connection_lost(self, exc: Exception | None) -> None:
        self.gate._pipes.discard(self)
        if self.upstream is not None:
            self.upstream.close()


class _ServerSide(asyncio.Protocol):
    """The gate's connection to the protocol server."""

    def __init__(self, client: _ClientSide) -> None:
        self.client = client

    def data_received(self, data: bytes) -> None:
        self.client.to_client(data)

    def connection_lost(self, exc: Exception | None) -> None:
        if self.client.transport is not None:
            self.client.transport.close()
