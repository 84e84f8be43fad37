"""Live batch data on the plant's MQTT broker (the unified namespace).

The controller publishes what its batches record, as JSON, under the plant's prefix
``P`` (``[mqtt] prefix``, default ``cellbatch/<site>/<plant>``):

=====================================  ========  ==========================================
topic                                  retained  payload
=====================================  ========  ==========================================
``P/controller/status``                yes       ``{online, plant, t}``; the broker sets
                                                 ``online: false`` if we vanish (will)
``P/units/<unit>/batch``               yes       ``{batch, alias, recipe}``; batch null when free
``P/units/<unit>/<capability…>``       yes       a CPP value: ``{batch, tag, value, eu,
                                                 quality, t}`` (``temperature.pv`` →
                                                 ``temperature/pv``)
``P/batches/<id>/info``                yes       ``{batch, recipe, version, product, units,
                                                 simulation}``
``P/batches/<id>/state``               yes       ``{batch, state, from, trigger, t, seq}``
``P/batches/<id>/elements/<path…>``    yes       the element's ``{state, from, level, t, seq}``
``P/batches/<id>/alarms``              no        ``{event, seq, t, …}`` raised, cleared,
                                                 acknowledged (the journal entry's fields)
``P/batches/<id>/prompts``             no        ``{event, seq, t, …}`` opened, answered,
                                                 withdrawn
=====================================  ========  ==========================================

Everything goes out with the configured QoS (default 1). Publishing never blocks
control and never changes the record: the engine's listeners only append to an
in-memory buffer (never awaiting); one background task sends it. While the broker is
away the task reconnects with a bounded back-off; events wait in a buffer of
``[mqtt] buffer`` messages (the oldest dropped first, and counted), CPP values keep only
their latest value per tag, and a retained topic whose message was dropped is
re-sent with its latest payload once the buffer has drained.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import ssl
from collections import deque
from datetime import UTC, datetime
from typing import Any

import aiomqtt

from controller.batch import BatchRun
from controller.mqtt_config import MqttConfig, topic_level
from controller.recorder import iso
from drivers import Reading
from ebr import Entry
from ebr.record.kinds import Kind

_log = logging.getLogger(__name__)
CHUNK = 64
"""Messages in flight at once (published together, each awaiting its acknowledgement)."""
TIMEOUT_S = 5.0
"""A connect or publish taking longer counts as a lost broker."""

RETAINED_MAX = 100_000
"""Retained topics kept for re-sending; beyond it ended batches' topics are forgotten."""

_ALARMS = {Kind.ALARM_RAISED, Kind.ALARM_CLEARED, Kind.ALARM_ACKNOWLEDGED}
_PROMPTS = {Kind.PROMPT_OPENED, Kind.PROMPT_ANSWERED, Kind.PROMPT_WITHDRAWN}

Message = tuple[str, dict[str, Any], bool, bool]
"""(topic, payload, retain, is a CPP value)."""


class Publisher:
    """Publishes a controller's batches to one MQTT broker (see the module docstring)."""

    def __init__(self, config: MqttConfig, plant: str) -> None:
        self.config = config
        self.plant = plant
        self.prefix = config.prefix
        self._events: deque[Message] = deque()
        self._values: dict[str, dict[str, Any]] = {}
        self._retained: dict[str, dict[str, Any]] = {}
        self._dirty: set[str] = set()
        self._wake = asyncio.Event()
        self._closing = False
        self._task: asyncio.Task[None] | None = None
        self._batch_topics: dict[str, set[str]] = {}
        self._ended: set[str] = set()
        #: messages acknowledged by the broker
        self.sent = 0
        #: events dropped because the buffer was full (the broker away too long)
        self.dropped = 0
        #: successful connections (more than one: the broker came back)
        self.connects = 0
        #: True while connected
        self.connected = False
        #: the last connection error, for the operator
        self.last_error = ""

    # -- what the engine calls (never awaits, never raises) --------------------------------

    def attach(self, run: BatchRun) -> None:
        """Publish a batch: its identity, state, elements, alarms, prompts and CPP values."""
        batch_id = run.control.batch_id
        self._batch_topics[batch_id] = set()
        header = run.recipe.header
        units = {alias: device.name for alias, device in run.control.units.items()}
        self._put(
            f"batches/{topic_level(batch_id)}/info",
            {
                "batch": batch_id,
                "recipe": header.name,
                "version": header.version,
                "product": header.product,
                "units": units,
                "simulation": run.control.simulation,
            },
            batch=batch_id,
        )
        self._put(
            f"batches/{topic_level(batch_id)}/state",
            {"batch": batch_id, "state": run.state.value, "t": iso(run.clock.now())},
            batch=batch_id,
        )
        for alias, unit in units.items():
            self._put(
                f"units/{topic_level(unit)}/batch",
                {"batch": batch_id, "alias": alias, "recipe": header.name},
            )
        run.recorder.listeners.append(lambda entry: self._guard(self._on_entry, entry))
        aliases = dict(units)

        def reading(tag: str, value: Reading) -> None:
            self._guard(self._on_reading, batch_id, aliases, tag, value)

        run.sampler.listen(reading)

    def detach(self, run: BatchRun) -> None:
        """The batch ended and freed its units: mark them free."""
        batch_id = run.control.batch_id
        for device in run.control.units.values():
            self._put(f"units/{topic_level(device.name)}/batch", {"batch": None})
        # forgotten once everything queued has gone out (a dropped one is re-sent first),
        # or at once when the broker has been away so long that they pile up
        self._ended |= self._batch_topics.pop(batch_id, set())
        if len(self._retained) > RETAINED_MAX:
            self._forget_ended()

    def _forget_ended(self) -> None:
        for topic in self._ended:
            self._retained.pop(topic, None)
            self._dirty.discard(topic)
        self._ended.clear()

    def _guard(self, handler: Any, *args: Any) -> None:
        try:
            handler(*args)
        except Exception:  # a publishing bug must never reach the engine
            _log.exception("MQTT publisher: could not queue a message")

    def _on_entry(self, entry: Entry) -> None:
        batch = topic_level(entry.batch_id)
        data = entry.data
        if entry.kind == Kind.BATCH_STATE:
            self._put(
                f"batches/{batch}/state",
                {
                    "batch": entry.batch_id,
                    "state": data.get("to"),
                    "from": data.get("from"),
                    "trigger": data.get("trigger"),
                    "t": data.get("t"),
                    "seq": entry.seq,
                },
                batch=entry.batch_id,
            )
        elif entry.kind == Kind.ELEMENT_STATE:
            path = "/".join(topic_level(p) for p in str(data.get("element", "")).split("/"))
            self._put(
                f"batches/{batch}/elements/{path}",
                {
                    "batch": entry.batch_id,
                    "element": data.get("element"),
                    "state": data.get("to"),
                    "from": data.get("from"),
                    "level": data.get("level"),
                    "t": data.get("t"),
                    "seq": entry.seq,
                },
                batch=entry.batch_id,
            )
        elif entry.kind in _ALARMS or entry.kind in _PROMPTS:
            what = "alarms" if entry.kind in _ALARMS else "prompts"
            event = entry.kind.split(".", 1)[1]
            payload = {**data, "batch": entry.batch_id, "event": event, "seq": entry.seq}
            self._put(f"batches/{batch}/{what}", payload, retain=False)

    def _on_reading(self, batch_id: str, units: dict[str, str], tag: str, value: Reading) -> None:
        alias, _, capability = tag.partition(".")
        unit = units.get(alias, alias)
        levels = "/".join(topic_level(p) for p in capability.split("."))
        when = value.source_time
        self._values[f"{self.prefix}/units/{topic_level(unit)}/{levels}"] = {
            "batch": batch_id,
            "tag": tag,
            "value": value.value,
            "eu": value.unit,
            "quality": value.quality.value,
            "t": None if when is None else iso(when),
        }
        self._wake.set()

    def _put(
        self, topic: str, payload: dict[str, Any], *, retain: bool = True, batch: str = ""
    ) -> None:
        full = f"{self.prefix}/{topic}"
        if retain:
            self._retained[full] = payload
            if batch in self._batch_topics:
                self._batch_topics[batch].add(full)
        self._events.append((full, payload, retain, False))
        self._trim()
        self._wake.set()

    def _trim(self) -> None:
        """Keep at most ``buffer`` events: drop the oldest, remember retained topics."""
        while len(self._events) > self.config.buffer:
            topic, _payload, retain, _value = self._events.popleft()
            self.dropped += 1
            if retain:
                self._dirty.add(topic)

    # -- the sending task ---------------------------------------------------------------

    @property
    def backlog(self) -> int:
        """Messages waiting to be sent."""
        return len(self._events) + len(self._values) + len(self._dirty)

    async def start(self) -> None:
        """Start the background task (it connects, and reconnects, by itself)."""
        self._task = asyncio.create_task(self._run(), name="mqtt-publisher")

    async def stop(self, flush_s: float = 2.0) -> None:
        """Send what is buffered (for at most ``flush_s``), say offline, disconnect."""
        self._closing = True
        self._wake.set()
        if self._task is None:
            return
        try:
            await asyncio.wait_for(asyncio.shield(self._task), flush_s)
        except TimeoutError:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    def _status(self, online: bool) -> tuple[str, bytes]:
        payload = {"online": online, "plant": self.plant, "t": iso(datetime.now(UTC))}
        return f"{self.prefix}/controller/status", _encode(payload)

    def _client(self) -> aiomqtt.Client:
        cfg = self.config
        topic, offline = self._status(False)
        password = os.environ.get(cfg.password_env) if cfg.password_env else None
        return aiomqtt.Client(
            cfg.host,
            cfg.port,
            identifier=cfg.client_id,
            username=cfg.username,
            password=password,
            will=aiomqtt.Will(topic, offline, qos=cfg.qos, retain=True),
            tls_context=ssl.create_default_context() if cfg.tls else None,
            timeout=TIMEOUT_S,
            keepalive=15,
            max_inflight_messages=CHUNK,
        )

    async def _run(self) -> None:
        backoff = 0.2
        while True:
            try:
                async with self._client() as client:
                    self.connected, self.connects, backoff = True, self.connects + 1, 0.2
                    topic, online = self._status(True)
                    await client.publish(topic, online, self.config.qos, True, timeout=TIMEOUT_S)
                    await self._send(client)
                    topic, offline = self._status(False)
                    await client.publish(topic, offline, self.config.qos, True, timeout=TIMEOUT_S)
                    return  # closing, everything sent
            except (aiomqtt.MqttError, OSError) as exc:
                self.last_error = str(exc) or type(exc).__name__
                _log.warning("MQTT broker %s: %s", self.config.url, self.last_error)
            finally:
                self.connected = False
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, 5.0)

    async def _send(self, client: aiomqtt.Client) -> None:
        """Send until closing with nothing left; a failure puts the chunk back first."""
        while True:
            chunk = self._take()
            if not chunk:
                if self._closing:
                    return
                self._wake.clear()
                await self._wake.wait()
                continue
            try:
                await asyncio.gather(
                    *(
                        client.publish(t, _encode(p), self.config.qos, r, timeout=TIMEOUT_S)
                        for t, p, r, _value in chunk
                    )
                )
            except BaseException:
                self._give_back(chunk)
                raise
            self.sent += len(chunk)

    def _take(self) -> list[Message]:
        chunk: list[Message] = []
        while self._events and len(chunk) < CHUNK:
            chunk.append(self._events.popleft())
        while self._values and len(chunk) < CHUNK:
            topic = next(iter(self._values))
            chunk.append((topic, self._values.pop(topic), True, True))
        if not self._events:
            while self._dirty and len(chunk) < CHUNK:
                topic = self._dirty.pop()
                if topic in self._retained:
                    chunk.append((topic, self._retained[topic], True, False))
            if not self._dirty:
                self._forget_ended()
        return chunk

    def _give_back(self, chunk: list[Message]) -> None:
        """Unsent messages go back in front (values only if no newer one is waiting)."""
        for topic, payload, retain, value in reversed(chunk):
            if value:
                self._values.setdefault(topic, payload)
            else:
                self._events.appendleft((topic, payload, retain, False))
        self._trim()


def _encode(payload: dict[str, Any]) -> bytes:
    return json.dumps(payload, separators=(",", ":"), default=str).encode()
