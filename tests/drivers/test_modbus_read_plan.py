"""Cached Modbus read plans: same values as one-off reads, bounded cache, bounded calls."""

from __future__ import annotations

import asyncio
import itertools
import random
import time
from collections.abc import AsyncIterator

import pytest
import pytest_asyncio
from hypothesis import given
from hypothesis import strategies as st

from drivers import Device, DevicePool, DriverError, DriverTimeout
from drivers.modbus import ReadRequest, decode
from drivers.modbus_backend import ModbusBackend, _number_reader
from drivers.plans import PLANS_MAX as _PLANS_MAX
from drivers.profile import TagSpec
from simulators.centrifuge.modbus_server import CellProcessorServer

PROFILE = "cell_processor_modbus"
WORD = st.integers(0, 0xFFFF)
EDGE_WORDS = [0, 1, 0x7FFF, 0x8000, 0x8001, 0xFFFF, 0x3F80, 0x4049, 0x0FDB, 0x7F80, 0xFFC0]


@given(
    st.sampled_from(["int16", "uint16", "int32", "uint32", "float32"]),
    st.sampled_from(["big", "little"]),
    st.lists(WORD, min_size=4, max_size=4),
    st.integers(0, 2),
)
def test_fast_numbers_match_decode(
    data_type: str, word_order: str, words: list[int], at: int
) -> None:
    number = _number_reader(data_type, at, word_order)  # type: ignore[arg-type]
    assert number is not None
    width = 1 if data_type.endswith("16") else 2
    expected = decode(words[at : at + width], data_type, "big", word_order)  # type: ignore[arg-type]
    got = number(words)
    assert type(got) is type(expected)
    assert got == expected or (got != got and expected != expected)  # NaN is NaN


@pytest_asyncio.fixture
async def server() -> AsyncIterator[CellProcessorServer]:
    async with CellProcessorServer(time_scale=1.0) as srv:  # idle: registers hold still
        yield srv


@pytest_asyncio.fixture
async def device(server: CellProcessorServer) -> AsyncIterator[Device]:
    pool = DevicePool(timeout=2.0)
    device = pool.open("CP-01", PROFILE, server.endpoint, {})
    await device.connect()
    yield device
    await pool.close()


@pytest.mark.parametrize("byte_order", ["big", "little"])
@pytest.mark.parametrize("word_order", ["big", "little"])
@pytest.mark.parametrize(
    "extra",
    [
        {},
        {"scale": 0.1},
        {"scale": 2, "offset": -40},
        {"offset": 5},
        {"offset": 0},
        {"enum": ["a", "b", "c"]},
        {"enum": "xyz"},
        {"scale": "bad"},
    ],
)
@pytest.mark.parametrize("data_type", ["int16", "uint16", "int32", "uint32", "float32"])
async def test_converters_give_what_to_value_gives(
    device: Device, byte_order: str, word_order: str, extra: dict[str, object], data_type: str
) -> None:
    backend = device.backend
    assert isinstance(backend, ModbusBackend)
    backend.byte_order, backend.word_order = byte_order, word_order  # type: ignore[assignment]
    spec = TagSpec("x", "ir:3", data_type, "", False, False, dict(extra))
    point = backend.point(spec)
    convert = backend._converter(spec, point, 2)
    rng = random.Random(7)
    samples = [[*p, 0, 0] for p in itertools.product(EDGE_WORDS, repeat=2)]
    samples += [[rng.randrange(0x10000) for _ in range(4)] for _ in range(200)]
    for words in samples:
        try:
            expected = backend._to_value(spec, point, words[2 : 2 + point.width])
        except (TypeError, ValueError, IndexError) as exc:
            with pytest.raises(type(exc)):
                convert(words)
            continue
        got = convert(words)
        assert type(got) is type(expected), (words, got, expected)
        assert got == expected or (got != got and expected != expected), (words, got, expected)


async def test_plan_reads_match_one_off_reads(device: Device) -> None:
    backend = device.backend
    assert isinstance(backend, ModbusBackend)
    capabilities = sorted(device.profile.tags)
    random.Random(3).shuffle(capabilities)
    capabilities += [capabilities[0], "connection.status"]
    readings = await device.read(capabilities)
    again = await device.read(capabilities)
    assert [r.capability for r in readings] == capabilities
    assert [r.value for r in readings] == [r.value for r in again]
    for reading in readings:
        if reading.capability == "connection.status":
            assert reading.value == "connected"
            continue
        spec = device.profile.tag(reading.capability)
        point = backend.point(spec)
        words = await backend.connection.read(point.table, point.address, point.width, 1)
        assert reading.value == backend._to_value(spec, point, words), reading.capability
        assert reading.unit == spec.unit


async def test_plan_cache_is_reused_and_bounded(device: Device) -> None:
    backend = device.backend
    assert isinstance(backend, ModbusBackend)
    await device.read(["state", "rotor.speed"])
    built = backend._plans.built
    await device.read(["state", "rotor.speed"])
    assert backend._plans.built == built, "the same list reuses its plan"
    pairs = itertools.islice(
        itertools.permutations(sorted(device.profile.tags), 2), _PLANS_MAX + 10
    )
    for capabilities in map(list, pairs):
        readings = await device.read(capabilities)
        assert [r.capability for r in readings] == capabilities
        assert len(backend._plans) <= _PLANS_MAX
    assert len(backend._plans) == _PLANS_MAX


async def test_a_device_id_pymodbus_refuses_is_a_typed_error(device: Device) -> None:
    backend = device.backend
    assert isinstance(backend, ModbusBackend)
    request = ReadRequest("ir", 0, 2, 300)
    assert request.pdu is None
    with pytest.raises(DriverError):
        await backend.connection.send(request)


@pytest_asyncio.fixture
async def silent() -> AsyncIterator[Device]:
    """A device on a peer that accepts the connection and never answers."""
    accepted: list[asyncio.StreamWriter] = []

    async def hold(_reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        accepted.append(writer)

    server = await asyncio.start_server(hold, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    pool = DevicePool(timeout=0.3)
    device = pool.open("X", PROFILE, f"modbus+tcp://127.0.0.1:{port}", {})
    await device.connect()
    yield device
    await pool.close()
    for w in accepted:
        w.close()
    server.close()
    await server.wait_closed()


async def test_timeout_leaves_the_task_uncancelled(silent: Device) -> None:
    task = asyncio.current_task()
    assert task is not None
    for _ in range(2):
        started = time.monotonic()
        with pytest.raises(DriverTimeout, match=r"no answer in 0\.3 s"):
            await silent.read(["state", "rotor.speed"])
        assert time.monotonic() - started >= 0.3  # the driver's own timeout ended it
        assert task.cancelling() == 0
        await silent.connect()
    await asyncio.sleep(0)  # a stray cancel would land here


async def test_outside_cancel_and_shorter_timeouts_are_not_driver_timeouts(silent: Device) -> None:
    reader = asyncio.create_task(silent.read(["state"]))
    await asyncio.sleep(0.05)
    reader.cancel()
    with pytest.raises(asyncio.CancelledError):
        await reader
    await silent.connect()
    with pytest.raises(TimeoutError) as caught:
        async with asyncio.timeout(0.05):
            await silent.read(["state"])
    # The caller's shorter timeout ended the read, before the driver's 0.3 s one.
    assert not isinstance(caught.value, DriverTimeout)
    task = asyncio.current_task()
    assert task is not None and task.cancelling() == 0
