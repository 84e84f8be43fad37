"""OPC UA client connection: batched reads and writes, method calls, subscriptions.

Every call is bounded by a timeout and raises only typed driver errors. A lost
session (a timeout, a dropped socket, asyncua's keep-alive failing) marks
:attr:`OpcUaConnection.link` down; its task replaces the client by a fresh one
(asyncua clients are not reused after a loss), reconnects with capped backoff and
re-creates every live subscription on the new session, delivering to the same sinks.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Sequence
from datetime import datetime
from typing import Any, TypeVar

from asyncua import Client, Node, ua
from asyncua.common.subscription import DataChangeEvent, OverflowPolicy

from drivers.errors import Disconnected, DriverError, DriverTimeout, ProtocolError, WriteRejected
from drivers.link import Link, LinkPolicy
from drivers.opcua_security import OpcUaSecurity

T = TypeVar("T")

for _name in ("asyncua", "asyncua.client", "asyncua.common", "asyncua.uaprotocol"):
    logging.getLogger(_name).setLevel(logging.ERROR)

DataChangeSink = Callable[[int, ua.DataValue], None]
"""Receives (index of the subscribed node, its new DataValue)."""


class ReadPlan:
    """The parameters of a Read service request for a fixed list of nodes, built once.

    The same request ``Client.read_attributes`` sends (Value attribute, source
    timestamps, no max age), minus rebuilding one ``ReadValueId`` per node on every
    call. It holds no session state, so it stays valid across reconnections.
    """

    __slots__ = ("node_ids", "parameters")

    def __init__(self, node_ids: Sequence[ua.NodeId]) -> None:
        self.node_ids = tuple(node_ids)
        self.parameters = ua.ReadParameters(
            NodesToRead=[
                ua.ReadValueId(NodeId=n, AttributeId=ua.AttributeIds.Value) for n in self.node_ids
            ]
        )


def variant_type(name: str) -> ua.VariantType:
    """The OPC UA variant type named in a profile (``Double``, ``Float``, ``Int32``…)."""
    try:
        return ua.VariantType[name]
    except KeyError:
        raise DriverError(f"unknown OPC UA data type {name!r}") from None


class OpcUaConnection:
    """One client session to one OPC UA server, shared by every device on it."""

    def __init__(
        self,
        url: str,
        *,
        timeout: float = 5.0,
        security: OpcUaSecurity | None = None,
        link_policy: LinkPolicy | None = None,
    ) -> None:
        self.url = url
        self.timeout = timeout
        self.security = security or OpcUaSecurity()
        self.link = Link(url, link_policy or LinkPolicy(), self._reconnect)
        self._client: Client | None = None
        self._lock = asyncio.Lock()
        self._subscriptions: list[_Subscription] = []

    @property
    def connected(self) -> bool:
        """True while a session is open."""
        return self._client is not None

    async def connect(self) -> None:
        """Open the session (idempotent)."""
        self.link.reopen()
        async with self._lock:
            if self._client is not None:
                return
            limit = self.timeout * 2
            client = Client(self.url, timeout=self.timeout, watchdog_intervall=min(1.0, limit))
            try:
                started = await asyncio.wait_for(self._open(client), limit)
            except TimeoutError:
                await _discard(client, self.timeout)
                raise DriverTimeout(f"{self.url}: no answer within {limit:.1f} s") from None
            except OSError as exc:
                raise Disconnected(f"{self.url}: cannot connect ({exc.strerror or exc})") from None
            except ua.UaStatusCodeError as exc:
                await _discard(client, self.timeout)
                raise Disconnected(f"{self.url}: refused: {exc}") from None
            except ua.UaError as exc:
                await _discard(client, self.timeout)
                raise ProtocolError(f"{self.url}: {exc}") from None
            except DriverError:
                await _discard(client, self.timeout)
                raise
            client.connection_lost_callback = self._on_connection_lost
            self._client = client
            self.link.instrument_started = started
        self.link.ok()

    async def _open(self, client: Client) -> datetime | None:
        """Open the session; the server's StartTime (None if it has none)."""
        await self.security.apply(client, self.url)
        await client.connect()
        return await _server_started(client)

    async def _on_connection_lost(self, exc: Exception) -> None:
        self.lost(exc)

    def lost(self, reason: BaseException | str) -> None:
        """The session is gone (or not answering): start reconnecting."""
        self.link.lost(reason)

    async def _reconnect(self) -> None:
        """Replace the client by a fresh one and re-create the subscriptions."""
        client, self._client = self._client, None
        if client is not None:
            await _discard(client, min(self.timeout, 1.0))
        await self.connect()
        client = self._require()
        for sub in list(self._subscriptions):
            await sub.start(self, client)

    async def close(self) -> None:
        """Stop reconnecting, delete subscriptions and close the session; never raises."""
        await self.link.close()
        client, self._client = self._client, None
        for sub in list(self._subscriptions):
            await sub.cancel()
        self._subscriptions.clear()
        if client is not None:
            await _discard(client, self.timeout)

    def _require(self) -> Client:
        if self._client is None:
            raise Disconnected(f"{self.url}: not connected")
        return self._client

    async def _bounded(self, what: str, coro: Awaitable[T]) -> T:
        try:
            # asyncio.timeout, not wait_for: no extra task per call on the hot path.
            async with asyncio.timeout(self.timeout):
                result = await coro
        except TimeoutError:
            error: DriverError = DriverTimeout(
                f"{self.url}: {what}: no answer in {self.timeout:.1f} s"
            )
        except (ConnectionError, OSError) as exc:
            error = Disconnected(f"{self.url}: {what}: connection lost ({exc})")
        except ua.UaStatusCodeError as exc:
            raise ProtocolError(f"{self.url}: {what}: {exc}") from None
        except ua.UaError as exc:  # e.g. a request on a session that is going away
            error = Disconnected(f"{self.url}: {what}: {exc}")
        else:
            self.link.ok()
            return result
        self.lost(error)
        raise error

    async def namespace_index(self, uri: str) -> int:
        """Index of a namespace URI on this server."""
        client = self._require()
        try:
            return await self._bounded("namespace lookup", client.get_namespace_index(uri))
        except ValueError:
            raise ProtocolError(f"{self.url}: server has no namespace {uri!r}") from None

    def node(self, node_id: ua.NodeId) -> Node:
        """A node handle on this session."""
        return self._require().get_node(node_id)

    async def read(self, nodes: Sequence[ua.NodeId] | ReadPlan) -> list[ua.DataValue]:
        """Read the Value attribute of many nodes in one round trip.

        Pass a :class:`ReadPlan` to send a request prebuilt once for that node list
        (what :class:`~drivers.opcua_backend.OpcUaBackend` does for repeated reads).
        """
        client = self._require()
        plan = nodes if isinstance(nodes, ReadPlan) else ReadPlan(nodes)
        return await self._bounded("read", client.uaclient.read(plan.parameters))

    async def read_attribute(
        self, nodes: Sequence[ua.NodeId], attribute: ua.AttributeIds
    ) -> list[ua.DataValue]:
        """Read one attribute (e.g. AccessLevel) of many nodes in one round trip."""
        client = self._require()
        params = ua.ReadParameters(
            NodesToRead=[ua.ReadValueId(NodeId=n, AttributeId=attribute) for n in nodes]
        )
        return await self._bounded("read attribute", client.uaclient.read(params))

    async def write(self, node_id: ua.NodeId, value: Any, vtype: ua.VariantType) -> None:
        """Write one value with an explicit variant type; a refusal raises WriteRejected."""
        client = self._require()
        dv = ua.DataValue(ua.Variant(value, vtype))
        results = await self._bounded(
            "write", client.uaclient.write_attributes([node_id], [dv], ua.AttributeIds.Value)
        )
        status = results[0]
        if not status.is_good():
            raise WriteRejected(f"{node_id.to_string()}: {status.name}")

    async def call(self, object_id: ua.NodeId, method_id: ua.NodeId, args: list[ua.Variant]) -> Any:
        """Call a method; a Bad status raises WriteRejected (the instrument refused)."""
        node = self._require().get_node(object_id)
        try:
            return await self._bounded("call", node.call_method(method_id, *args))
        except ProtocolError as exc:
            raise WriteRejected(f"{method_id.to_string()}: {exc}") from None

    async def subscribe(
        self,
        node_ids: Sequence[ua.NodeId],
        sink: DataChangeSink,
        *,
        publishing_interval_ms: float = 50.0,
        queue_size: int = 10_000,
    ) -> Callable[[], Awaitable[None]]:
        """Deliver every queued change of the nodes to ``sink``; returns an async cancel.

        The subscription outlives reconnections: it is re-created on each new session.
        """
        client = self._require()
        entry = _Subscription(list(node_ids), sink, publishing_interval_ms, queue_size)
        await entry.start(self, client)
        self._subscriptions.append(entry)

        async def cancel() -> None:
            with contextlib.suppress(ValueError):
                self._subscriptions.remove(entry)
            await entry.cancel()

        return cancel


# A node of the OPC UA standard (namespace 0) every conforming server has, not a device's
# own: it belongs here rather than in a device profile.
_START_TIME = ReadPlan((ua.NodeId(ua.Int32(ua.ObjectIds.Server_ServerStatus_StartTime)),))


async def _server_started(client: Client) -> datetime | None:
    """The standard ``Server_ServerStatus_StartTime`` (i=2257): when the server last
    started. None where the server does not have it (or answers it Bad or empty)."""
    try:
        (dv,) = await client.uaclient.read(_START_TIME.parameters)
    except ua.UaStatusCodeError:
        return None
    good = dv.StatusCode is None or dv.StatusCode.is_good()
    value = dv.Value.Value if dv.Value is not None and good else None
    return value if isinstance(value, datetime) and value.year > 1601 else None


async def _discard(client: Client, limit_s: float) -> None:
    """Close a client that may be dead; bounded, never raises."""
    client.connection_lost_callback = None
    with contextlib.suppress(Exception):  # closing a dead session must not fail
        await asyncio.wait_for(client.disconnect(), limit_s)
    with contextlib.suppress(Exception):
        client.disconnect_socket()


def _monitor_requests(nodes: list[Node], queue_size: int) -> list[ua.MonitoredItemCreateRequest]:
    """Monitored items that report every new sample, even of an unchanged value.

    The default trigger (status or value changed) would drop the samples of a steady
    or stuck sensor; the record needs one per instrument update, with its timestamp.
    """
    every_sample = ua.DataChangeFilter(Trigger=ua.DataChangeTrigger.StatusValueTimestamp)
    requests = []
    for handle, node in enumerate(nodes, start=1):
        params = ua.MonitoringParameters(
            ClientHandle=ua.UInt32(handle),
            SamplingInterval=ua.Double(0.0),
            Filter=every_sample,
            QueueSize=ua.UInt32(queue_size),
            DiscardOldest=True,
        )
        requests.append(
            ua.MonitoredItemCreateRequest(
                ItemToMonitor=ua.ReadValueId(NodeId=node.nodeid, AttributeId=ua.AttributeIds.Value),
                MonitoringMode=ua.MonitoringMode.Reporting,
                RequestedParameters=params,
            )
        )
    return requests


class _Subscription:
    """One subscription of a connection: drains asyncua's event queue into a sink."""

    def __init__(
        self,
        node_ids: list[ua.NodeId],
        sink: DataChangeSink,
        publishing_interval_ms: float,
        queue_size: int,
    ) -> None:
        self._node_ids = node_ids
        self._index = {n: i for i, n in enumerate(node_ids)}
        self._sink = sink
        self._interval_ms = publishing_interval_ms
        self._queue_size = queue_size
        self._sub: Any = None
        self._task: asyncio.Task[None] | None = None

    async def start(self, conn: OpcUaConnection, client: Client) -> None:
        """Create the subscription on ``client`` (again, after a reconnection)."""
        self._stop_drain()
        sub = await conn._bounded(
            "create subscription",
            client.create_subscription(
                self._interval_ms, None, queue_maxsize=0, overflow=OverflowPolicy.WARN
            ),
        )
        nodes = [client.get_node(n) for n in self._node_ids]
        handles = await conn._bounded(
            "monitor", sub.create_monitored_items(_monitor_requests(nodes, self._queue_size))
        )
        failed = [
            f"{node.to_string()} ({h.name})"
            for node, h in zip(self._node_ids, handles, strict=False)
            if isinstance(h, ua.StatusCode)
        ]
        if failed:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(sub.delete(), conn.timeout)
            raise ProtocolError(f"{conn.url}: cannot monitor nodes: {', '.join(failed)}")
        self._sub = sub
        self._task = asyncio.create_task(self._drain(conn, sub))

    async def _drain(self, conn: OpcUaConnection, sub: Any) -> None:
        # A lost connection ends the stream: the link reconnects and restarts it. The
        # error is not raised into a task nobody awaits.
        try:
            async for event in sub:
                if isinstance(event, DataChangeEvent):
                    dv = event.data.monitored_item.Value
                    self._sink(self._index[event.node.nodeid], dv)
        except (ConnectionError, ua.UaError) as exc:
            conn.lost(exc)

    def _stop_drain(self) -> None:
        task, self._task = self._task, None
        if task is not None and not task.done():
            task.cancel()

    async def cancel(self) -> None:
        """Stop delivering and delete the server-side subscription (bounded)."""
        self._stop_drain()
        sub, self._sub = self._sub, None
        if sub is not None:
            with contextlib.suppress(Exception):  # the server may already be gone
                await asyncio.wait_for(sub.delete(), 2.0)


def source_time(dv: ua.DataValue) -> datetime | None:
    """The instrument's timestamp of a value (server timestamp if it gave none)."""
    return dv.SourceTimestamp or dv.ServerTimestamp
