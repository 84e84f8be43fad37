"""The controlled-rate freezer: its model, and its server over a real Modbus TCP socket."""

from __future__ import annotations

import asyncio
import shutil
import time
from collections.abc import AsyncIterator
from itertools import pairwise
from urllib.parse import urlsplit

import pytest
import pytest_asyncio
from pymodbus.client import AsyncModbusTcpClient

from simulators.centrifuge.modbus_server import regs_float
from simulators.freezer.modbus_server import FIRMWARE, MODEL_ID, FreezerServer
from simulators.freezer.model import (
    ALARM_DEVIATION,
    MAX_COOL_C_PER_MIN,
    MAX_HEAT_C_PER_MIN,
    PROGRAMS,
    CommandRefused,
    FreezerModel,
    State,
)
from simulators.launch import start_simulators

SCALE = 1500.0  # the 4.8-minute test program takes ~0.19 s
WAIT_S = 5.0


# -- model ---------------------------------------------------------------------------


def _run(model: FreezerModel, until_s: float) -> list[tuple[float, float, float, float]]:
    """Step ``model`` second by second: (t, profile setpoint, chamber, sample) rows."""
    rows = []
    t = 0.0
    while t < until_s and model.state is State.RUNNING:
        t += 1.0
        model.advance(t)
        rows.append((t, model.setpoint_c, model.chamber_c, model.sample_c))
    return rows


def test_car_t_program_completes_at_the_profile_duration() -> None:
    prog = PROGRAMS[1]
    # hold 10 min; 8 °C at 1/min; 36 °C at 25/min; 28 °C at 10/min; 28 °C at 1/min; 50 at 10/min
    expected = (10 + 8 + 36 / 25 + 28 / 10 + 28 + 5) * 60.0
    assert prog.total_s() == pytest.approx(expected)
    model = FreezerModel()
    model.start(0.0)
    assert model.remaining_s == pytest.approx(expected)
    rows = _run(model, 2 * expected)
    assert model.state is State.COMPLETE and model.alarm_code == 0
    assert expected <= rows[-1][0] < expected + 2.0
    assert model.chamber_c == pytest.approx(-90.0, abs=2.0)
    assert model.sample_c < -60.0  # the bag lags the chamber
    # chamber rates stay inside the cooling and heating limits; tracking stays tight
    rates = [(b[2] - a[2]) * 60.0 for a, b in pairwise(rows)]
    assert min(rates) >= -MAX_COOL_C_PER_MIN - 1e-9 and max(rates) <= MAX_HEAT_C_PER_MIN + 1e-9
    assert min(rates) < -20.0 and max(rates) > 8.0  # the fast steps are really taken
    assert max(abs(sp - ch) for _, sp, ch, _ in rows) < 5.0
    # the segment number walked through every segment
    model2 = FreezerModel()
    model2.start(0.0)
    seen = set()
    for t in range(0, round(expected), 10):
        model2.advance(float(t))
        seen.add(model2.segment)
    assert seen == {1, 2, 3, 4, 5, 6}


def test_sample_shows_the_latent_heat_bump() -> None:
    model = FreezerModel()
    model.start(0.0)
    rows = _run(model, 40 * 60.0)
    samples = [s for _, _, _, s in rows]
    jumps = [i for i in range(1, len(rows)) if samples[i] - samples[i - 1] > 3.0]
    assert len(jumps) == 1  # nucleation: one sudden rise
    i = jumps[0]
    assert -8.0 < samples[i - 1] <= -6.5  # supercooled to about −7 °C
    assert -3.5 < samples[i] < -2.0  # back up to the freezing plateau
    assert rows[i][2] < rows[i - 1][2] < -10.0  # while the chamber keeps falling
    plateau = [t for t, _, _, s in rows[i:] if s >= -5.0 - 1e-6]
    assert 180.0 <= len(plateau) <= 600.0  # a few minutes of latent heat release
    assert samples[i + len(plateau) + 120] < -8.0  # then it follows the chamber again


def test_deviation_alarm_after_two_minutes_without_cooling() -> None:
    model = FreezerModel()
    model.select(2)
    model.start(0.0)
    model.ln2_supply_ok = False
    model.advance(60.0)  # profile −1 °C: not yet 5 °C off
    assert model.state is State.RUNNING
    model.advance(400.0)
    assert model.state is State.ALARM and model.alarm_code == ALARM_DEVIATION
    with pytest.raises(CommandRefused):
        model.start(400.0)
    model.reset()
    assert model.state is State.IDLE and model.alarm_code == 0


def test_model_refuses_bad_commands() -> None:
    model = FreezerModel()
    with pytest.raises(CommandRefused):
        model.select(0)
    model.select(2)
    model.start(0.0)
    with pytest.raises(CommandRefused, match="running"):
        model.start(1.0)
    with pytest.raises(CommandRefused, match="running"):
        model.select(1)
    with pytest.raises(CommandRefused, match="running"):
        model.reset()
    model.advance(400.0)
    assert model.state is State.COMPLETE and model.chamber_c < -15.0
    with pytest.raises(CommandRefused, match="start temperature"):
        model.start(400.0)  # the chamber is still cold
    model.reset()
    model.advance(600.0)  # warms back to 4 °C at ≤ 15 °C/min
    model.start(600.0)
    assert model.state is State.RUNNING and model.sample_c == 4.0


# -- server --------------------------------------------------------------------------


@pytest_asyncio.fixture
async def server() -> AsyncIterator[FreezerServer]:
    async with FreezerServer(time_scale=SCALE) as srv:
        yield srv


@pytest_asyncio.fixture
async def client(server: FreezerServer) -> AsyncIterator[AsyncModbusTcpClient]:
    port = urlsplit(server.endpoint).port
    c = AsyncModbusTcpClient("127.0.0.1", port=port, timeout=2, retries=0)
    assert await c.connect()
    yield c
    c.close()


async def _until_state(client: AsyncModbusTcpClient, state: State) -> list[int]:
    deadline = time.monotonic() + WAIT_S
    while time.monotonic() < deadline:
        ir = (await client.read_input_registers(0, count=15, device_id=1)).registers
        if ir[0] == state:
            return ir
        await asyncio.sleep(0.01)
    raise AssertionError(f"state {state.name} not reached in {WAIT_S} s")


async def test_register_map_at_rest(client: AsyncModbusTcpClient) -> None:
    hr = (await client.read_holding_registers(0, count=2, device_id=1)).registers
    assert hr == [1, 0]
    ident = (await client.read_holding_registers(100, count=2, device_id=1)).registers
    assert ident == [MODEL_ID, FIRMWARE]
    ir = (await client.read_input_registers(0, count=15, device_id=1)).registers
    assert ir[0] == State.IDLE and ir[1] == 1 and ir[2] == 0 and ir[3] == 0 and ir[14] == 6
    assert regs_float(ir[4:6]) == 4.0 and regs_float(ir[6:8]) == 4.0 and regs_float(ir[8:10]) == 4.0
    di = (await client.read_discrete_inputs(0, count=4, device_id=1)).bits[:4]
    assert di == [False, False, False, True]


@pytest.mark.parametrize(
    ("address", "value", "code"),
    [
        (100, 1, 2),  # model id: read-only
        (101, 1, 2),  # firmware: read-only
        (2, 1, 2),  # unmapped
        (0, 9, 3),  # no program 9
        (1, 7, 3),  # no command 7
    ],
)
async def test_refused_writes_answer_exception_codes(
    client: AsyncModbusTcpClient, address: int, value: int, code: int
) -> None:
    response = await client.write_register(address, value, device_id=1)
    assert response.isError() and response.exception_code == code
    assert (await client.read_holding_registers(0, count=2, device_id=1)).registers == [1, 0]


async def test_test_program_runs_to_complete_on_the_clock(
    server: FreezerServer, client: AsyncModbusTcpClient
) -> None:
    started = server.clock.elapsed()
    assert not (await client.write_registers(0, [2, 1], device_id=1)).isError()
    ir = (await client.read_input_registers(0, count=15, device_id=1)).registers
    assert ir[0] == State.RUNNING and ir[1] == 2 and ir[3] == 1 and ir[14] == 1
    assert (await client.read_coils(0, count=1, device_id=1)).bits[0] is True
    assert (await client.write_register(0, 1, device_id=1)).exception_code == 3  # busy
    assert (await client.write_register(1, 1, device_id=1)).exception_code == 3  # running
    ir = await _until_state(client, State.COMPLETE)
    took = server.clock.elapsed() - started
    expected = 24 / 5 * 60  # 4 → −20 °C at 5 °C/min
    # Polling may see COMPLETE late on a busy machine; the program's own timer is exact.
    assert took >= expected
    assert ir[10] + (ir[11] << 16) == round(expected) and ir[12] == 0 and ir[3] == 0
    assert regs_float(ir[8:10]) == -20.0
    assert regs_float(ir[4:6]) == pytest.approx(-20.0, abs=1.0)
    di = (await client.read_discrete_inputs(0, count=3, device_id=1)).bits[:3]
    assert di == [False, True, False]
    await client.write_register(1, 3, device_id=1)  # reset
    assert (await client.read_input_registers(0, count=1, device_id=1)).registers[0] == State.IDLE


async def test_coil_run_stop_and_alarm_reset(
    server: FreezerServer, client: AsyncModbusTcpClient
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


async def test_restart_comes_back_idle_with_the_chamber_as_it_was(server: FreezerServer) -> None:
    endpoint = server.endpoint
    server.model.select(2)
    server.model.start(server.clock.elapsed())
    await asyncio.sleep(0.1)  # the program cools the chamber
    server.model.advance(server.clock.elapsed())
    cold = server.model.chamber_c
    assert cold < 4.0
    await server.restart(0.0)
    assert server.endpoint == endpoint and server.restarts == 1
    m = server.model
    assert (m.state, m.program, m.segment) == (State.IDLE, 1, 0)  # the run is lost
    assert m.chamber_c == pytest.approx(cold, abs=2.0)  # physics did not restart
    port = urlsplit(endpoint).port
    c = AsyncModbusTcpClient("127.0.0.1", port=port, timeout=2, retries=0)
    assert await c.connect()
    try:
        ir = await _until_state(c, State.IDLE)
        assert regs_float(ir[4:6]) < 4.0
    finally:
        c.close()


async def test_launch_kind_modbus_freezer() -> None:
    sims = await start_simulators(
        [{"name": "crf", "kind": "modbus-freezer", "listen": "modbus+tcp://127.0.0.1:0"}],
        time_scale=SCALE,
    )
    try:
        ep = sims.endpoints["crf"]
        assert ep.startswith("modbus+tcp://127.0.0.1:") and not ep.endswith(":0")
        server = sims.servers["crf"]
        assert isinstance(server, FreezerServer) and server.clock is sims.clock
    finally:
        await sims.stop()
    with pytest.raises(ValueError, match="unknown keys 'vessels'"):
        await start_simulators(
            [{"name": "x", "kind": "modbus-freezer", "listen": "modbus+tcp://h:1", "vessels": []}],
            time_scale=1.0,
        )
    with pytest.raises(ValueError, match="not a modbus"):
        await start_simulators(
            [{"name": "x", "kind": "modbus-freezer", "listen": "opc.tcp://h:1"}], time_scale=1.0
        )


@pytest.mark.skipif(shutil.which("mbpoll") is None, reason="mbpoll is not installed")
async def test_mbpoll_reads_the_published_addresses(server: FreezerServer) -> None:
    """The README's mbpoll command line: 1-based references, low word first by default."""
    port = str(urlsplit(server.endpoint).port)
    proc = await asyncio.create_subprocess_exec(
        *["mbpoll", "-m", "tcp", "-p", port, "-a", "1", "-t", "3:float", "-r", "5", "-c", "3"],
        *["-1", "127.0.0.1"],
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, _ = await asyncio.wait_for(proc.communicate(), WAIT_S)
    assert proc.returncode == 0
    lines = [line.split() for line in out.decode().splitlines() if line.startswith("[")]
    assert lines == [["[5]:", "4"], ["[7]:", "4"], ["[9]:", "4"]]
