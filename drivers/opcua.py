"""OPC UA client connection: batched reads and writes, method calls, subscriptions.

Every call is bounded by a timeout and raises only typed driver errors.
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

T = TypeVar("T")

for _name in ("asyncua", "asyncua.client", "asyncua.common", "asyncua.uaprotocol"):
    logging.getLogger(_name).setLevel(logging.ERROR)

DataChangeSink = Callable[[int, ua.DataValue], None]
"""Receives (index of the subscribed node, its new DataValue)."""


def variant_type(name: str) -> ua.VariantType:
    """The OPC UA variant type named in a profile (``Double``, ``Float``, ``Int32``…)."""
    try:
        return ua.VariantType[name]
    except KeyError:
        raise DriverError(f"unknown OPC UA data type {name!r}") from None


class OpcUaConnection:
    """One client session to one OPC UA server, shared by every device on it."""

    def __init__(self, url: str, *, timeout: float = 5.0) -> None:
        self.url = url
        self.timeout = timeout
        self._client: Client | None = None
        self._lock = asyncio.Lock()
        self._subscriptions: list[_Subscription] = []

    @property
    def connected(self) -> bool:
        """True while a session is open."""
        return self._client is not None

    async def connect(self) -> None:
        """Open the session (idempotent)."""
        async with self._lock:
            if self._client is not None:
                return
            client = Client(self.url, timeout=self.timeout)
            try:
                await asyncio.wait_for(client.connect(), self.timeout * 2)
            except TimeoutError:
                limit = self.timeout * 2
                raise DriverTimeout(f"{self.url}: no answer within {limit:.1f} s") from None
            except OSError as exc:
                raise Disconnected(f"{self.url}: cannot connect ({exc.strerror or exc})") from None
            except ua.UaError as exc:
                raise ProtocolError(f"{self.url}: {exc}") from None
            self._client = client

    async def close(self) -> None:
        """Delete subscriptions and close the session; never raises."""
        client, self._client = self._client, None
        for sub in self._subscriptions:
            await sub.cancel()
        self._subscriptions.clear()
        if client is not None:
            with contextlib.suppress(Exception):  # closing a dead session must not fail
                await asyncio.wait_for(client.disconnect(), self.timeout)

    def _require(self) -> Client:
        if self._client is None:
            raise Disconnected(f"{self.url}: not connected")
        return self._client

    async def _bounded(self, what: str, coro: Awaitable[T]) -> T:
        try:
            return await asyncio.wait_for(coro, self.timeout)
        except TimeoutError:
            raise DriverTimeout(f"{self.url}: {what}: no answer in {self.timeout:.1f} s") from None
        except ConnectionError as exc:
            raise Disconnected(f"{self.url}: {what}: connection lost ({exc})") from None
        except ua.UaStatusCodeError as exc:
            raise ProtocolError(f"{self.url}: {what}: {exc}") from None

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

    async def read(self, node_ids: Sequence[ua.NodeId]) -> list[ua.DataValue]:
        """Read the Value attribute of many nodes in one round trip."""
        client = self._require()
        nodes = [client.get_node(n) for n in node_ids]
        return await self._bounded("read", client.read_attributes(nodes))

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
            return await asyncio.wait_for(node.call_method(method_id, *args), self.timeout)
        except ua.UaStatusCodeError as exc:
            raise WriteRejected(f"{method_id.to_string()}: {exc}") from None
        except TimeoutError:
            raise DriverTimeout(f"{self.url}: call: no answer in {self.timeout:.1f} s") from None
        except ConnectionError as exc:
            raise Disconnected(f"{self.url}: call: connection lost ({exc})") from None

    async def subscribe(
        self,
        node_ids: Sequence[ua.NodeId],
        sink: DataChangeSink,
        *,
        publishing_interval_ms: float = 50.0,
        queue_size: int = 10_000,
    ) -> Callable[[], Awaitable[None]]:
        """Deliver every queued change of the nodes to ``sink``; returns an async cancel."""
        client = self._require()
        sub = await self._bounded(
            "create subscription",
            client.create_subscription(
                publishing_interval_ms, None, queue_maxsize=0, overflow=OverflowPolicy.WARN
            ),
        )
        nodes = [client.get_node(n) for n in node_ids]
        handles = await self._bounded(
            "monitor", sub.create_monitored_items(_monitor_requests(nodes, queue_size))
        )
        failed = [str(h) for h in handles if isinstance(h, ua.StatusCode)]
        if failed:
            await sub.delete()
            raise ProtocolError(f"{self.url}: cannot monitor nodes: {', '.join(failed)}")
        index = {node.nodeid: i for i, node in enumerate(nodes)}
        entry = _Subscription(sub, index, sink)
        self._subscriptions.append(entry)
        return entry.cancel


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
    """Drains one asyncua subscription's event queue into a sink."""

    def __init__(self, sub: Any, index: dict[ua.NodeId, int], sink: DataChangeSink) -> None:
        self._sub = sub
        self._index = index
        self._sink = sink
        self._task = asyncio.create_task(self._drain())

    async def _drain(self) -> None:
        # A lost connection ends the stream; the consumer notices the silence (its
        # watchdog), so the error is not raised into a task nobody awaits.
        with contextlib.suppress(ConnectionError, ua.UaError):
            async for event in self._sub:
                if isinstance(event, DataChangeEvent):
                    dv = event.data.monitored_item.Value
                    self._sink(self._index[event.node.nodeid], dv)

    async def cancel(self) -> None:
        if self._task.done():
            return
        self._task.cancel()
        with contextlib.suppress(Exception):  # the server may already be gone
            await asyncio.wait_for(self._sub.delete(), 2.0)


def source_time(dv: ua.DataValue) -> datetime | None:
    """The instrument's timestamp of a value (server timestamp if it gave none)."""
    return dv.SourceTimestamp or dv.ServerTimestamp
