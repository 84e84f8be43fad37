"""The demo's wall time: 12 simulated days of the CAR-T expansion over real OPC UA."""

from __future__ import annotations

import asyncio
import tempfile
from pathlib import Path

from bench import exports
from bench.results import Results
from cellbatch.demo import run_demo
from controller.plant import load_plant
from tests.plantfiles import private_demo_plant


def run(results: Results) -> None:
    """Run the demo in-process on a free port and report wall and simulated time."""
    with tempfile.TemporaryDirectory() as tmp:
        plant = load_plant(private_demo_plant(Path(tmp)))
        db_url = f"sqlite:///{tmp}/demo.sqlite"
        out = asyncio.run(run_demo(plant, db_url=db_url, out_dir=Path(tmp) / "out", echo=False))
        exports.run(results, db_url, out.batch_id)
    results.add("demo wall time (12-day CAR-T expansion)", out.wall_s, "s")
    results.add("demo simulated time", out.simulated_days, "days")
    results.add("demo journal events", out.events, "entries")
    results.add("demo process samples", out.samples, "samples")
