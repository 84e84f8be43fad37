"""Synthetic batch records for the export tests: a simulation batch and a GMP batch
with every journal kind the engine writes, built once per session."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from typing import Any

from ebr import Journal, Store

SIM = "SIM-001"
GMP = "GMP-001"
EPOCH = datetime(2026, 3, 1, 8, 0, tzinfo=UTC)
SAMPLES_PER_TAG = 1500


def _t(hours: float) -> str:
    return (EPOCH + timedelta(hours=hours)).isoformat().replace("+00:00", "Z")


def _created(simulation: bool) -> dict[str, Any]:
    formula = {
        "temperature": {
            "value": 37.0,
            "unit": "degC",
            "min": 36.5,
            "max": 37.5,
            "description": "Culture temperature",
        },
        "ph": {"value": 7.2, "unit": "pH", "min": 7.0, "max": 7.4, "description": "pH setpoint"},
        "feed_volume": {
            "value": 500,
            "unit": "mL",
            "min": 400,
            "max": 600,
            "description": "Feed volume (µL-free, ×10⁶ ok)",
        },
    }
    return {
        "clock": {"epoch": _t(0), "time_scale": 1},
        "equipment": {"bioreactor": {"class": "rocking_bioreactor", "unit": "BR-01"}},
        "plant": {"name": "test", "site": "Suite B", "mode": "simulation" if simulation else "gmp"},
        "software": {"name": "cellbatch", "version": "0.1.0"},
        "user": "a.smith",
        "terminal": "HMI-2",
        "t": _t(0),
        "parameters": {
            "temperature": {"master": 37.0, "value": 37.0, "unit": "degC", "changed": False},
            "ph": {"master": 7.2, "value": 7.2, "unit": "pH", "changed": False},
            "feed_volume": {"master": 500, "value": 550, "unit": "mL", "changed": True},
        },
        "recipe": {
            "name": "cart-expansion",
            "version": "3.1",
            "status": "approved",
            "content_hash": "c0ffee" * 10 + "beef",
            "content": {
                "formula": formula,
                "monitors": [
                    {
                        "name": "temperature",
                        "unit": "bioreactor",
                        "tag": "temperature.pv",
                        "engineering_unit": "degC",
                        "alert": {"low": 36.5, "high": 37.5},
                        "action": {"low": 36.0, "high": 38.0},
                        "on_action": "hold",
                    },
                    {
                        "name": "ph",
                        "unit": "bioreactor",
                        "tag": "ph.pv",
                        "engineering_unit": "pH",
                        "alert": {"low": 7.0, "high": 7.4},
                        "action": {"low": 6.8, "high": 7.6},
                        "on_action": "hold",
                    },
                ],
            },
        },
    }


def _entries() -> list[tuple[str, dict[str, Any]]]:
    """About 200 journal entries of every kind the engine writes, in process order."""
    out: list[tuple[str, dict[str, Any]]] = []
    hour = 0.0

    def add(kind: str, **data: Any) -> None:
        nonlocal hour
        hour += 0.25
        out.append((kind, {**data, "t": _t(hour)}))

    batch = "batch"
    add("command.accepted", command="start", element=batch, state="Idle", user="a.smith", reason="")
    add(
        "batch.state",
        element=batch,
        level="batch",
        **{"from": "Idle"},
        to="Running",
        trigger="start",
    )
    add(
        "element.state",
        element="expansion",
        level="unit_procedure",
        **{"from": "Idle"},
        to="Running",
        trigger="start",
    )
    for day in range(12):
        op = f"expansion/day_{day}"
        add(
            "element.state",
            element=op,
            level="operation",
            **{"from": "Idle"},
            to="Running",
            trigger="start",
        )
        phase = f"{op}/set"
        add(
            "element.state",
            element=phase,
            level="phase",
            **{"from": "Idle"},
            to="Running",
            trigger="start",
        )
        for cap, old, new in (("temperature.sp", 37, 37.0), ("rocking.rate_sp", day, day + 1)):
            add(
                "write.intent",
                element=phase,
                unit="BR-01",
                capability=cap,
                old=old,
                new=new,
                eu="degC" if cap.startswith("temp") else "rpm",
            )
            intent = len(out) + 1  # seq: batch.created is 1
            if day == 5 and cap == "rocking.rate_sp":
                add(
                    "write.result",
                    element=phase,
                    intent=intent,
                    capability=cap,
                    ok=False,
                    error="BadTypeMismatch",
                )
                add("phase.failed", element=phase, error="writing rocking.rate_sp failed")
            else:
                add(
                    "write.result",
                    element=phase,
                    intent=intent,
                    capability=cap,
                    ok=True,
                    readback=new,
                )
            add("phase.progress", element=phase, progress={"written": [cap]})
        add(
            "element.state",
            element=phase,
            level="phase",
            **{"from": "Running"},
            to="Complete",
            trigger="complete",
        )
        if day == 0:
            add(
                "method.intent",
                element=phase,
                unit="BR-01",
                method="inoculate",
                args={"viable_cells": 100_000_000, "volume": 50},
            )
            add(
                "method.result",
                element=phase,
                intent=len(out),
                method="inoculate",
                ok=True,
                result=None,
            )
            add("monitors.active", element=op, monitors=["temperature", "ph"], since=_t(hour))
        add(
            "element.state",
            element=op,
            level="operation",
            **{"from": "Running"},
            to="Complete",
            trigger="complete",
        )
    add(
        "condition.met",
        element="expansion/harvest/wait",
        tag="bioreactor.ph.pv",
        op=">=",
        limit=7.0,
        value=7.1,
    )
    add(
        "condition.timeout",
        element="expansion/harvest/wait2",
        tag="bioreactor.ph.pv",
        op=">=",
        limit=8.0,
        value=7.1,
    )
    add(
        "alarm.raised",
        monitor="temperature",
        tag="bioreactor.temperature.pv",
        level="action",
        value=38.6,
        limit=38.0,
        at=_t(hour),
        action="hold",
    )
    add(
        "command.accepted",
        command="hold",
        element=batch,
        state="Running",
        user="engine:monitor temperature",
        reason="",
    )
    add(
        "batch.state",
        element=batch,
        level="batch",
        **{"from": "Running"},
        to="Holding",
        trigger="hold",
    )
    add(
        "batch.state",
        element=batch,
        level="batch",
        **{"from": "Holding"},
        to="Held",
        trigger="held",
    )
    add(
        "command.refused",
        command="start",
        element=batch,
        state="Held",
        user="b.jones",
        reason="start is not allowed in state Held",
    )
    add(
        "alarm.cleared",
        monitor="temperature",
        tag="bioreactor.temperature.pv",
        level="normal",
        value=37.1,
        limit=None,
        at=_t(hour),
        action="hold",
    )
    # seq 1 is batch.created; these entries follow it in order
    raised = next(seq for seq, (kind, _) in enumerate(out, start=2) if kind == "alarm.raised")
    add(
        "alarm.acknowledged",
        alarm=raised,
        monitor="temperature",
        tag="bioreactor.temperature.pv",
        level="action",
        cleared=True,
        user="op1",
        comment="incubator door was open",
    )
    while len(out) < 190:
        add("phase.progress", element="expansion/hold", progress={"elapsed_s": len(out)})
    return out


def _samples(tag: str, base: float, unit: str, start: int, count: int) -> list[Any]:
    rows = []
    for i in range(start, start + count):
        value: float | None = base + 0.05 * ((i % 7) - 3) / 3
        if tag.endswith("temperature.pv") and 1000 <= i < 1010:
            value = 38.6  # the excursion behind the action alarm
        if i == 700:
            value = None
        rows.append((tag, EPOCH + timedelta(minutes=10 * i), value, unit, "good"))
    return rows


async def make_batch(store: Store, batch_id: str, simulation: bool) -> None:
    """Record a synthetic 12-day batch: ~200 entries, 3,000 samples, one excursion."""
    journal = Journal(store)
    await journal.start()
    try:
        await journal.open_batch(
            batch_id,
            recipe_name="cart-expansion",
            recipe_version="3.1",
            recipe_hash="c0ffee" * 10 + "beef",
            product="CAR-T (anti-CD19)",
            coi="COI-2026-000123",
            simulation=simulation,
            data=_created(simulation),
        )
        entries = _entries()
        futures = [journal.append_nowait(batch_id, kind, data) for kind, data in entries]
        await asyncio.gather(*futures)
        for start in range(0, SAMPLES_PER_TAG, 500):
            rows = _samples("bioreactor.temperature.pv", 37.0, "degC", start, 500)
            rows += _samples("bioreactor.ph.pv", 7.2, "pH", start, 500)
            await journal.append_samples(batch_id, rows)
    finally:
        await journal.stop()
