"""Fault schedules for ``cellbatch sim serve --faults FILE`` (TOML).

Each ``[[fault]]`` table names a simulator of the plant, a fault kind (see
:mod:`simulators.faults`) and its parameters; ``at`` and ``duration`` are **wall
seconds** after the simulators are ready (``at`` defaults to 0, no ``duration``
means until the server stops)::

    [[fault]]
    simulator = "bioreactors"
    kind = "stuck"
    target = "BR-01.Temperature.PV"
    at = 10.0
    duration = 30.0

    [[fault]]
    simulator = "cell-processor"
    kind = "silent"
    at = 5
    duration = 2.5

A bad file raises :class:`FaultFileError` whose message is ``FILE:LINE: message``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from simulators.faults import FaultBoard, FaultError

__all__ = ["FaultFileError", "ScheduledFault", "check_schedule", "load_fault_file", "run_schedule"]

_log = logging.getLogger(__name__)
_HEADER = re.compile(r"^\s*\[\[\s*fault\s*\]\]")
_TOML_LINE = re.compile(r"at line (\d+)")


class FaultFileError(ValueError):
    """A fault file that cannot be used; the message is ``FILE:LINE: message``."""


@dataclass(frozen=True, slots=True)
class ScheduledFault:
    """One ``[[fault]]`` entry."""

    simulator: str
    kind: str
    params: dict[str, Any]
    at_s: float
    duration_s: float | None
    where: str  # FILE:LINE of its table


def _key_line(lines: list[str], start: int, key: str) -> int:
    """1-based line of ``key = …`` in the table starting at 0-based line ``start``."""
    pattern = re.compile(rf"^\s*{re.escape(key)}\s*=")
    for i in range(start + 1, len(lines)):
        if _HEADER.match(lines[i]) or lines[i].lstrip().startswith("["):
            break
        if pattern.match(lines[i]):
            return i + 1
    return start + 1


def load_fault_file(path: str | Path) -> list[ScheduledFault]:
    """Parse and check the shape of a fault file (kinds are checked per simulator later)."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise FaultFileError(f"{path}:0: cannot read ({exc.strerror or exc})") from None
    try:
        doc = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        m = _TOML_LINE.search(str(exc))
        raise FaultFileError(f"{path}:{m.group(1) if m else 0}: {exc}") from None
    lines = text.splitlines()
    headers = [i for i, line in enumerate(lines) if _HEADER.match(line)]
    unknown = sorted(set(doc) - {"fault"})
    if unknown:
        keys = ", ".join(unknown)
        raise FaultFileError(f"{path}:1: unknown top-level keys {keys} (use [[fault]])")
    entries = doc.get("fault", [])
    if not isinstance(entries, list):
        raise FaultFileError(f"{path}:1: 'fault' must be an array of tables ([[fault]])")
    out = []
    for n, entry in enumerate(entries):
        start = headers[n] if n < len(headers) else 0

        def fail(message: str, key: str | None = None, start: int = start) -> FaultFileError:
            line = _key_line(lines, start, key) if key else start + 1
            return FaultFileError(f"{path}:{line}: {message}")

        params = dict(entry)
        for key in ("simulator", "kind"):
            if not isinstance(params.get(key), str):
                raise fail(f'[[fault]] needs {key} = "…"', key if key in params else None)
        simulator, kind = params.pop("simulator"), params.pop("kind")
        times: dict[str, float | None] = {}
        for key, default in (("at", 0.0), ("duration", None)):
            value = params.pop(key, default)
            if value is not None and (
                isinstance(value, bool)
                or not isinstance(value, int | float)
                or not math.isfinite(value)
                or value < 0
                or (key == "duration" and value == 0)
            ):
                raise fail(f"{key} must be a positive number of wall seconds, got {value!r}", key)
            times[key] = float(value) if value is not None else None
        at_s = times["at"]
        assert at_s is not None
        out.append(
            ScheduledFault(simulator, kind, params, at_s, times["duration"], f"{path}:{start + 1}")
        )
    return out


def check_schedule(schedule: list[ScheduledFault], boards: Mapping[str, FaultBoard]) -> None:
    """Raise FaultFileError unless every entry names a simulator that can show its fault."""
    for item in schedule:
        board = boards.get(item.simulator)
        if board is None:
            known = ", ".join(sorted(boards))
            raise FaultFileError(f"{item.where}: no simulator {item.simulator!r} (have {known})")
        try:
            board.validate(item.kind, item.params)
        except FaultError as exc:
            raise FaultFileError(f"{item.where}: {exc}") from None


async def run_schedule(schedule: list[ScheduledFault], boards: Mapping[str, FaultBoard]) -> None:
    """Inject and clear every fault on time; returns when all are done (or cancelled)."""

    async def one(item: ScheduledFault) -> None:
        board = boards[item.simulator]
        await asyncio.sleep(item.at_s)
        fault = board.inject(item.kind, **item.params)
        _log.warning("fault on: %s %s %s", item.simulator, item.kind, item.params or "")
        if item.duration_s is None:
            return
        try:
            await asyncio.sleep(item.duration_s)
        finally:
            board.clear(fault)
            _log.warning("fault off: %s %s", item.simulator, item.kind)

    tasks = [asyncio.create_task(one(item)) for item in schedule]
    try:
        await asyncio.gather(*tasks)
    finally:
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
