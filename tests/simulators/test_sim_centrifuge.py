"""The cell processor simulator over a real Modbus TCP socket, with a plain pymodbus client."""

from __future__ import annotations

import asyncio
import shutil
import time
from collections.abc import AsyncIterator
from urllib.parse import urlsplit

import pytest
import pytest_asyncio
from pymodbus.client import AsyncModbusTcpClient

from simulators.centrifuge.modbus_server import (
    FIRMWARE,
    MODEL_ID,
    CellProcessorServer,
    float_regs,
    regs_float,
)
from simulators.centrifuge.model import CellProcessorModel, CommandRefused, Phase, State

SCALE = 6000.0  # a 34.5-minute wash program takes ~0.35 s
WAIT_S = 5.0


@pytest_asyncio.fixture
async def server() -> AsyncIterator[CellProcessorServer]:
    async with CellProcessorServer(time_scale=SCALE) as srv:
        yield srv


@pytest_asyncio.fixture
async def client(server: CellProcessorServer) -> AsyncIterator[AsyncModbusTcpClient]:
    port = urlsplit(server.endpoint).port
    c = AsyncModbusTcpClient("127.0.0.1", port=port, timeout=2, retries=0)
    assert await c.connect()
    yield c
    c.close()


def _float(regs: list[int]) -> float:
    return AsyncModbusTcpClient.convert_from_registers(
        regs, AsyncModbusTcpClient.DATATYPE.FLOAT32, word_order="little"
    )  # type: ignore[return-value]


async def test_register_map_at_rest(client: AsyncModbusTcpClient) -> None:
    hr = (await client.read_holding_registers(0, count=6, device_id=1)).registers
    assert hr[0] == 1 and hr[1] == 0
    assert _float(hr[2:4]) == 500.0 and _float(hr[4:6]) == 50.0
    ident = (await client.read_holding_registers(100, count=2, device_id=1)).registers
    assert ident == [MODEL_ID, FIRMWARE]
    ir = (await client.read_input_registers(0, count=16, device_id=1)).registers
    assert ir[0] == State.IDLE and ir[15] == 221
    di = (await client.read_discrete_inputs(0, count=4, device_id=1)).bits[:4]
    assert di == [False, False, False, True]


def test_float_word_order_is_low_word_first() -> None:
    regs = float_regs(123.5)
    assert regs == AsyncModbusTcpClient.convert_to_registers(
        123.5, AsyncModbusTcpClient.DATATYPE.FLOAT32, word_order="little"
    )
    assert regs_float(regs) == 123.5


@pytest.mark.parametrize(
    ("address", "values", "code"),
    [
        (100, [1], 2),  # model id: read-only
        (101, [1], 2),  # firmware: read-only
        (50, [1], 2),  # unmapped
        (0, [9], 3),  # no program 9
        (1, [7], 3),  # no command 7
        (2, float_regs(5000.0), 3),  # input volume above 1000 mL
        (4, float_regs(1.0), 3),  # final volume below 5 mL
    ],
)
async def test_refused_writes_answer_exception_codes(
    client: AsyncModbusTcpClient, address: int, values: list[int], code: int
) -> None:
    if len(values) == 1:
        response = await client.write_register(address, values[0], device_id=1)
    else:
        response = await client.write_registers(address, values, device_id=1)
    assert response.isError() and response.exception_code == code
    hr = (await client.read_holding_registers(0, count=6, device_id=1)).registers
    assert hr[0] == 1 and _float(hr[2:4]) == 500.0 and _float(hr[4:6]) == 50.0


async def _until_state(client: AsyncModbusTcpClient, state: State) -> list[int]:
    deadline = time.monotonic() + WAIT_S
    while time.monotonic() < deadline:
        ir = (await client.read_input_registers(0, count=16, device_id=1)).registers
        if ir[0] == state:
            return ir
        await asyncio.sleep(0.01)
    raise AssertionError(f"state {state.name} not reached in {WAIT_S} s")


async def test_wash_program_runs_to_complete_on_the_clock(
    server: CellProcessorServer, client: AsyncModbusTcpClient
) -> None:
    await client.write_registers(2, float_regs(400.0) + float_regs(40.0), device_id=1)
    started = server.clock.elapsed()
    assert not (await client.write_registers(0, [1, 1], device_id=1)).isError()
    running = (await client.read_input_registers(0, count=4, device_id=1)).registers
    assert running[0] == State.RUNNING and running[1] == 1 and running[3] == Phase.LOAD
    assert (await client.read_coils(0, count=1, device_id=1)).bits[0] is True
    # selecting another program while running is refused
    assert (await client.write_register(0, 2, device_id=1)).exception_code == 3
    ir = await _until_state(client, State.COMPLETE)
    took = server.clock.elapsed() - started
    expected = 400 / 50 * 60 + 3 * 360 + 240 + 40 / 20 * 60  # load, wash, concentrate, harvest
    # Polling may see COMPLETE late on a busy machine; the program's own timer is exact.
    assert took >= expected
    assert _float(ir[4:6]) == 400.0 and _float(ir[6:8]) == 40.0
    assert _float(ir[8:10]) == pytest.approx(92.0)
    assert ir[10] + (ir[11] << 16) == round(expected) and ir[12] == 0
    di = (await client.read_discrete_inputs(0, count=3, device_id=1)).bits[:3]
    assert di == [False, True, False]
    await client.write_register(1, 3, device_id=1)  # reset
    assert (await client.read_input_registers(0, count=1, device_id=1)).registers[0] == State.IDLE


async def test_coil_run_stop_and_alarm_reset(
    server: CellProcessorServer, client: AsyncModbusTcpClient
) -> None:
    await client.write_coil(0, True, device_id=1)
    await _until_state(client, State.RUNNING)
    await client.write_coil(0, False, device_id=1)
    await _until_state(client, State.IDLE)
    server.raise_alarm(17)
    ir = await _until_state(client, State.ALARM)
    assert ir[2] == 17
    assert (await client.read_discrete_inputs(2, count=1, device_id=1)).bits[0] is True
    assert (await client.write_coil(0, True, device_id=1)).exception_code == 3  # no start in alarm
    await client.write_coil(1, True, device_id=1)
    ir = await _until_state(client, State.IDLE)
    assert ir[2] == 0


def test_model_refuses_bad_commands() -> None:
    model = CellProcessorModel()
    model.set_volumes(final_ml=200.0)
    model.set_volumes(input_ml=100.0)
    with pytest.raises(CommandRefused, match="exceeds"):
        model.start(0.0)
    with pytest.raises(CommandRefused):
        model.select(0)
    model.set_volumes(final_ml=50.0)
    model.start(0.0)
    with pytest.raises(CommandRefused, match="running"):
        model.reset()


@pytest.mark.skipif(shutil.which("mbpoll") is None, reason="mbpoll is not installed")
async def test_mbpoll_reads_the_published_addresses(server: CellProcessorServer) -> None:
    """The README's mbpoll command line: 1-based references, low word first by default."""
    port = str(urlsplit(server.endpoint).port)
    proc = await asyncio.create_subprocess_exec(
        *["mbpoll", "-m", "tcp", "-p", port, "-a", "1", "-t", "4:float", "-r", "3", "-c", "2"],
        *["-1", "127.0.0.1"],
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, _ = await asyncio.wait_for(proc.communicate(), WAIT_S)
    assert proc.returncode == 0
    lines = [line.split() for line in out.decode().splitlines() if line.startswith("[")]
    assert lines == [["[3]:", "500"], ["[5]:", "50"]]
