"""Unit leases in the store (issue 16): two `cellbatch run` processes on one store bind
different units; with one unit, the second is refused naming the holder; a SIGKILLed
holder's lease is recovered by the next process at once (its pid is gone)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from ebr import Store, read_journal
from tests.e2e.test_service import SHORT

pytestmark = [pytest.mark.e2e, pytest.mark.slow]
ROOT = Path(__file__).resolve().parents[2]


def plant(path: Path, url: str, *vessels: str) -> Path:
    units = "".join(
        f'[[units]]\nname = "{v}"\nclass = "rocking_bioreactor"\n'
        f'profile = "rocking_bioreactor_opcua"\nendpoint = "{url}"\n'
        f'address = {{ vessel = "{v}" }}\n'
        for v in vessels
    )
    path.write_text(f'[plant]\nname = "leases"\nmode = "simulation"\n{units}')
    return path


@contextmanager
def running(plant_file: Path, db: Path) -> Iterator[subprocess.Popen[str]]:
    """A `cellbatch run` of a long culture (Ctrl-C at the end holds it)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("CELLBATCH_")}
    proc = subprocess.Popen(
        [sys.executable, "-m", "cellbatch", "run", str(SHORT), "--plant", str(plant_file),
         "--db", f"sqlite:///{db}", "--simulated-operator", "--param", "culture_time=2880"],
        cwd=ROOT, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
        stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        yield proc
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGINT)
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(10)


def first_line(proc: subprocess.Popen[str]) -> str:
    assert proc.stdout is not None
    line = proc.stdout.readline().strip()
    if not line:
        assert proc.stderr is not None
        proc.wait(30)
        return "exit: " + proc.stderr.read()
    return line


def unit_of(db: Path, batch_id: str) -> str:
    with Store.open(db, create=False) as store:
        created = read_journal(store, batch_id)[0]
    return str(created.data["equipment"]["bioreactor"]["unit"])


def test_two_runs_bind_different_units(served_url: str, tmp_path: Path) -> None:
    two = plant(tmp_path / "two.toml", served_url, "LEASE-01", "LEASE-02")
    db = tmp_path / "leases.sqlite"
    with running(two, db) as first, running(two, db) as second:
        a, b = first_line(first), first_line(second)
        assert a.startswith("batch ") and b.startswith("batch "), (a, b)
        units = {unit_of(db, a.split()[1]), unit_of(db, b.split()[1])}
        assert units == {"LEASE-01", "LEASE-02"}


def test_one_unit_second_run_is_refused_naming_the_holder(served_url: str, tmp_path: Path) -> None:
    one = plant(tmp_path / "one.toml", served_url, "LEASE-01")
    db = tmp_path / "leases.sqlite"
    with running(one, db) as first:
        line = first_line(first)
        assert line.startswith("batch "), line
        with running(one, db) as second:
            refused = first_line(second)
            assert second.wait(30) == 1
        assert refused.startswith("exit: ") and "LEASE-01 is controlled by" in refused, refused
        assert f":{first.pid} (leases)" in refused and "Traceback" not in refused
        first.send_signal(signal.SIGKILL)
        first.wait(10)
    # The holder died: its lease is recovered at once by the next process on this host.
    with running(one, db) as third:
        again = first_line(third)
        assert again.startswith("batch "), again
