"""Soak: the controller SIGKILLed again and again while batches run, then the damage counted.

Uses the crash-recovery path the e2e kill test uses (``tests/e2e/test_resume.py``):
``cellbatch run`` starts a batch of ``short-culture`` on a fresh vessel of one
``cellbatch sim serve`` process (2000×); a random moment after its controller printed a
state change it is killed with SIGKILL (the k-th kill of a batch aims just after the
k-th of the e2e test's milestones: setpoint writes, filling, equilibration, the
inoculation call, the culture); ``cellbatch run --resume`` takes the batch up
again (Held, ``batch.interrupted``, restart) and is killed again, ``--kills-per-batch``
times; then the batch runs to its end. ``--concurrent`` batches go through this at once,
all on one SQLite record, new batches starting until ``--kills`` kills are done. It prints:

- **lost acknowledged entries**: state changes a controller printed (it prints each only
  after its commit) that are not among the entries it appended before it died;
- **non-idempotent steps executed twice**: batches whose inoculation (a method call)
  was intended more than once;
- **verify failures**: chains ``cellbatch ebr verify`` does not find intact;
- batches completed, and batches held for a person (killed between the inoculation's
  intent and its result: whether it happened is for a person to check, by design).

    python -m bench.soak                 # 100 kills, 5 per batch, 4 batches at a time
    python -m bench.soak --kills 20 --kills-per-batch 2
"""

from __future__ import annotations

import argparse
import contextlib
import random
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from ebr import Entry, Store, read_journal
from tests.e2e.conftest import plant_for_unit
from tests.e2e.test_resume import _ASYNCUA_EXIT_RACE, MILESTONES, _held_for_unrecorded_call

ROOT = Path(__file__).resolve().parents[1]
RECIPE = ROOT / "tests" / "controller" / "recipes" / "short-culture.yaml"
CULTURE_MIN = 60  # process minutes: at 2000× a batch runs ~4 s between kills
STEP_TIMEOUT_S = 90
MAX_SEGMENTS = 12
SCALE = ("--time-scale", "2000")


@dataclass
class BatchSoak:
    """What happened to one batch."""

    batch_id: str = ""
    kills: int = 0
    lost: list[tuple[str, str]] = field(default_factory=list)
    final: str = ""
    held_for_person: bool = False
    tracebacks: int = 0
    notes: list[str] = field(default_factory=list)


def _entries(db: str, batch_id: str) -> list[Entry]:
    with Store.open(db, create=False) as store:
        return read_journal(store, batch_id)


Kill = tuple[str, float, float]
"""(milestone line, seconds after it, seconds after the first state line if it never
comes): when to SIGKILL a controller."""


def _segment(
    args: list[str], kill: Kill | None, err_path: Path
) -> tuple[list[str], bool, int | None]:
    """Run one controller process; SIGKILL it as ``kill`` says (None: let it end; a
    process that prints the batch Held is ended there). Returns its printed lines,
    whether it was killed while running, and its exit code."""
    with err_path.open("w") as err:
        proc = subprocess.Popen(
            [sys.executable, "-m", "cellbatch", *args],
            cwd=ROOT,
            stdout=subprocess.PIPE,
            stderr=err,
            text=True,
        )
        watchdog = threading.Timer(STEP_TIMEOUT_S, proc.kill)
        watchdog.start()
        printed: list[str] = []
        killed = False
        timers: list[threading.Timer] = []

        def kill_now() -> None:
            nonlocal killed
            if proc.poll() is None:
                killed = True
                proc.send_signal(signal.SIGKILL)

        def kill_in(seconds: float) -> None:
            timer = threading.Timer(seconds, kill_now)
            timers.append(timer)
            timer.start()

        try:
            assert proc.stdout is not None
            for line in proc.stdout:
                printed.append(line)
                parts = line.split()
                if len(parts) == 4 and parts[1] == "batch" and parts[3] == "Held":
                    proc.kill()  # held: it waits for a person now
                    break
                if len(parts) == 4 and kill is not None:
                    milestone, after, fallback = kill
                    if not timers:
                        kill_in(fallback)  # in case the milestone is already behind
                    if parts[2:] == milestone.split():
                        for timer in timers:
                            timer.cancel()  # the milestone came: kill just after it
                        kill_in(after)
                        kill = None
            proc.wait(10)
        finally:
            watchdog.cancel()
            for timer in timers:
                timer.cancel()
            if proc.poll() is None:
                proc.kill()
                proc.wait(10)
    return printed, killed, proc.returncode


def _acknowledged(printed: list[str]) -> Counter[tuple[str, str]]:
    return Counter((p[2], p[3]) for p in map(str.split, printed) if len(p) == 4)


def soak_batch(index: int, url: str, tmp: Path, db: str, kills: int, seed: int) -> BatchSoak:
    """Start one batch, kill its controller ``kills`` times, then let it end."""
    rng = random.Random(seed * 7919 + index)
    plant = plant_for_unit(tmp / f"plant-{index}.toml", url, f"S-{index + 1:03d}")
    out = BatchSoak()
    seen = 0  # entries of the batch before the current process started
    first = True
    for n in range(MAX_SEGMENTS):
        kill: Kill | None = None
        if out.kills < kills:  # the k-th kill aims at the k-th milestone (inoculation: 4th)
            milestone, (low, high) = MILESTONES[min(out.kills, len(MILESTONES) - 1)]
            kill = (milestone, rng.uniform(low, high), rng.uniform(1.5, 3.0))
        if first:
            args = ["run", str(RECIPE), "--plant", str(plant), "--db", db]
            args += ["--param", f"culture_time={CULTURE_MIN}"]
        else:
            args = ["run", "--resume", out.batch_id, "--plant", str(plant), "--db", db]
        err_path = tmp / f"b{index}-{n}.err"
        printed, killed, rc = _segment(args, kill, err_path)
        if first:
            if not printed or not printed[0].startswith("batch "):
                out.notes.append(f"no batch started: {err_path.read_text()[-300:]}")
                return out
            out.batch_id = printed[0].split()[1]
            first = False
        text = _ASYNCUA_EXIT_RACE.sub("", err_path.read_text())
        out.tracebacks += text.count("Traceback")
        entries = _entries(db, out.batch_id)
        mine = Counter(
            (e.data["element"], e.data["to"])
            for e in entries[seen:]
            if e.kind in ("batch.state", "element.state")
        )
        missing = _acknowledged(printed) - mine
        out.lost += list(missing.elements())
        seen = len(entries)
        out.kills += killed
        states = [e.data["to"] for e in entries if e.kind == "batch.state"]
        out.final = states[-1] if states else ""
        if killed:
            continue
        if out.final == "Complete" or "already ended" in text:
            return out
        if out.final == "Held" and _held_for_unrecorded_call(db, out.batch_id):
            out.held_for_person = True
            return out
        if rc not in (0, None, -9):
            out.notes.append(f"exit {rc}: {text[-300:]}")
        # held for another cause (an instrument silent on a loaded machine): restart
    out.notes.append("did not end within the segment limit")
    return out


def _serve(vessels: list[str], tmp: Path) -> tuple[subprocess.Popen[str], str]:
    plant = tmp / "sim.toml"
    names = ", ".join(f'"{v}"' for v in vessels)
    plant.write_text(
        '[plant]\nname = "soak-sim"\nmode = "simulation"\n'
        '[[simulators]]\nname = "bioreactors"\nkind = "opcua-bioreactor"\n'
        f'listen = "opc.tcp://127.0.0.1:0/cellbatch/soak"\nvessels = [{names}]\n'
        '[[units]]\nname = "S-001"\nclass = "rocking_bioreactor"\n'
        'profile = "rocking_bioreactor_opcua"\n'
        'endpoint = "opc.tcp://127.0.0.1:0/cellbatch/soak"\naddress = { vessel = "S-001" }\n'
    )
    proc = subprocess.Popen(
        [sys.executable, "-m", "cellbatch", "sim", "serve", "--plant", str(plant), *SCALE],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    assert proc.stdout is not None
    _name, url = proc.stdout.readline().split()
    if proc.stdout.readline().strip() != "ready":
        proc.kill()
        raise RuntimeError("simulator did not start")
    return proc, url


def main(argv: list[str] | None = None) -> int:
    """Command line (see the module docstring); exit 1 if any count is not zero."""
    parser = argparse.ArgumentParser(prog="python -m bench.soak", description=__doc__)
    parser.add_argument("--kills", type=int, default=100, help="SIGKILLs in all")
    parser.add_argument("--kills-per-batch", type=int, default=5)
    parser.add_argument("--concurrent", type=int, default=4, help="batches at once")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--keep", type=Path, default=None, help="keep the record here")
    args = parser.parse_args(argv)
    # Batches held for a person end early (fewer kills): new ones start until enough kills.
    most = 2 * -(-args.kills // args.kills_per_batch) + args.concurrent
    vessels = [f"S-{i + 1:03d}" for i in range(most)]
    t0 = time.monotonic()
    results: list[BatchSoak] = []
    lock = threading.Lock()
    state = {"next": 0, "kills": 0, "done": 0}

    def worker(url: str, tmp: Path, db: str) -> None:
        while True:
            with lock:
                if state["kills"] >= args.kills or state["next"] >= most:
                    return
                index = state["next"]
                state["next"] += 1
                # counted ahead, so the workers stop starting batches near the target
                state["kills"] += args.kills_per_batch
            result = soak_batch(index, url, tmp, db, args.kills_per_batch, args.seed)
            with lock:
                state["kills"] += result.kills - args.kills_per_batch
                state["done"] += result.kills
                if not result.batch_id or (not result.kills and result.notes):
                    state["next"] = most  # the instruments stopped answering: stop there
                results.append(result)
                print(
                    f"batch {len(results):>3} {result.batch_id}: {result.kills} kills, "
                    f"{result.final}{' (held for a person)' if result.held_for_person else ''}"
                    f"{'; ' + '; '.join(result.notes) if result.notes else ''}"
                    f"  [{state['done']} kills done]",
                    flush=True,
                )

    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = args.keep or Path(tmp_name)
        tmp.mkdir(parents=True, exist_ok=True)
        db = f"sqlite:///{tmp / 'soak.sqlite'}"
        Store.open(db).close()
        sim, url = _serve(vessels, tmp)
        try:
            with ThreadPoolExecutor(args.concurrent) as pool:
                for future in [pool.submit(worker, url, tmp, db) for _ in range(args.concurrent)]:
                    future.result()
        finally:
            sim.terminate()
            with contextlib.suppress(subprocess.TimeoutExpired):
                sim.wait(10)
        verify = subprocess.run(
            [sys.executable, "-m", "cellbatch", "ebr", "verify", "--db", db],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
        )
        ids = [r.batch_id for r in results if r.batch_id]
        verify_failures = sum(1 for b in ids if f"{b}: intact" not in verify.stdout)
        twice = 0
        for batch_id in ids:
            kinds = [e.kind for e in _entries(db, batch_id)]
            twice += kinds.count("method.intent") > 1
    kills = sum(r.kills for r in results)
    lost = sum(len(r.lost) for r in results)
    print(f"kills (SIGKILL of a running controller): {kills}")
    print(
        f"batches: {len(ids)}, completed {sum(r.final == 'Complete' for r in results)}, "
        f"held for a person {sum(r.held_for_person for r in results)}"
    )
    print(f"lost acknowledged entries: {lost}")
    print(f"non-idempotent steps executed twice: {twice}")
    print(f"verify failures: {verify_failures}")
    print(f"tracebacks in controller output: {sum(r.tracebacks for r in results)}")
    print(f"wall time: {time.monotonic() - t0:.0f} s")
    return 1 if lost or twice or verify_failures else 0


if __name__ == "__main__":
    sys.exit(main())
