"""Kill test: a batch is killed with SIGKILL at random moments and resumed each time.

Every run completes, the record verifies, and the inoculation (not idempotent)
is executed exactly once. The simulator runs in its own process, as a real
instrument would, and keeps running while the controller is dead.
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.e2e.conftest import ROOT, plant_for_unit

SHORT = ROOT / "tests" / "controller" / "recipes" / "short-culture.yaml"
KILLS = int(os.environ.get("CELLBATCH_KILLS", "4"))


def cellbatch(*args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "controller", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


@pytest.mark.parametrize("attempt", range(KILLS))
def test_sigkill_then_resume_completes(served_url: str, tmp_path: Path, attempt: int) -> None:
    rng = random.Random(1000 + attempt)
    assert attempt < 24, "one fresh vessel per attempt: raise SERVED_VESSELS for more kills"
    plant = plant_for_unit(tmp_path / "plant.toml", served_url, f"K-{attempt + 1:02d}")
    db = f"sqlite:///{tmp_path / 'kill.sqlite'}"
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "controller",
            "run",
            str(SHORT),
            "--plant",
            str(plant),
            "--db",
            db,
            "--param",
            "culture_time=60",
        ],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    batch_id = proc.stdout.readline().strip().removeprefix("batch ")
    time.sleep(rng.uniform(0.2, 4.0))  # the batch takes ~5 s at 2000×
    proc.send_signal(signal.SIGKILL)
    proc.wait(10)

    resumed = cellbatch("run", "--resume", batch_id, "--plant", str(plant), "--db", db)
    already_done = "already ended (Complete)" in resumed.stderr
    assert resumed.returncode == 0 or already_done, resumed.stdout + resumed.stderr
    assert "Traceback" not in resumed.stderr

    verify = cellbatch("ebr", "verify", batch_id, "--db", db)
    assert verify.returncode == 0, verify.stderr
    export = json.loads(cellbatch("ebr", "export", batch_id, "--format", "json", "--db", db).stdout)
    journal = export["journal"]
    states = [e["data"]["to"] for e in journal if e["kind"] == "batch.state"]
    assert states[-1] == "Complete"
    assert sum(e["kind"] == "method.intent" for e in journal) == 1, "inoculated exactly once"
    if not already_done:
        assert any(e["kind"] == "batch.interrupted" for e in journal)
        restored = [e for e in journal if e["kind"] == "batch.restored"]
        assert restored and restored[0]["data"]["state"] == "Held"
    # The culture phase ran its full hour of process time, whatever the interruption.
    runs = [
        e
        for e in journal
        if e["kind"] == "element.state" and e["data"]["element"] == "culture/grow/culture"
    ]
    assert runs[-1]["data"]["to"] == "Complete"
