"""Prebuilt OPC UA read requests: same wire request, same readings, bounded cache."""

from __future__ import annotations

import itertools
from collections.abc import AsyncIterator
from datetime import UTC, datetime

import pytest
import pytest_asyncio
from asyncua import Client, ua
from asyncua.ua.ua_binary import struct_to_binary

from drivers import Device, DevicePool, Quality
from drivers.opcua import ReadPlan
from drivers.opcua_backend import OpcUaBackend, _reading, quality_of
from drivers.plans import PLANS_MAX as _PLANS_MAX
from simulators.bioreactor.opcua_server import BioreactorServer

on_session_loop = pytest.mark.asyncio(loop_scope="session")

NAMESPACE = "urn:cellbatch:simulators:bioreactor"
CAPABILITIES = ["temperature.sp", "rocking.rate_sp", "temperature.pv", "ph.pv"]


def test_plan_sends_the_request_read_attributes_builds() -> None:
    ids = [ua.NodeId(f"SV-01.Node{i}", 2) for i in range(8)] + [ua.NodeId(85, 0)]
    # What asyncua's read_attributes puts on the wire (ua_session.read_attributes).
    request = ua.ReadRequest()
    for node_id in ids:
        rv = ua.ReadValueId()
        rv.NodeId = node_id
        rv.AttributeId = ua.AttributeIds.Value
        request.Parameters.NodesToRead.append(rv)
    plan = ReadPlan(ids)
    assert plan.node_ids == tuple(ids)
    assert struct_to_binary(plan.parameters) == struct_to_binary(request.Parameters)


@pytest.mark.parametrize(
    "status",
    [
        None,
        ua.StatusCode(ua.StatusCodes.Good),
        ua.StatusCode(ua.StatusCodes.GoodClamped),
        ua.StatusCode(ua.StatusCodes.UncertainLastUsableValue),
        ua.StatusCode(ua.StatusCodes.BadSensorFailure),
        ua.StatusCode(ua.StatusCodes.BadNodeIdUnknown),
    ],
)
def test_reading_quality_matches_quality_of(status: ua.StatusCode | None) -> None:
    source = datetime(2024, 1, 2, 3, 4, 5, tzinfo=UTC)
    dv = ua.DataValue(ua.Variant(36.5, ua.VariantType.Double), SourceTimestamp=source)
    dv.StatusCode = status  # type: ignore[assignment]
    reading = _reading("temperature.pv", "degC", dv)
    assert reading.quality is quality_of(status)
    assert (reading.capability, reading.value, reading.unit) == ("temperature.pv", 36.5, "degC")
    assert reading.source_time == source


def test_reading_without_value_or_source_time() -> None:
    server = datetime(2024, 1, 2, tzinfo=UTC)
    dv = ua.DataValue(None, StatusCode=ua.StatusCode(ua.StatusCodes.BadWaitingForInitialData))
    dv.ServerTimestamp = server
    reading = _reading("ph.pv", "pH", dv)
    assert reading.value is None
    assert reading.quality is Quality.BAD
    assert reading.source_time == server


@pytest_asyncio.fixture(loop_scope="session")
async def device(bioreactors: BioreactorServer) -> AsyncIterator[Device]:
    pool = DevicePool(timeout=2.0)
    device = pool.open(
        "SV-03", "rocking_bioreactor_opcua", bioreactors.endpoint, {"vessel": "SV-03"}
    )
    await device.connect()
    yield device
    await pool.close()


@on_session_loop
async def test_cached_reads_match_a_raw_read(device: Device, bioreactors: BioreactorServer) -> None:
    backend = device.backend
    assert isinstance(backend, OpcUaBackend)
    await device.write("temperature.sp", 36.8)
    first = await device.read(CAPABILITIES)
    built = backend._plans.built
    second = await device.read(CAPABILITIES)
    assert backend._plans.built == built, "the same list reuses its plan"
    assert [r.capability for r in second] == CAPABILITIES
    assert [r.unit for r in first] == [r.unit for r in second]
    assert second[0].value == pytest.approx(36.8)

    client = Client(bioreactors.endpoint, timeout=2)
    await client.connect()
    try:
        ns = await client.get_namespace_index(NAMESPACE)
        node = client.get_node(ua.NodeId("SV-03.Temperature.SP", ns))
        (raw,) = await client.read_attributes([node])
    finally:
        await client.disconnect()
    assert raw.Value is not None
    assert second[0].value == raw.Value.Value
    assert second[0].quality is quality_of(raw.StatusCode)
    assert second[0].source_time == (raw.SourceTimestamp or raw.ServerTimestamp)


@on_session_loop
async def test_a_plain_node_id_list_still_reads(device: Device) -> None:
    backend = device.backend
    assert isinstance(backend, OpcUaBackend)
    node_id = backend.node_id(device.profile.tag("temperature.sp").address)
    (dv,) = await backend.connection.read([node_id])
    assert dv.StatusCode is not None and dv.StatusCode.is_good()


@on_session_loop
async def test_repeated_capability_and_status_in_one_read(device: Device) -> None:
    readings = await device.read(["ph.pv", "connection.status", "ph.pv"])
    assert [r.capability for r in readings] == ["ph.pv", "connection.status", "ph.pv"]
    assert readings[0].value == readings[2].value


@on_session_loop
async def test_plan_cache_is_bounded(device: Device) -> None:
    backend = device.backend
    assert isinstance(backend, OpcUaBackend)
    pairs = itertools.islice(
        itertools.permutations(sorted(device.profile.tags), 2), _PLANS_MAX + 10
    )
    for capabilities in map(list, pairs):
        readings = await device.read(capabilities)
        assert [r.capability for r in readings] == capabilities
        assert len(backend._plans) <= _PLANS_MAX
    assert len(backend._plans) == _PLANS_MAX
