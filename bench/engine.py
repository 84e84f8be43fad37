"""Engine costs: state transitions vs a bare `transitions` loop, a phase step with its
journaling, and how many concurrent batches keep monitor lateness p99 under 250 ms."""

from __future__ import annotations

import asyncio
import statistics
import tempfile
import time
from pathlib import Path

from transitions.extensions.asyncio import AsyncMachine

from bench.results import Results
from controller.batch import BatchRun, ControlRecipe
from controller.clock import ScaledClock
from controller.isa88 import Element, State
from controller.plant import Plant, UnitConfig
from controller.recorder import BatchRecorder
from controller.session import Controller
from drivers import DevicePool
from ebr import Journal, Store
from recipes import load_recipe
from simulators.bioreactor.opcua_server import BioreactorServer

ROOT = Path(__file__).resolve().parents[1]
CYCLE = ["start", "hold", "finish", "restart", "finish", "complete", "reset"]
CYCLES = 3000
LATENCY_GOAL_S = 0.25


async def _engine_transitions() -> float:
    async def listener(*_: object) -> None:
        return None

    el = Element("bench", "phase", listener)
    t0 = time.perf_counter()
    for _ in range(CYCLES):
        for trigger in CYCLE:
            await el.apply(trigger)
    elapsed = time.perf_counter() - t0
    el.release()
    return elapsed / (CYCLES * len(CYCLE))


async def _bare_transitions() -> float:
    class Model:
        pass

    states = [s.value for s in State]
    table = [
        {"trigger": "start", "source": "Idle", "dest": "Running"},
        {"trigger": "hold", "source": "Running", "dest": "Holding"},
        {"trigger": "finish", "source": "Holding", "dest": "Held"},
        {"trigger": "restart", "source": "Held", "dest": "Restarting"},
        {"trigger": "finish", "source": "Restarting", "dest": "Running"},
        {"trigger": "complete", "source": "Running", "dest": "Complete"},
        {"trigger": "reset", "source": "Complete", "dest": "Idle"},
    ]
    model = Model()
    AsyncMachine(
        model=model,
        states=states,
        transitions=table,
        initial="Idle",
        auto_transitions=False,
        queued="model",
    )
    t0 = time.perf_counter()
    for _ in range(CYCLES):
        for trigger in CYCLE:
            await model.trigger(trigger)  # type: ignore[attr-defined]
    return (time.perf_counter() - t0) / (CYCLES * len(CYCLE))


async def _phase_step(tmp: Path) -> float:
    """Wall time per phase of a recipe of zero-length holds, journaled for real."""
    text = (ROOT / "tests" / "controller" / "recipes" / "hold-only.yaml").read_text()
    recipe_path = tmp / "zero.yaml"
    recipe_path.write_text(text.replace("duration: 20 min", "duration: 0 s"))
    recipe = load_recipe(recipe_path)
    store = Store.open(f"sqlite:///{tmp / 'phase.sqlite'}")
    journal = Journal(store)
    await journal.start()
    pool = DevicePool()
    device = pool.open("V", "rocking_bioreactor_opcua", "opc.tcp://127.0.0.1:9/x", {"vessel": "V"})
    runs = 30
    t0 = time.perf_counter()
    for i in range(runs):
        batch_id = f"B-{i}"
        await journal.open_batch(
            batch_id,
            recipe_name="zero",
            recipe_version="1",
            recipe_hash=recipe.content_hash,
            product="p",
            coi="c",
            simulation=True,
            data={},
        )
        clock = ScaledClock(1.0)
        control = ControlRecipe(batch_id, recipe, {}, {"vessel": device}, "c", True)
        await BatchRun(control, BatchRecorder(journal, batch_id, clock), clock).run()
    elapsed = time.perf_counter() - t0
    await journal.stop()
    await pool.close()
    store.close()
    phases = sum(1 for _ in recipe.procedure.walk())
    return elapsed / (runs * phases)


async def _lateness(n: int, tmp: Path) -> float:
    """Monitor lateness p99 (s) with ``n`` concurrent batches on one simulator server."""
    vessels = [f"V-{i:02d}" for i in range(n)]
    server = BioreactorServer(vessels, url="opc.tcp://127.0.0.1:0/bench", time_scale=1000.0)
    await server.start()
    units = tuple(
        UnitConfig(
            v, "rocking_bioreactor", "rocking_bioreactor_opcua", server.endpoint, {"vessel": v}
        )
        for v in vessels
    )
    plant = Plant("bench", "", "simulation", 1000.0, units, (), "bench")
    controller = Controller(plant, f"sqlite:///{tmp / f'late-{n}.sqlite'}", user="bench")
    await controller.start()
    try:
        recipe = load_recipe(ROOT / "tests" / "controller" / "recipes" / "short-culture.yaml")
        runs = [await controller.create_batch(recipe) for _ in vessels]
        await asyncio.wait_for(asyncio.gather(*(controller.run(r) for r in runs)), 300)
        lateness = [x for r in runs for x in r.monitor_lateness]
    finally:
        await controller.stop()
        await server.stop()
    return statistics.quantiles(lateness, n=100)[98] if len(lateness) > 100 else float("inf")


def run(results: Results) -> None:
    """Engine figures."""
    ours = asyncio.run(_engine_transitions())
    bare = asyncio.run(_bare_transitions())
    results.add(
        "engine state transition",
        ours * 1e6,
        "µs",
        baseline="bare transitions trigger",
        baseline_value=bare * 1e6,
        higher_is_better=False,
    )
    with tempfile.TemporaryDirectory() as tmp:
        results.add(
            "engine phase step (journaled, 4 entries)",
            asyncio.run(_phase_step(Path(tmp))) * 1e3,
            "ms",
        )
        best = 0
        for n in (5, 10, 20, 40, 80):
            p99 = asyncio.run(_lateness(n, Path(tmp)))
            results.add(f"monitor lateness p99, {n} batches", p99 * 1e3, "ms")
            if p99 >= LATENCY_GOAL_S:
                break
            best = n
        results.add(
            "concurrent batches, monitor lateness p99 < 250 ms (tried 5-80)", best, "batches"
        )
