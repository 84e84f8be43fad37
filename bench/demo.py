"""The demo's wall time: 12 simulated days of the CAR-T expansion over real OPC UA."""

from __future__ import annotations

import asyncio
import tempfile
from pathlib import Path

from bench.results import Results
from controller.demo import run_demo
from controller.plant import load_plant

ROOT = Path(__file__).resolve().parents[1]


def run(results: Results) -> None:
    """Run the demo in-process on a free port and report wall and simulated time."""
    plant_text = (ROOT / "plants" / "demo.toml").read_text().replace(":4841/", ":0/")
    with tempfile.TemporaryDirectory() as tmp:
        plant_path = Path(tmp) / "plant.toml"
        plant_path.write_text(plant_text)
        plant = load_plant(plant_path)
        out = asyncio.run(
            run_demo(
                plant, db_url=f"sqlite:///{tmp}/demo.sqlite", out_dir=Path(tmp) / "out", echo=False
            )
        )
    results.add("demo wall time (12-day CAR-T expansion)", out.wall_s, "s")
    results.add("demo simulated time", out.simulated_days, "days")
    results.add("demo journal events", out.events, "entries")
    results.add("demo process samples", out.samples, "samples")
