"""Live batch data on MQTT: a subscriber on the real Mosquitto (127.0.0.1:1883) sees a
batch's states and values; a broker outage during a batch changes nothing in the record
and holds up nothing; what was published late converges once the broker is back."""

from __future__ import annotations

import asyncio
import contextlib
import json
import secrets
import socket
from collections.abc import AsyncIterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import aiomqtt
import pytest
import pytest_asyncio

from controller.isa88 import State
from controller.mqtt_config import MqttConfig
from controller.plant import Plant, PlantError, UnitConfig, load_plant
from controller.session import Controller
from ebr import read_journal, verify_all
from recipes import load_recipe
from simulators.bioreactor.opcua_server import BioreactorServer

module_loop = pytest.mark.asyncio(loop_scope="module")
RECIPE = Path(__file__).parent / "recipes" / "short-culture.yaml"
BROKER = ("127.0.0.1", 1883)
VESSELS = ["MQ-01", "MQ-02", "MQ-03"]


def _broker_up() -> bool:
    with contextlib.suppress(OSError), socket.create_connection(BROKER, timeout=1):
        return True
    return False


needs_broker = pytest.mark.skipif(
    not _broker_up(), reason="no MQTT broker on 127.0.0.1:1883 (mosquitto -d starts one)"
)


# -- the [mqtt] table of a plant file -------------------------------------------------------

PLANT = """[plant]
name = "suite"
site = "Site B, suite 2"
mode = "simulation"

[[units]]
name = "BR-01"
class = "rocking_bioreactor"
profile = "rocking_bioreactor_opcua"
endpoint = "opc.tcp://127.0.0.1:4841/x"

[mqtt]
"""


def _plant(tmp_path: Path, mqtt: str) -> Path:
    path = tmp_path / "plant.toml"
    path.write_text(PLANT + mqtt)
    return path


def test_mqtt_table_parsed_with_defaults(tmp_path: Path) -> None:
    plant = load_plant(_plant(tmp_path, 'url = "mqtt://broker.local"\n'))
    assert plant.mqtt is not None
    assert (plant.mqtt.host, plant.mqtt.port, plant.mqtt.qos) == ("broker.local", 1883, 1)
    assert plant.mqtt.prefix == "cellbatch/Site-B-suite-2/suite"
    no_table = tmp_path / "none.toml"
    no_table.write_text(PLANT.replace("[mqtt]\n", ""))
    assert load_plant(no_table).mqtt is None


@pytest.mark.parametrize(
    ("body", "line", "col", "message"),
    [
        ("", 12, 1, "'url' is required"),
        ('url = "http://x:1883"\n', 13, 7, "must be mqtt://"),
        ('url = "mqtt://x:99999"\n', 13, 7, "bad port"),
        ('url = "mqtt://x"\nqos = 3\n', 14, 7, "'qos' must be 0, 1 or 2"),
        ('url = "mqtt://x"\nprefix = "a/+/b"\n', 14, 10, "'prefix' must be"),
        ('url = "mqtt://x"\nprefix = "a//b"\n', 14, 10, "'prefix' must be"),
        ('url = "mqtt://x"\n  buffer = 0\n', 14, 12, "'buffer' must be"),
        ('url = "mqtt://x"\nurll = 1\n', 14, 8, "unknown key 'urll'"),
    ],
)
def test_mqtt_table_errors_name_file_line_column(
    tmp_path: Path, body: str, line: int, col: int, message: str
) -> None:
    path = _plant(tmp_path, body)
    with pytest.raises(PlantError) as err:
        load_plant(path)
    text = str(err.value)
    assert text.startswith(f"{path}:{line}:{col}: [mqtt] "), text
    assert message in text


# -- publishing to the real broker ----------------------------------------------------------


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def vessels() -> AsyncIterator[BioreactorServer]:
    server = BioreactorServer(
        VESSELS, url="opc.tcp://127.0.0.1:0/cellbatch/mqtt", time_scale=2000.0, seed=5
    )
    await server.start()
    try:
        yield server
    finally:
        await server.stop()


class Subscriber:
    """Every message under a prefix, in arrival order (a real MQTT client)."""

    def __init__(self, prefix: str) -> None:
        self.prefix = prefix
        self.messages: list[tuple[str, Any, bool]] = []
        self.arrived = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._ready = asyncio.Event()

    async def __aenter__(self) -> Subscriber:
        self._task = asyncio.create_task(self._run())
        await asyncio.wait_for(self._ready.wait(), 10)
        return self

    async def __aexit__(self, *_exc: object) -> None:
        assert self._task is not None
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task

    async def _run(self) -> None:
        async with aiomqtt.Client(*BROKER) as client:
            await client.subscribe(f"{self.prefix}/#", qos=1)
            self._ready.set()
            async for msg in client.messages:
                raw = msg.payload if isinstance(msg.payload, bytes) else b""
                payload = json.loads(raw) if raw else None
                self.messages.append((str(msg.topic), payload, msg.retain))
                self.arrived.set()

    def on(self, topic: str) -> list[Any]:
        """Payloads received on ``prefix/topic``."""
        return [p for t, p, _r in self.messages if t == f"{self.prefix}/{topic}"]

    async def until(self, check: Any, within_s: float = 30.0) -> None:
        """Wait (bounded) until ``check()`` holds."""

        async def wait() -> None:
            while not check():
                self.arrived.clear()
                await self.arrived.wait()

        await asyncio.wait_for(wait(), within_s)


async def _clear_retained(prefix: str) -> None:
    """Leave the shared broker as it was: empty every retained topic under ``prefix``."""
    async with Subscriber(prefix) as sub:
        with contextlib.suppress(TimeoutError):
            await sub.until(lambda: False, within_s=0.5)
    topics = {t for t, p, retain in sub.messages if retain and p is not None}
    if topics:
        async with aiomqtt.Client(*BROKER) as client:
            for topic in topics:
                await client.publish(topic, b"", qos=1, retain=True)


class Forwarder:
    """A TCP forwarder to the broker on a fixed local port that can go down and up."""

    def __init__(self) -> None:
        self.port = 0
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()

    async def up(self) -> None:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", self.port)
        self.port = self._server.sockets[0].getsockname()[1]

    async def down(self) -> None:
        assert self._server is not None
        self._server.close()
        for writer in list(self._writers):
            writer.transport.abort()
        self._writers.clear()
        await self._server.wait_closed()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up_reader, up_writer = await asyncio.open_connection(*BROKER)
        self._writers |= {writer, up_writer}

        async def pipe(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
            with contextlib.suppress(OSError, asyncio.IncompleteReadError):
                while data := await src.read(65536):
                    dst.write(data)
                    await dst.drain()
            dst.transport.abort()

        await asyncio.gather(pipe(reader, up_writer), pipe(up_reader, writer))


def _mqtt_plant(
    server: BioreactorServer, vessel: str, port: int, prefix: str, **mqtt: Any
) -> Plant:
    unit = UnitConfig(
        vessel,
        "rocking_bioreactor",
        "rocking_bioreactor_opcua",
        server.endpoint,
        {"vessel": vessel},
    )
    config = MqttConfig(f"mqtt://127.0.0.1:{port}", "127.0.0.1", port, False, prefix, **mqtt)
    plant = Plant("mqtt-test", "", "simulation", server.clock.scale, (unit,), (), "mqtt-plant")
    return replace(plant, mqtt=config)


async def _connected(controller: Controller, times: int) -> None:
    """Wait (bounded) until the publisher connected ``times`` times and sent everything."""
    publisher = controller.publisher
    assert publisher is not None
    for _ in range(600):
        if publisher.connects >= times and publisher.connected and not publisher.backlog:
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"publisher: {publisher.connects} connects, {publisher.last_error}")


def _entries(controller: Controller, batch_id: str, kind: str) -> list[Any]:
    assert controller.store is not None
    return [e for e in read_journal(controller.store, batch_id) if e.kind == kind]


@needs_broker
@module_loop
async def test_subscriber_sees_states_and_values(vessels: BioreactorServer, tmp_path: Path) -> None:
    prefix = f"cellbatch-test/{secrets.token_hex(4)}"
    plant = _mqtt_plant(vessels, "MQ-01", BROKER[1], prefix)
    controller = Controller(plant, f"sqlite:///{tmp_path / 'mqtt.sqlite'}", user="tester")
    try:
        async with Subscriber(prefix) as sub:
            await controller.start()
            await _connected(controller, 1)
            run = await controller.create_batch(load_recipe(RECIPE))
            batch = run.control.batch_id
            assert await asyncio.wait_for(controller.run(run), 60) is State.COMPLETE
            await _connected(controller, 1)
            await sub.until(lambda: {"batch": None} in sub.on("units/MQ-01/batch"))

            assert sub.on("controller/status")[0]["online"] is True
            info = sub.on(f"batches/{batch}/info")[0]
            assert info["units"] == {"bioreactor": "MQ-01"} and info["recipe"] == "short-culture"
            journal = [e.data["to"] for e in _entries(controller, batch, "batch.state")]
            states = [p["state"] for p in sub.on(f"batches/{batch}/state")]
            assert states[1:] == journal, "every batch state, in order, after the birth state"
            assert states[-1] == State.COMPLETE.value
            culture = sub.on(f"batches/{batch}/elements/culture/grow/culture")
            assert [p["state"] for p in culture][-1] == State.COMPLETE.value
            temps = sub.on("units/MQ-01/temperature/pv")
            assert temps and all(p["batch"] == batch and p["eu"] for p in temps)
            assert all(isinstance(p["value"], float) for p in temps)
            assert sub.on("units/MQ-01/batch")[0]["batch"] == batch
        await controller.stop()
        async with Subscriber(prefix) as late:  # a late subscriber sees the retained state
            await late.until(lambda: bool(late.on(f"batches/{batch}/state")))
            assert late.on(f"batches/{batch}/state")[-1]["state"] == State.COMPLETE.value
            await late.until(lambda: bool(late.on("controller/status")))
            assert late.on("controller/status")[-1]["online"] is False
    finally:
        await controller.stop()
        await _clear_retained(prefix)


@needs_broker
@module_loop
@pytest.mark.parametrize("buffer", [10_000, 8], ids=["buffered", "overflowing"])
async def test_broker_outage_loses_no_entry_and_delays_no_phase(
    vessels: BioreactorServer, tmp_path: Path, buffer: int
) -> None:
    prefix = f"cellbatch-test/{secrets.token_hex(4)}"
    forwarder = Forwarder()
    await forwarder.up()
    vessel = "MQ-02" if buffer > 100 else "MQ-03"
    plant = _mqtt_plant(vessels, vessel, forwarder.port, prefix, buffer=buffer)
    controller = Controller(plant, f"sqlite:///{tmp_path / 'outage.sqlite'}", user="tester")
    try:
        async with Subscriber(prefix) as sub:
            await controller.start()
            await _connected(controller, 1)
            run = await controller.create_batch(load_recipe(RECIPE))
            batch = run.control.batch_id
            await forwarder.down()  # the broker is away for the whole batch
            assert await asyncio.wait_for(controller.run(run), 60) is State.COMPLETE
            publisher = controller.publisher
            assert publisher is not None and publisher.connects == 1 and publisher.backlog
            assert controller.store is not None
            assert all(r.ok for r in verify_all(controller.store))
            entries = read_journal(controller.store, batch)
            assert [e.seq for e in entries] == list(range(1, len(entries) + 1))
            assert not sub.on(f"batches/{batch}/state"), "nothing reached the broker yet"

            await forwarder.up()  # back: the buffer drains, retained topics converge
            await _connected(controller, 2)
            await sub.until(
                lambda: (
                    State.COMPLETE.value in [p["state"] for p in sub.on(f"batches/{batch}/state")]
                )
            )
            journal = [e.seq for e in _entries(controller, batch, "batch.state")]
            received = [p["seq"] for p in sub.on(f"batches/{batch}/state") if "seq" in p]
            if buffer > 100:
                assert received == journal, "every state change arrives, in order"
                assert publisher.dropped == 0
            else:
                assert publisher.dropped > 0
                assert received[-1] == journal[-1], "the latest state arrives last"
            assert len(read_journal(controller.store, batch)) == len(entries), "record unchanged"
        async with Subscriber(prefix) as late:
            elements = {
                e.data["element"]: e.data["to"]
                for e in _entries(controller, batch, "element.state")
            }
            topics = {f"batches/{batch}/elements/{path}": to for path, to in elements.items()}
            await late.until(lambda: all(late.on(t) for t in topics))
            assert {t: late.on(t)[-1]["state"] for t in topics} == topics
    finally:
        await controller.stop()
        with contextlib.suppress(Exception):
            await forwarder.down()
        await _clear_retained(prefix)
