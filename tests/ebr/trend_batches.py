"""Synthetic expansion batches with seeded biology, written through the public journal
API, for trend and site-equivalence tests and the trend bench (30+ batches in seconds
instead of 30 simulations)."""

from __future__ import annotations

import math
import random
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from ebr import Store
from ebr.record.journal import Journal
from recipes import load_recipe

ROOT = Path(__file__).resolve().parents[2]
RECIPE = load_recipe(ROOT / "recipes" / "library" / "car-t-expansion.yaml")
EPOCH = datetime(2026, 3, 1, 8, 0, tzinfo=UTC)
INOCULUM = 1.0e8
START_DENSITY = INOCULUM / 200.0  # cells/mL in 200 mL
CAPACITY = 1.6e7


@dataclass(frozen=True)
class Biology:
    """One batch's growth: lag (h), doubling time (h), final viability (%)."""

    lag_h: float
    doubling_h: float
    viability: float

    @staticmethod
    def draw(rng: random.Random, *, doubling_shift: float = 0.0) -> Biology:
        """Within published ranges: lag 1-2 d, doubling 20-36 h, viability 85-95 %."""
        return Biology(
            lag_h=min(48.0, max(24.0, rng.gauss(34.0, 4.0))),
            doubling_h=min(36.0, max(20.0, rng.gauss(26.0, 1.2))) + doubling_shift,
            viability=min(95.0, max(85.0, rng.gauss(91.0, 1.5))),
        )


def _iso(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def density(hours_since_inoculation: float, bio: Biology) -> float:
    """Viable cells/mL: flat during the lag, then logistic growth to the capacity."""
    grown = max(0.0, hours_since_inoculation - bio.lag_h)
    mu = math.log(2) / bio.doubling_h
    return CAPACITY / (1 + (CAPACITY / START_DENSITY - 1) * math.exp(-mu * grown))


async def write_expansion(
    journal: Journal,
    batch_id: str,
    bio: Biology,
    *,
    site: str,
    seed: int,
    step_min: float = 30.0,
    days: float = 11.0,
) -> None:
    """One completed expansion batch: inoculation at 2 h, samples every `step_min`."""
    rng = random.Random(seed)
    created = {
        "t": _iso(EPOCH),
        "recipe": {"name": RECIPE.header.name, "version": RECIPE.header.version,
                   "content_hash": RECIPE.content_hash, "content": RECIPE.document()},
        "plant": {"name": "synthetic", "site": site, "mode": "simulation"},
        "parameters": {},
    }  # fmt: skip
    await journal.open_batch(
        batch_id, recipe_name=RECIPE.header.name, recipe_version=RECIPE.header.version,
        recipe_hash=RECIPE.content_hash, product=RECIPE.header.product,
        coi=f"COI-{batch_id}", simulation=True, data=created,
    )  # fmt: skip
    inoculated = EPOCH + timedelta(hours=2)
    end = inoculated + timedelta(days=days)

    def state(moment: datetime, src: str, dst: str) -> dict[str, Any]:
        return {"t": _iso(moment), "element": "batch", "level": "batch", "from": src, "to": dst,
                "trigger": "start" if dst == "Running" else "complete"}  # fmt: skip

    await journal.append(batch_id, "batch.state", state(EPOCH, "Idle", "Running"))
    await journal.append(batch_id, "method.intent", {
        "t": _iso(inoculated), "element": "expansion/inoculation/inoculate", "unit": "BR-01",
        "method": "inoculate", "args": {"volume": 50.0, "viable_cells": INOCULUM}})  # fmt: skip
    await journal.append(batch_id, "monitors.active", {
        "t": _iso(inoculated), "element": "expansion/day_0", "since": _iso(inoculated),
        "monitors": [m.name for m in RECIPE.monitors]})  # fmt: skip
    feed = {"t": _iso(inoculated + timedelta(days=4)), "element": "expansion/day_4/feed",
            "unit": "BR-01", "capability": "volume.sp", "old": 500.0, "new": 1000.0,
            "eu": "mL"}  # fmt: skip
    await journal.append(batch_id, "write.intent", feed)
    rows: list[tuple[str, datetime, float, str, str]] = []
    steps = int(days * 24 * 60 / step_min)
    for i in range(steps + 1):
        moment = inoculated + timedelta(minutes=i * step_min)
        hours = i * step_min / 60
        cells = density(hours, bio) * math.exp(rng.gauss(0.0, 0.02))
        viability = (
            bio.viability + (100 - bio.viability) * math.exp(-hours / 48) + rng.gauss(0, 0.3)
        )
        rows += [
            ("bioreactor.culture.viable_density", moment, cells, "cells/mL", "good"),
            ("bioreactor.culture.viability", moment, min(100.0, viability), "%", "good"),
            ("bioreactor.temperature.pv", moment, 37.0 + rng.gauss(0, 0.05), "degC", "good"),
            ("bioreactor.ph.pv", moment, 7.2 + rng.gauss(0, 0.02), "pH", "good"),
            ("bioreactor.do.pv", moment, 50.0 + rng.gauss(0, 1.0), "%", "good"),
        ]
        if len(rows) >= 2000:
            await journal.append_samples(batch_id, rows)
            rows = []
    if rows:
        await journal.append_samples(batch_id, rows)
    await journal.append(batch_id, "batch.state", state(end, "Running", "Complete"))


async def write_expansions(
    store: Store,
    plan: list[tuple[str, str, Biology]],
    *,
    seed: int = 14,
    step_min: float = 30.0,
) -> None:
    """Write every (batch_id, site, biology) of `plan`."""
    journal = Journal(store)
    await journal.start()
    try:
        for index, (batch_id, site, bio) in enumerate(plan):
            await write_expansion(
                journal, batch_id, bio, site=site, seed=seed + index, step_min=step_min
            )
    finally:
        await journal.stop()
