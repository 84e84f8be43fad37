"""Fail-safe storage (issue 16): the store's file system is full during a batch (the
`cellbatch run` process may not grow any file past a limit: RLIMIT_FSIZE, a real EFBIG
from the kernel on SQLite's writes). The batch is held with the reason, nothing
acknowledged is lost; once space is back the hold is recorded, and a resumed run
completes with a record that verifies."""

from __future__ import annotations

import os
import resource
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from ebr import Store, read_journal, verify_batch
from tests.e2e.conftest import plant_for_unit
from tests.e2e.test_service import SHORT

pytestmark = [pytest.mark.e2e, pytest.mark.slow, pytest.mark.timeout(300)]
ROOT = Path(__file__).resolve().parents[2]


def _limited(limit: int) -> None:
    """In the child: no file may grow past `limit` bytes (EFBIG, not SIGXFSZ)."""
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    resource.setrlimit(resource.RLIMIT_FSIZE, (limit, resource.RLIM_INFINITY))


def test_full_disk_holds_the_batch_and_a_resumed_run_completes(
    served_url: str, tmp_path: Path
) -> None:
    if not hasattr(resource, "prlimit"):
        pytest.skip("resource.prlimit is Linux-only")
    plant = plant_for_unit(tmp_path / "plant.toml", served_url, "LEASE-02")
    db = tmp_path / "full.sqlite"
    Store.open(db).close()
    limit = max(p.stat().st_size for p in tmp_path.glob("full.sqlite*")) + 48 * 1024
    env = {k: v for k, v in os.environ.items() if not k.startswith("CELLBATCH_")}
    env["PYTHONDONTWRITEBYTECODE"] = "1"
    run = [sys.executable, "-m", "cellbatch", "run", "--plant", str(plant),
           "--db", f"sqlite:///{db}", "--simulated-operator"]  # fmt: skip
    proc = subprocess.Popen(
        [*run, str(SHORT), "--param", "culture_time=600"],
        cwd=ROOT, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
        stderr=subprocess.PIPE, text=True, preexec_fn=lambda: _limited(limit),
    )  # fmt: skip
    errors: list[str] = []
    assert proc.stderr is not None and proc.stdout is not None
    reader = threading.Thread(target=lambda: errors.extend(proc.stderr or []), daemon=True)
    reader.start()
    try:
        first = proc.stdout.readline().split()
        assert first[:1] == ["batch"], errors
        batch_id = first[1]
        for _ in range(600):  # until the run reports the full store (bounded)
            if any("cannot commit" in line for line in errors) or proc.poll() is not None:
                break
            time.sleep(0.2)
        assert any("cannot commit" in line for line in errors), "".join(errors)[-2000:]
        assert proc.poll() is None  # still in control, not ended
        resource.prlimit(proc.pid, resource.RLIMIT_FSIZE, (resource.RLIM_INFINITY,) * 2)
        held = []
        for _ in range(600):  # space is back: the hold with its reason gets recorded
            with Store.open(db, create=False) as store:
                held = [
                    e.data
                    for e in read_journal(store, batch_id)
                    if e.kind == "command.accepted" and "cannot commit" in str(e.data.get("reason"))
                ]
            if held:
                break
            time.sleep(0.2)
        assert held and held[0]["command"] == "hold"
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGINT)
            try:
                proc.wait(60)
            except subprocess.TimeoutExpired:
                proc.kill()
    resumed = subprocess.run(
        [*run, "--resume", batch_id], cwd=ROOT, env=env, stdin=subprocess.DEVNULL,
        capture_output=True, text=True, timeout=110,
    )  # fmt: skip
    with Store.open(db, create=False) as store:
        assert verify_batch(store, batch_id).ok
        states = [
            e.data.get("to") for e in read_journal(store, batch_id) if e.kind == "batch.state"
        ]
    assert "Traceback" not in resumed.stderr and "Traceback" not in "".join(errors)
    assert resumed.returncode == 0 and states[-1] == "Complete", resumed.stderr[-2000:]
