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
    wall0 = time.monotonic()
    t0 = clock.elapsed()
    time.sleep(0.02)
    t1 = clock.elapsed()
    wall1 = time.monotonic()
    # Scaled wall time, bracketed by wall readings taken around it (no fixed upper bound).
    assert 20.0 <= t1 - t0 <= (wall1 - wall0) * 1000.0
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
    before = server_clock.now()
    peer = client_clock.now()
    after = server_clock.now()
    # Read between two server readings, the peer's time lies between them (10 ms of wall
    # time for the wall/monotonic anchors taken at each clock's start).
    slack = timedelta(seconds=0.01 * 500.0)
    assert before - slack <= peer <= after + slack


def test_past_epoch_means_time_already_elapsed() -> None:
    clock = ScaledClock(10.0, datetime.now(UTC) - timedelta(seconds=60))
    elapsed = clock.elapsed()
    wall_since_epoch = time.time() - clock.epoch.timestamp()
    assert 600.0 <= elapsed <= wall_since_epoch * 10.0 + 0.01


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
