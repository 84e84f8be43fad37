"""Plant scale: how many real-time batches one controller process holds.

Simulators run in their own processes (``cellbatch sim serve``, many vessels each,
ports 0), the controller in another (this module with ``--controller``). Time is real
(scale 1) and every vessel steps once per second, so each batch's three monitored CPPs
deliver one sample per second each, as a plant at 1 s sampling does. For each N of a
ladder the controller starts N batches of ``bench/plant_scale.yaml``, lets them settle,
then measures a window: monitor lateness (instrument time → monitor evaluation, wall)
p50/p99, the controller's CPU share (of one core), its memory per batch, and its
journal and sample write rates. The ladder stops at the first N whose p99 reaches
250 ms, or when the time budget is spent.

    python -m bench.plant_scale                       # ladder 100,200,300,400 (~3 min)
    python -m bench.plant_scale --batches 100,300 --window 20 --per-sim 100
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
RECIPE = Path(__file__).with_name("plant_scale.yaml")
GOAL_S = 0.25
LADDER = (100, 200, 300, 400)


# -- the controller process ---------------------------------------------------------------


def _rss_bytes() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    return 0


async def _control(plant_path: str, db: str, n: int, settle_s: float, window_s: float) -> dict:
    """Run ``n`` batches and measure a window (runs in the controller process)."""
    import logging

    from controller.plant import load_plant
    from controller.session import Controller
    from recipes import load_recipe

    logging.getLogger("asyncua").setLevel(logging.ERROR)
    plant = load_plant(plant_path)
    recipe = load_recipe(RECIPE)
    controller = Controller(plant, db, user="bench")
    await controller.start()
    assert controller.journal is not None
    rss0 = _rss_bytes()
    t_create = time.perf_counter()
    runs = [await controller.create_batch(recipe) for _ in range(n)]
    create_s = time.perf_counter() - t_create
    samples = [0]

    def count(_tag: str, _reading: Any) -> None:
        samples[0] += 1

    for run in runs:
        run.sampler.listen(count)
    tasks = [asyncio.create_task(controller.run(run)) for run in runs]
    await asyncio.sleep(settle_s)
    for run in runs:
        run.monitor_lateness.clear()
    lags: list[float] = []
    probe = asyncio.create_task(_loop_lag(lags))
    entries0, samples0 = controller.journal.stats.entries, samples[0]
    cpu0, t0 = time.process_time(), time.perf_counter()
    await asyncio.sleep(window_s)
    wall = time.perf_counter() - t0
    cpu = time.process_time() - cpu0
    probe.cancel()
    entries = controller.journal.stats.entries - entries0
    sampled = samples[0] - samples0
    rss1 = _rss_bytes()
    lateness = sorted(x for run in runs for x in run.monitor_lateness)
    running = sum(1 for run in runs if run.state.value == "Running")
    await controller.stop()
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    q = statistics.quantiles(lateness, n=100) if len(lateness) > 100 else [float("inf")] * 99
    lag = statistics.quantiles(lags, n=100) if len(lags) > 100 else [float("inf")] * 99
    return {
        "batches": n,
        "running": running,
        "create_s": round(create_s, 2),
        "lateness_p50_ms": round(q[49] * 1e3, 1),
        "lateness_p99_ms": round(q[98] * 1e3, 1),
        "evaluations": len(lateness),
        "loop_lag_p99_ms": round(lag[98] * 1e3, 1),
        "cpu_share": round(cpu / wall, 3),
        "mem_per_batch_kib": round((rss1 - rss0) / n / 1024, 1),
        "journal_entries_per_s": round(entries / wall, 1),
        "samples_per_s": round(sampled / wall, 1),
    }


async def _loop_lag(lags: list[float]) -> None:
    """How late the controller's event loop wakes a 10 ms sleeper (its own congestion)."""
    while True:
        t0 = time.perf_counter()
        await asyncio.sleep(0.01)
        lags.append(time.perf_counter() - t0 - 0.01)


# -- the orchestrating process ------------------------------------------------------------


def _sim_plant(k: int, vessels: list[str]) -> str:
    names = ", ".join(f'"{v}"' for v in vessels)
    listen = f"opc.tcp://127.0.0.1:0/bench-{k}"
    units = "".join(
        f'\n[[units]]\nname = "{v}"\nclass = "rocking_bioreactor"\n'
        f'profile = "rocking_bioreactor_opcua"\nendpoint = "{listen}"\n'
        f'address = {{ vessel = "{v}" }}\n'
        for v in vessels
    )
    return (
        f'[plant]\nname = "bench-sims-{k}"\nmode = "simulation"\n\n'
        f"[simulation]\ntime_scale = 1\n\n"
        f'[[simulators]]\nname = "bioreactors-{k}"\nkind = "opcua-bioreactor"\n'
        f'listen = "{listen}"\nvessels = [{names}]\nseed = {k}\nstep_s = 1.0\n' + units
    )


def _controller_plant(endpoints: dict[str, str]) -> str:
    units = "".join(
        f'\n[[units]]\nname = "{v}"\nclass = "rocking_bioreactor"\n'
        f'profile = "rocking_bioreactor_opcua"\nendpoint = "{url}"\n'
        f'address = {{ vessel = "{v}" }}\n'
        for v, url in endpoints.items()
    )
    return '[plant]\nname = "bench-plant"\nmode = "simulation"\n' + units


def _spawn_sim(plant: Path) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "cellbatch", "sim", "serve", "--plant", str(plant)],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )


def _ready(proc: subprocess.Popen[str], deadline: float) -> str:
    """The simulator's URL once it printed ``ready`` (its lines are ``NAME URL``)."""
    assert proc.stdout is not None
    url = ""
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line:
            break
        if line.strip() == "ready":
            return url
        url = line.split()[-1]
    raise RuntimeError(f"simulator {proc.args!r} did not get ready")


def _cpu_s(pid: int) -> float:
    """CPU seconds (user + system) a process has used so far (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _stop(proc: subprocess.Popen[str]) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def measure(n: int, *, per_sim: int, settle_s: float, window_s: float, tmp: Path) -> dict:
    """One rung: start the simulators and the controller, return the controller's figures."""
    vessels = [f"V-{i:04d}" for i in range(n)]
    sims = -(-n // per_sim)
    procs: list[subprocess.Popen[str]] = []
    endpoints: dict[str, str] = {}
    started = time.monotonic()
    deadline = started + 120
    try:
        shares = [vessels[k::sims] for k in range(sims)]
        for k, mine in enumerate(shares):  # all start at once, then each is awaited
            path = tmp / f"sims-{n}-{k}.toml"
            path.write_text(_sim_plant(k, mine))
            procs.append(_spawn_sim(path))
        for proc, mine in zip(procs, shares, strict=True):
            url = _ready(proc, deadline)
            endpoints.update({v: url for v in mine})
        t_sims = time.monotonic() - started
        plant = tmp / f"plant-{n}.toml"
        sims_cpu0, t_ctl = sum(_cpu_s(p.pid) for p in procs), time.monotonic()
        plant.write_text(_controller_plant({v: endpoints[v] for v in vessels}))
        out = subprocess.run(
            [
                sys.executable,
                "-m",
                "bench.plant_scale",
                "--controller",
                str(plant),
                "--db",
                f"sqlite:///{tmp / f'plant-{n}.sqlite'}",
                "--batches",
                str(n),
                "--settle",
                str(settle_s),
                "--window",
                str(window_s),
            ],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
        )
        if out.returncode != 0:
            raise RuntimeError(f"controller failed:\n{out.stderr[-2000:]}")
        sims_cpu = sum(_cpu_s(p.pid) for p in procs) - sims_cpu0
        rung = dict(json.loads(out.stdout.strip().splitlines()[-1]))
        rung["sims_cpu_share"] = round(sims_cpu / (time.monotonic() - t_ctl), 3)
        rung["sims_start_s"] = round(t_sims, 1)
        rung["rung_s"] = round(time.monotonic() - started, 1)
        return rung
    finally:
        for proc in procs:
            _stop(proc)


def ladder(
    counts: tuple[int, ...] = LADDER,
    *,
    per_sim: int = 50,
    settle_s: float = 6.0,
    window_s: float = 15.0,
    budget_s: float = 180.0,
    echo: bool = True,
) -> tuple[int, list[dict]]:
    """Measure each N in turn; the largest N with p99 < 250 ms and every rung's figures."""
    best, rungs = 0, list[dict]()
    started = time.monotonic()
    with tempfile.TemporaryDirectory() as tmp:
        for n in counts:
            if rungs and time.monotonic() - started + 1.5 * rungs[-1]["rung_s"] > budget_s:
                break  # the next (larger) rung would not fit the budget
            rung = measure(n, per_sim=per_sim, settle_s=settle_s, window_s=window_s, tmp=Path(tmp))
            rungs.append(rung)
            if echo:
                print(_line(rung), flush=True)
            if rung["lateness_p99_ms"] >= GOAL_S * 1e3 or rung["running"] < n:
                break
            best = n
    return best, rungs


def run(results: Any) -> None:
    """``make bench``: the ladder within ~3 min, its largest N and that rung's figures."""
    print(f"plant scale (load average {os.getloadavg()[0]:.1f} at start):", flush=True)
    best, rungs = ladder()
    results.add("plant scale: batches with monitor lateness p99 < 250 ms", best, "batches")
    rung = next((r for r in rungs if r["batches"] == best), rungs[0])
    n = rung["batches"]
    results.add(f"plant scale: monitor lateness p99, {n} batches", rung["lateness_p99_ms"], "ms")
    results.add(f"plant scale: controller CPU, {n} batches", rung["cpu_share"] * 100, "% core")
    results.add(f"plant scale: memory per batch, {n} batches", rung["mem_per_batch_kib"], "KiB")
    results.add(f"plant scale: journal entries, {n} batches", rung["journal_entries_per_s"], "/s")
    results.add(f"plant scale: samples written, {n} batches", rung["samples_per_s"], "/s")


def _line(r: dict) -> str:
    return (
        f"  {r['batches']:>5} batches: lateness p50 {r['lateness_p50_ms']:.0f} ms, "
        f"p99 {r['lateness_p99_ms']:.0f} ms (event loop lag p99 {r['loop_lag_p99_ms']:.0f} ms); "
        f"controller CPU {r['cpu_share'] * 100:.0f} % "
        f"of a core (simulators {r['sims_cpu_share'] * 100:.0f} %), "
        f"{r['mem_per_batch_kib']:.0f} KiB/batch; "
        f"{r['journal_entries_per_s']:.0f} journal entries/s, "
        f"{r['samples_per_s']:.0f} samples/s (simulators up in {r['sims_start_s']:.0f} s, "
        f"batches created in {r['create_s']:.1f} s, rung {r['rung_s']:.0f} s)"
    )


def main(argv: list[str] | None = None) -> None:
    """Command line (see the module docstring)."""
    parser = argparse.ArgumentParser(prog="python -m bench.plant_scale", description=__doc__)
    parser.add_argument("--batches", default=",".join(map(str, LADDER)), help="ladder of N")
    parser.add_argument("--per-sim", type=int, default=50, help="vessels per simulator process")
    parser.add_argument("--settle", type=float, default=6.0, help="seconds before measuring")
    parser.add_argument("--window", type=float, default=15.0, help="seconds measured")
    parser.add_argument("--budget", type=float, default=180.0, help="time budget, seconds")
    parser.add_argument("--controller", help=argparse.SUPPRESS)
    parser.add_argument("--db", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    counts = tuple(int(x) for x in args.batches.split(","))
    if args.controller:
        result = asyncio.run(
            _control(args.controller, args.db, counts[0], args.settle, args.window)
        )
        print(json.dumps(result))
        return
    print(
        f"plant scale: real time, 3 CPPs per batch sampled at 1 s, {args.per_sim} vessels "
        f"per simulator process, {os.cpu_count()} CPUs, load average "
        f"{os.getloadavg()[0]:.1f}",
        flush=True,
    )
    best, _rungs = ladder(
        counts,
        per_sim=args.per_sim,
        settle_s=args.settle,
        window_s=args.window,
        budget_s=args.budget,
    )
    print(f"largest N with monitor lateness p99 < 250 ms: {best}")


if __name__ == "__main__":
    main()
