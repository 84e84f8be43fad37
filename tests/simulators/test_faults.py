"""Fault boards: what each simulator accepts, and the sensor-fault arithmetic."""

from __future__ import annotations

import asyncio
import time

import pytest

from simulators.centrifuge.modbus_server import CellProcessorServer
from simulators.faults import FaultBoard, FaultError, Restarter
from simulators.serial_instruments.balance import BalanceSimulator
from simulators.serial_instruments.bench import Bench


def test_each_simulator_accepts_what_its_protocol_allows() -> None:
    tcp, rtu = CellProcessorServer(), CellProcessorServer(url="modbus+rtu://")
    balance = BalanceSimulator(Bench())
    assert {"refuse", "drop", "exception"} <= set(tcp.faults.kinds)
    assert "bad_crc" not in tcp.faults.kinds and "bad_crc" in rtu.faults.kinds
    assert "refuse" not in rtu.faults.kinds and "exception" not in balance.faults.kinds
    with pytest.raises(FaultError, match="cannot show 'bad_status'"):
        tcp.faults.inject("bad_status", target="ir:4")
    with pytest.raises(FaultError, match="no target 'ir:99'"):
        tcp.faults.inject("stuck", target="ir:99")
    with pytest.raises(FaultError, match="code must be one of"):
        tcp.faults.inject("exception", code=9)
    with pytest.raises(FaultError, match="on must be"):
        tcp.faults.inject("exception", code=4, on="both")
    with pytest.raises(FaultError, match="unknown fault kind 'fire'"):
        balance.faults.inject("fire")
    with pytest.raises(FaultError, match="delay_s must be float"):
        balance.faults.inject("slow", delay_s="1")
    with pytest.raises(FaultError, match="unknown parameters target"):
        balance.faults.inject("silent", target="weight")
    assert balance.faults.faults == ()


def test_sensor_faults_transform_values_in_injection_order() -> None:
    board = FaultBoard("x", ["stuck", "drift", "noise", "spike"], targets=lambda: ["t", "u"])
    assert board.sensor("t", 5.0) == 5.0
    spike = board.inject("spike", target="t", value=-40.0)
    assert board.sensor("t", 5.0) == -40.0 and board.sensor("u", 5.0) == 5.0
    board.clear(spike)
    stuck = board.inject("stuck", target="t")
    assert board.sensor("t", 7.0) == 7.0 and board.sensor("t", 9.0) == 7.0
    board.clear(stuck)
    drift = board.inject("drift", target="t", rate=10.0)
    drift.started = time.monotonic() - 2.0
    assert board.sensor("t", 1.0) == pytest.approx(21.0, abs=0.5)
    board.clear()
    changes: list[int] = []
    board.on_change(lambda: changes.append(len(board.faults)))
    noise = board.inject("noise", target="u", sigma=1.0)
    values = {board.sensor("u", 0.0) for _ in range(20)}
    assert len(values) == 20 and max(map(abs, values)) < 6.0
    board.clear(noise)
    board.clear(noise)  # twice is harmless
    assert changes == [1, 0, 0]


async def test_restarter_runs_one_restart_per_fault_and_clears_it() -> None:
    board = FaultBoard("sim", ["restart"])
    started: list[float] = []
    release = asyncio.Event()

    async def restart(downtime_s: float) -> None:
        started.append(downtime_s)
        await release.wait()

    restarter = Restarter(board, restart)
    board.on_inject = restarter.injected
    first = board.inject("restart", downtime_s=0.25)
    await asyncio.sleep(0)
    assert restarter.running and started == [0.25]
    board.inject("restart")  # already restarting: dropped
    await asyncio.sleep(0)
    assert board.faults == (first,) and started == [0.25]
    release.set()
    for _ in range(10):  # bounded: the restart ends within a few loop turns
        if not restarter.running:
            break
        await asyncio.sleep(0)
    assert not restarter.running and board.faults == ()
    board.inject("restart")
    await asyncio.sleep(0)
    assert started == [0.25, 1.0]  # the default downtime
    await restarter.cancel()
    assert not restarter.running
