"""start_simulators: plant-file specs → running servers on one shared clock."""

from __future__ import annotations

import asyncio
from typing import Any
from urllib.parse import urlsplit

import pytest
from asyncua import Client

from simulators.launch import start_simulators


def spec(name: str, **extra: Any) -> dict[str, Any]:
    return {
        "name": name,
        "kind": "opcua-bioreactor",
        "listen": f"opc.tcp://127.0.0.1:0/cellbatch/{name}",
        "vessels": ["BR-01"],
        "seed": 1,
        **extra,
    }


@pytest.mark.parametrize(
    ("specs", "message"),
    [
        ([{**spec("a"), "kind": "modbus-pump"}], "unknown simulator kind 'modbus-pump'"),
        ([{k: v for k, v in spec("a").items() if k != "listen"}], "missing key 'listen'"),
        ([spec("a", vesels=["BR-02"])], "unknown keys 'vesels'"),
        ([spec("a"), spec("a")], "duplicate simulator name"),
        ([spec("a", vessels="BR-01")], "'vessels' must be list or tuple"),
        ([spec("a", vessels=["BR.01"])], "invalid vessel name"),
        ([spec("a", seed="1")], "'seed' must be int"),
        ([spec("a", step_s=0)], "'step_s' must be positive"),
        ([spec("a", listen="http://127.0.0.1:0/x")], "not an opc.tcp URL"),
    ],
)
async def test_invalid_specs_are_refused_before_anything_starts(
    specs: list[dict[str, Any]], message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        await start_simulators(specs, time_scale=100.0)


@pytest.mark.slow
async def test_servers_share_one_clock_and_stop_cleanly() -> None:
    running = await start_simulators(
        [spec("left"), spec("right", vessels=["BR-07", "BR-08"], step_s=30.0)], time_scale=1000.0
    )
    try:
        assert set(running.endpoints) == {"left", "right"}
        for name, url in running.endpoints.items():
            parts = urlsplit(url)
            assert parts.port not in (None, 0) and parts.path == f"/cellbatch/{name}"
        left, right = running.servers["left"], running.servers["right"]
        assert left.clock is right.clock is running.clock
        assert right.vessel_names == ("BR-07", "BR-08") and right.step_s == 30.0
        epochs = []
        for url in running.endpoints.values():
            async with Client(url, timeout=5) as client:
                epochs.append(await client.get_node("ns=2;s=Simulation.Epoch").read_value())
        assert epochs[0] == epochs[1]
    finally:
        await running.stop()
    assert running.servers == {}
    await running.stop()  # idempotent
    host, port = "127.0.0.1", urlsplit(url).port
    with pytest.raises(OSError):
        _, writer = await asyncio.wait_for(asyncio.open_connection(host, port), 5.0)
        writer.close()
