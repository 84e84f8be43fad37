"""``cellbatch demo``: simulators, controller and one CAR-T batch in one process."""

from __future__ import annotations

import asyncio
import json
import time
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import click

from cellbatch.ports import endpoint_map, on_free_ports
from controller.batch import BatchRun
from controller.isa88 import Element, State
from controller.plant import Plant
from controller.prompts import PromptBoard, simulated_operator
from controller.session import Controller
from ebr import Store, export_batchml, export_csv, export_json, export_pdf
from ebr.review.release import qa_status
from recipes import load_recipe
from simulators.launch import start_simulators

DEFAULT_RECIPE = Path(str(resources.files("recipes") / "library" / "car-t-expansion.yaml"))


@dataclass(frozen=True, slots=True)
class DemoResult:
    """What the demo did."""

    batch_id: str
    state: State
    wall_s: float
    simulated_days: float
    events: int
    samples: int
    alarms: int
    exceptions: int
    files: list[Path]


def _progress(run: BatchRun, echo: bool) -> None:
    start = run.clock.now()

    def watch(el: Element, _src: State, dst: State) -> None:
        if echo and el.level in ("batch", "operation") and dst is not State.IDLE:
            day = (run.clock.now() - start).total_seconds() / 86400
            click.echo(f"  day {day:5.2f}  {el.level:<9} {el.path:<40} {dst.value}")

    run.watchers.append(watch)


async def run_demo(
    plant: Plant,
    *,
    db_url: str,
    out_dir: Path,
    recipe_path: Path = DEFAULT_RECIPE,
    time_scale: float | None = None,
    echo: bool = True,
    wall_limit_s: float = 600.0,
    free_ports: bool = True,
) -> DemoResult:
    """Start the plant's simulators, run the recipe on them, export the record.

    A batch that is held (an action limit, a lost instrument) ends the demo: it stays
    Held in the record, and the exports show why.

    With ``free_ports`` every simulator binds a free port (``cellbatch.ports``), so
    demos running at once on one machine never collide.
    """

    recipe = load_recipe(recipe_path)
    scale = time_scale or plant.time_scale
    specs = on_free_ports(plant.simulators) if free_ports else [dict(s) for s in plant.simulators]
    sims = await start_simulators(specs, scale)
    try:
        moved = endpoint_map(plant.simulators, sims.endpoints)
        if echo:
            for name, url in sims.endpoints.items():
                click.echo(f"simulator {name} {url}")
        board = PromptBoard()
        board.answerer = simulated_operator(board)
        controller = Controller(plant.with_endpoints(moved), db_url, user="demo", prompts=board)
        await controller.start()
        try:
            run = await controller.create_batch(recipe)
            if echo:
                click.echo(
                    f"batch {run.control.batch_id} ({recipe.header.name} "
                    f"{recipe.header.version}, COI {run.control.coi}, x{scale:g} clock)"
                )
            _progress(run, echo)
            t0, sim0 = time.perf_counter(), run.clock.now()
            state = await _until_ended_or_held(controller, run, wall_limit_s)
            wall = time.perf_counter() - t0
            days = (run.clock.now() - sim0).total_seconds() / 86400
        finally:
            await controller.stop()
    finally:
        await sims.stop()
    files = write_exports(db_url, run.control.batch_id, out_dir)
    doc = json.loads(files[0].read_text(encoding="utf-8"))
    with Store.open(db_url, create=False) as store:
        exceptions = len(qa_status(store, run.control.batch_id).exceptions)
    return DemoResult(
        batch_id=run.control.batch_id,
        state=state,
        wall_s=wall,
        simulated_days=days,
        events=len(doc["journal"]),
        samples=len(doc["samples"]),
        alarms=len(run.alarms),
        exceptions=exceptions,
        files=files,
    )


async def _until_ended_or_held(controller: Controller, run: BatchRun, wall_limit_s: float) -> State:
    """Run the batch until it ends, or until it is held (nobody is there to restart it in
    a demo) or the wall-time limit passes; the batch's state then. ``controller.stop``
    winds a held or unfinished batch down (held, journaled) afterwards."""
    held = asyncio.Event()

    def watch(el: Element, _src: State, dst: State) -> None:
        if el.level == "batch" and dst is State.HELD:
            held.set()

    run.watchers.append(watch)
    batch = asyncio.create_task(controller.run(run))
    holding = asyncio.create_task(held.wait())
    await asyncio.wait({batch, holding}, timeout=wall_limit_s, return_when="FIRST_COMPLETED")
    holding.cancel()
    if batch.done():
        return batch.result()
    if not held.is_set():
        click.echo(f"  wall-time limit of {wall_limit_s:.0f} s reached: holding the batch")
    return run.state


def write_exports(db_url: str, batch_id: str, out_dir: Path) -> list[Path]:
    """Write the batch's JSON, CSV, PDF and BatchML exports into ``out_dir``."""
    out_dir.mkdir(parents=True, exist_ok=True)
    store = Store.open(db_url)
    try:
        json_path = out_dir / f"{batch_id}.json"
        json_path.write_text(
            json.dumps(export_json(store, batch_id), indent=1, ensure_ascii=False), encoding="utf-8"
        )
        csv_path = out_dir / f"{batch_id}.csv"
        with csv_path.open("w", encoding="utf-8", newline="") as fh:
            export_csv(store, batch_id, fh)
        pdf_path = export_pdf(store, batch_id, out_dir / f"{batch_id}.pdf")
        batchml_path = out_dir / f"{batch_id}.batchml.xml"
        batchml_path.write_bytes(export_batchml(store, batch_id))
    finally:
        store.close()
    return [json_path, csv_path, pdf_path, batchml_path]
