"""``make bench``: prints figures (with raw baselines measured in the same run) and
writes ``bench/results.json``."""

from __future__ import annotations

import logging
import os
import platform
from pathlib import Path

from bench import demo, drivers, engine, journal, journal_pg, plant_scale, review, trends
from bench.results import Results


def main() -> None:
    """Run every benchmark once, in order, and save the figures."""
    logging.getLogger("asyncua").setLevel(logging.ERROR)
    print(
        f"cellbatch bench on {platform.node()} ({os.cpu_count()} CPUs, Python "
        f"{platform.python_version()})",
        flush=True,
    )
    results = Results()
    journal.run(results)
    journal_pg.run(results)
    drivers.run(results)
    engine.run(results)
    plant_scale.run(results)
    demo.run(results)
    review.run(results)
    trends.run(results)
    out = Path(__file__).parent / "results.json"
    results.save(out)
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
