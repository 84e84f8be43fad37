"""``cellbatch demo --batches N [--sites K] [--seed S]``: many seeded batches, then trends.

Each wave runs as many batches at once as the plant has bioreactor units, on a fresh
bioreactor simulator (``biology = "seeded"``: every vessel draws its own lag, growth and
death rates from the seed and the wave), so the record holds real batch-to-batch
variation. Batch ``i`` belongs to site ``i mod K`` (the plant's site when K = 1). At the
end the recipe's trend charts (and, with K > 1, the site comparison) are written.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, replace
from pathlib import Path

import click

from cellbatch.ports import endpoint_map, on_free_ports
from controller.isa88 import State
from controller.plant import Plant
from controller.prompts import PromptBoard, simulated_operator
from controller.session import Controller
from ebr import Store
from ebr.exports.trend_charts import write_charts
from ebr.exports.trends import BatchFigures, charts, collect, compare_sites
from recipes import Recipe, load_recipe
from simulators.launch import start_simulators

BIOREACTOR = "rocking_bioreactor"


@dataclass(frozen=True)
class DemoBatch:
    """One batch the demo ran."""

    batch_id: str
    site: str
    state: State


def site_names(plant: Plant, sites: int) -> list[str]:
    """The site of each of `sites` sites (the plant's own when there is one)."""
    if sites == 1:
        return [plant.site or plant.name]
    return [f"{plant.name}-site-{k + 1}" for k in range(sites)]


async def run_batches(
    plant: Plant,
    recipe: Recipe,
    *,
    db_url: str,
    batches: int,
    sites: int,
    seed: int,
    time_scale: float,
    echo: bool = True,
    wall_limit_s: float = 900.0,
) -> list[DemoBatch]:
    """Run `batches` batches of `recipe` in waves on seeded simulators; return them all."""
    specs = [dict(s) for s in plant.simulators if s.get("kind") == "opcua-bioreactor"]
    units = [u for u in plant.units if u.equipment_class == BIOREACTOR]
    if not specs or not units:
        raise click.ClickException(f"{plant.source}: no simulated bioreactor to run batches on")
    names = site_names(plant, sites)
    done: list[DemoBatch] = []
    wave = 0
    while len(done) < batches:
        take = min(len(units), batches - len(done))
        wave_specs = [
            {**s, "seed": seed * 1000 + wave, "biology": "seeded"} for s in on_free_ports(specs)
        ]
        sims = await start_simulators(wave_specs, time_scale)
        try:
            moved = endpoint_map(specs, sims.endpoints)
            wired = plant.with_endpoints(moved)
            free = [u for u in wired.units if u.equipment_class == BIOREACTOR]
            by_site: dict[str, list[int]] = {}
            for k in range(take):
                by_site.setdefault(names[(len(done) + k) % len(names)], []).append(k)
            jobs = [
                _site_wave(replace(wired, site=site, units=tuple(free[k] for k in slots)),
                           recipe, db_url, len(slots), wall_limit_s)
                for site, slots in by_site.items()
            ]  # fmt: skip
            results = [batch for group in await asyncio.gather(*jobs) for batch in group]
        finally:
            await sims.stop()
        for batch in results:
            done.append(batch)
            if echo:
                click.echo(f"batch {len(done):>3}/{batches} {batch.batch_id} {batch.site}: "
                           f"{batch.state.value}")  # fmt: skip
        wave += 1
    return done


async def _site_wave(
    plant: Plant, recipe: Recipe, db_url: str, count: int, wall_limit_s: float
) -> list[DemoBatch]:
    """`count` batches at once on one site's controller (one unit each)."""
    board = PromptBoard()
    board.answerer = simulated_operator(board)
    controller = Controller(plant, db_url, user="demo", prompts=board)
    await controller.start()
    try:
        runs = [await controller.create_batch(recipe) for _ in range(count)]
        states = await asyncio.wait_for(
            asyncio.gather(*(controller.run(run) for run in runs)), wall_limit_s
        )
    finally:
        await controller.stop()
    return [
        DemoBatch(run.control.batch_id, plant.site, state)
        for run, state in zip(runs, states, strict=True)
    ]


def demo_batches(
    plant: Plant,
    recipe_path: Path,
    *,
    db_url: str,
    out_dir: Path,
    batches: int,
    sites: int,
    seed: int,
    time_scale: float | None,
) -> tuple[list[DemoBatch], list[BatchFigures], list[Path]]:
    """Run the batches, then draw the recipe's trends (and site comparison) into out_dir."""
    recipe = load_recipe(recipe_path)
    started = time.perf_counter()
    ran = asyncio.run(
        run_batches(plant, recipe, db_url=db_url, batches=batches, sites=sites, seed=seed,
                    time_scale=time_scale or plant.time_scale)
    )  # fmt: skip
    click.echo(f"{len(ran)} batches in {time.perf_counter() - started:.0f} s wall time")
    ids = {b.batch_id for b in ran}
    with Store.open(db_url, create=False) as store:
        figures = [f for f in collect(store, recipe.header.name) if f.batch_id in ids]
    drawn = charts(figures)
    equivalence = compare_sites(figures) if sites > 1 else []
    files = write_charts(drawn, out_dir / "trends", batches=figures, equivalence=equivalence,
                         title=f"{recipe.header.name}-trends")  # fmt: skip
    return ran, figures, files
