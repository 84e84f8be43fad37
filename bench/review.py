"""Review by exception over 1,000 stored batches (goal ≤ 5 s), next to merely reading
the same records (journal + samples) from the store."""

from __future__ import annotations

import asyncio
import statistics
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from bench.results import Results
from ebr import Journal, Store
from ebr.record.query import batch_record, blocks_of, journal_entries
from ebr.review.exceptions import load_rules, review

BATCHES = 1_000
DAYS = 12
SAMPLE_MINUTES = 10  # 2 CPP tags × 1,728 samples per batch
EPOCH = datetime(2026, 3, 1, 8, 0, tzinfo=UTC)

CONTENT = {
    "monitors": [
        {"name": "temperature", "unit": "bioreactor", "tag": "temperature.pv",
         "engineering_unit": "degC", "alert": {"low": 36.5, "high": 37.5},
         "action": {"low": 36.0, "high": 38.0}},
        {"name": "ph", "unit": "bioreactor", "tag": "ph.pv", "engineering_unit": "pH",
         "alert": {"low": 7.0, "high": 7.4}, "action": {"low": 6.8, "high": 7.6}},
    ],
    "procedure": {"unit_procedures": [{"name": "expansion", "operations": [
        {"name": f"day_{d}", "phases": [{"name": "culture", "type": "hold_for",
                                          "duration": "1 d"}]}
        for d in range(DAYS)
    ]}]},
}  # fmt: skip


def _t(minutes: float) -> str:
    return (EPOCH + timedelta(minutes=minutes)).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _entries(n: int) -> list[tuple[str, dict[str, Any]]]:
    """About 95 engine entries: 12 daily operations with a setpoint write each, a
    verified manual count, and in every tenth batch a hold and an alarm."""
    out: list[tuple[str, dict[str, Any]]] = []

    def add(kind: str, minute: float, **data: Any) -> None:
        out.append((kind, {"t": _t(minute), **data}))

    add("batch.state", 1, element="b", level="batch", to="Running", trigger="start")
    add("monitors.active", 2, element="expansion/day_0", monitors=["temperature", "ph"],
        since=_t(2))  # fmt: skip
    for d in range(DAYS):
        m = d * 1440 + 3
        for path, level in ((f"expansion/day_{d}", "operation"),
                            (f"expansion/day_{d}/culture", "phase")):  # fmt: skip
            add("element.state", m, element=path, level=level, to="Running", trigger="start")
        seq = len(out) + 2
        add("write.intent", m + 1, element=f"expansion/day_{d}/culture", unit="BR-01",
            capability="rocking.rate_sp", old=d, new=d + 1, eu="rpm")  # fmt: skip
        add("write.result", m + 2, element=f"expansion/day_{d}/culture", intent=seq,
            capability="rocking.rate_sp", ok=True, readback=d + 1)  # fmt: skip
        add("phase.progress", m + 3, element=f"expansion/day_{d}/culture", progress={"d": d})
        if d == 5:
            add("prompt.opened", m + 4, prompt=f"P{n}", element=f"expansion/day_{d}/culture",
                prompt_kind="manual_sample", verify=True,
                entries={"viable_density": {"type": "number", "unit": "cells/mL"}})  # fmt: skip
            answered = len(out) + 2
            add("prompt.answered", m + 5, prompt=f"P{n}", element=f"expansion/day_{d}/culture",
                values={"viable_density": 2.1e6}, user="a.smith", verifier="b.jones")  # fmt: skip
            add("signature", m + 5, signature_id=f"SIG-{n}", user_id="U-0002",
                username="b.jones", printed_name="B. Jones", meaning="verified", comment=None,
                signed_hash="0" * 64, subject={"type": "entry", "seq": answered})  # fmt: skip
        if d == 7 and n % 10 == 0:
            add("alarm.raised", m + 6, monitor="temperature", level="action", value=38.2,
                limit=38.0, at=_t(m + 6), action="hold")  # fmt: skip
            add("batch.state", m + 7, element="b", level="batch", to="Holding", trigger="hold")
            add("batch.state", m + 30, element="b", level="batch", to="Restarting",
                trigger="restart")  # fmt: skip
        for path, level in ((f"expansion/day_{d}/culture", "phase"),
                            (f"expansion/day_{d}", "operation")):  # fmt: skip
            add("element.state", m + 1440 - 2, element=path, level=level, to="Complete",
                trigger="complete")  # fmt: skip
    add("batch.state", DAYS * 1440, element="b", level="batch", to="Complete", trigger="complete")
    return out


def _samples(n: int, tag: str, base: float, unit: str, start: int, count: int) -> list[Any]:
    rows = []
    for i in range(start, start + count):
        value = base + 0.03 * ((i * 7 + n) % 11 - 5)
        if n % 10 == 0 and tag.endswith("temperature.pv") and 1008 <= i < 1012:
            value = 38.2  # the excursion behind the alarm
        rows.append((tag, EPOCH + timedelta(minutes=SAMPLE_MINUTES * i), value, unit, "good"))
    return rows


async def _build(store: Store) -> int:
    """Write BATCHES batches through the Journal; return the entries written."""
    journal = Journal(store)
    await journal.start()
    per_tag = DAYS * 1440 // SAMPLE_MINUTES
    try:
        for n in range(BATCHES):
            await journal.open_batch(
                f"B-{n:04d}", recipe_name="expansion", recipe_version="1",
                recipe_hash="ab" * 32, product="CAR-T", coi=f"COI-{n:06d}",
                simulation=False, data={"recipe": {"content": CONTENT}, "parameters": {}},
            )  # fmt: skip
        for first in range(0, BATCHES, 100):
            await asyncio.gather(
                *(
                    journal.append_nowait(f"B-{n:04d}", kind, data)
                    for n in range(first, first + 100)
                    for kind, data in _entries(n)
                )
            )
        for n in range(BATCHES):
            for start in range(0, per_tag, per_tag // 2):
                rows = _samples(n, "bioreactor.temperature.pv", 37.0, "degC", start, per_tag // 2)
                rows += _samples(n, "bioreactor.ph.pv", 7.2, "pH", start, per_tag // 2)
                await journal.append_samples(f"B-{n:04d}", rows)
    finally:
        await journal.stop()
    return journal.stats.entries


DENSE_TAGS = (
    ("bioreactor.temperature.pv", 37.0, "degC"),
    ("bioreactor.ph.pv", 7.2, "pH"),
    ("bioreactor.do.pv", 50.0, "%"),
    ("bioreactor.culture.viability", 92.0, "%"),
    ("bioreactor.volume.pv", 500.0, "mL"),
)


async def _dense(store: Store) -> int:
    """One batch recorded like the demo: 5 tags, one sample a minute for 12 days,
    interleaved in blocks of 4,000 rows as the sampler writes them."""
    journal = Journal(store)
    await journal.start()
    try:
        await journal.open_batch(
            "DENSE", recipe_name="expansion", recipe_version="1", recipe_hash="ab" * 32,
            product="CAR-T", coi="COI-DENSE", simulation=False,
            data={"recipe": {"content": CONTENT}, "parameters": {}},
        )  # fmt: skip
        await asyncio.gather(*(journal.append_nowait("DENSE", k, d) for k, d in _entries(1)))
        rows = [
            (tag, EPOCH + timedelta(minutes=i), base + 0.01 * ((i * 7) % 11 - 5), unit, "good")
            for i in range(DAYS * 1440)
            for tag, base, unit in DENSE_TAGS
        ]
        for start in range(0, len(rows), 4000):
            await journal.append_samples("DENSE", rows[start : start + 4000])
    finally:
        await journal.stop()
    return len(rows)


def _read_all(store: Store) -> int:
    samples = 0
    for n in range(BATCHES):
        with store.snapshot() as conn:
            batch_record(conn, f"B-{n:04d}")
            journal_entries(conn, f"B-{n:04d}")
            samples += sum(len(b.samples) for b in blocks_of(conn, f"B-{n:04d}"))
    return samples


def run(results: Results) -> None:
    """Build 1,000 batches, then time reading them and reviewing them."""
    with tempfile.TemporaryDirectory() as tmp:
        store = Store.open(f"sqlite:///{Path(tmp) / 'review.sqlite'}")
        try:
            t0 = time.perf_counter()
            entries = asyncio.run(_build(store))
            built = time.perf_counter() - t0
            print(f"  ({BATCHES} batches, {entries:,} entries written in {built:.1f} s)")
            rules = load_rules(None)
            t0 = time.perf_counter()
            samples = _read_all(store)
            read_s = time.perf_counter() - t0
            t0 = time.perf_counter()
            found = [review(store, f"B-{n:04d}", rules) for n in range(BATCHES)]
            review_s = time.perf_counter() - t0
            dense = asyncio.run(_dense(store))
            times = []
            for _ in range(5):
                t0 = time.perf_counter()
                dense_found = review(store, "DENSE", rules)
                times.append(time.perf_counter() - t0)
        finally:
            store.close()
    exceptions = sum(len(f) for f in found)
    assert exceptions == BATCHES + 3 * (BATCHES // 10), exceptions  # manual + hold/alarm/excursion
    results.add(
        f"review by exception, {BATCHES} batches ({samples // BATCHES:,} samples each)",
        review_s,
        "s",
        baseline="ebr.record.query reading the same records",
        baseline_value=read_s,
        higher_is_better=False,
    )
    results.add("review by exception per batch", review_s / BATCHES * 1e3, "ms")
    results.add("review exceptions found", exceptions, "exceptions")
    assert len(dense_found) == 1, dense_found  # the verified manual entry
    results.add(
        f"review of one demo-density batch ({dense:,} samples)",
        statistics.median(times) * 1e3,
        "ms",
    )
