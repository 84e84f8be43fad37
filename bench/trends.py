"""Trends over 1,000 stored expansion batches (goal ≤ 10 s) and a lot package (goal ≤ 5 s),
each next to merely reading the same records from the store."""

from __future__ import annotations

import asyncio
import os
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench.results import Results
from ebr import Store
from ebr.exports.lot_package import write_package
from ebr.exports.trend_charts import write_charts
from ebr.exports.trends import charts, collect, compare_sites
from ebr.record.query import journal_entries, list_batches, read_samples
from ebr.review.exceptions import load_rules
from ebr.review.lots import build_package
from tests.ebr.lot_batches import COI, write_lot
from tests.ebr.trend_batches import Biology, write_expansions

BATCHES = int(os.environ.get("CELLBATCH_BENCH_TREND_BATCHES", "1000"))
SAMPLE_MINUTES = 30.0  # 5 tags × 529 samples per batch (11 days)


def _plan() -> list[tuple[str, str, Biology]]:
    rng = random.Random(14)
    return [(f"T-{n:04d}", f"hub-{n % 3 + 1}", Biology.draw(rng)) for n in range(BATCHES)]


def _read_all(store: Store) -> int:
    samples = 0
    for summary in list_batches(store):
        if summary.recipe_name != "car-t-expansion":
            continue
        with store.snapshot() as conn:
            journal_entries(conn, summary.batch_id)
        samples += len(read_samples(store, summary.batch_id))
    return samples


def _time_cli(store: Store) -> float:
    """Wall time of the whole `cellbatch trend` command (a new process) on `store`."""
    url = store.engine.url.render_as_string(hide_password=False)
    command = [sys.executable, "-m", "cellbatch", "trend", "car-t-expansion", "--db", url]
    t0 = time.perf_counter()
    subprocess.run(command, check=True, capture_output=True, timeout=600)
    return time.perf_counter() - t0


def run(results: Results) -> None:
    """Build the batches, then time the trend and a lot package against raw reads."""
    with tempfile.TemporaryDirectory() as tmp:
        store = Store.open(f"sqlite:///{Path(tmp) / 'trends.sqlite'}")
        try:
            t0 = time.perf_counter()
            asyncio.run(write_expansions(store, _plan(), step_min=SAMPLE_MINUTES))
            print(f"  ({BATCHES} expansion batches written in {time.perf_counter() - t0:.1f} s)")
            t0 = time.perf_counter()
            samples = _read_all(store)
            read_s = time.perf_counter() - t0
            t0 = time.perf_counter()
            figures = collect(store, "car-t-expansion", jobs=os.cpu_count() or 1)
            drawn = charts(figures, baseline=50)
            equivalence = compare_sites(figures)
            figures_s = time.perf_counter() - t0
            cli_s = _time_cli(store)
            t0 = time.perf_counter()
            files = write_charts(drawn, Path(tmp) / "charts", batches=figures,
                                 equivalence=equivalence)  # fmt: skip
            charts_s = time.perf_counter() - t0
            asyncio.run(write_lot(store, "LOT"))
            t0 = time.perf_counter()
            with store.snapshot() as conn:
                for batch_id in ("LOT-expansion", "LOT-wash", "LOT-cryo"):
                    journal_entries(conn, batch_id)
            lot_read_s = time.perf_counter() - t0
            t0 = time.perf_counter()
            package = build_package(store, COI, load_rules(None))
            write_package(package, Path(tmp) / "lot")
            package_s = time.perf_counter() - t0
        finally:
            store.close()
    assert len(figures) == BATCHES and drawn and files
    results.add(
        f"trend figures + I-MR charts + site TOST, {BATCHES} batches "
        f"({samples // BATCHES:,} samples each)",
        figures_s,
        "s",
        baseline="ebr.record.query reading the same journals and samples",
        baseline_value=read_s,
        higher_is_better=False,
    )
    results.add(
        f"`cellbatch trend car-t-expansion` over {BATCHES} batches (whole command, goal ≤ 10 s)",
        cli_s,
        "s",
        baseline="ebr.record.query reading the same journals and samples (Sample objects)",
        baseline_value=read_s,
        higher_is_better=False,
    )
    results.add(f"trend charts drawn ({len(files)} PNG + 1 PDF)", charts_s, "s")
    results.add(
        "lot package of 3 batches (JSON + PDF, review, verify, QC, deviations)",
        package_s,
        "s",
        baseline="reading the 3 journals",
        baseline_value=lot_read_s,
        higher_is_better=False,
    )
