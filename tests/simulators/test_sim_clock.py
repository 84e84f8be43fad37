"""ScaledClock: scaled, monotonic, shareable through epoch and scale."""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime, timedelta

import pytest

from simulators.clock import ScaledClock


def test_epoch_defaults_to_now_and_time_runs_scaled() -> None:
    before = datetime.now(UTC)
    clock = ScaledClock(1000.0)
    after = datetime.now(UTC)
    assert before <= clock.epoch <= after
    assert clock.epoch.tzinfo is not None
    t0 = clock.elapsed()
    time.sleep(0.02)
    t1 = clock.elapsed()
    assert 15.0 <= t1 - t0 <= 200.0  # 20 ms wall ≈ 20 s simulated (generous upper bound)
    now = clock.now()
    assert now.tzinfo is not None and now.utcoffset() == timedelta(0)
    assert now >= clock.epoch + timedelta(seconds=t1)


def test_never_steps_backwards() -> None:
    clock = ScaledClock(1e6)
    readings = [clock.elapsed() for _ in range(10_000)]
    assert readings == sorted(readings)


def test_explicit_epoch_gives_the_same_time_as_a_peer() -> None:
    server_clock = ScaledClock(500.0)
    client_clock = ScaledClock(server_clock.scale, server_clock.epoch)
    difference = abs((client_clock.now() - server_clock.now()).total_seconds())
    assert difference < 0.05 * 500.0  # within 50 ms of wall time


def test_past_epoch_means_time_already_elapsed() -> None:
    clock = ScaledClock(10.0, datetime.now(UTC) - timedelta(seconds=60))
    assert 590.0 <= clock.elapsed() <= 700.0


def test_wall_delay_and_sleep() -> None:
    clock = ScaledClock(100.0)
    assert clock.wall_delay(50.0) == pytest.approx(0.5)
    assert clock.wall_delay(0.0) == 0.0
    with pytest.raises(ValueError):
        clock.wall_delay(-1.0)
    t0 = clock.elapsed()
    asyncio.run(clock.sleep(3.0))  # 30 ms of wall time
    assert clock.elapsed() - t0 >= 3.0


@pytest.mark.parametrize("scale", [0.0, -1.0, float("nan"), float("inf")])
def test_rejects_bad_scale(scale: float) -> None:
    with pytest.raises(ValueError):
        ScaledClock(scale)


def test_rejects_naive_epoch() -> None:
    with pytest.raises(ValueError):
        ScaledClock(1.0, datetime(2025, 1, 1))
