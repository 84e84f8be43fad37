"""End to end: the Modbus cell processor simulator's *process* is killed mid-batch and
started again on the same port, in its power-on state (default volumes), while
`cellbatch run` drives a batch on it. The run completes; the console tells the outage
and the restart; the record holds the outage with its duration and the re-asserted
volumes (found by reading them back: Modbus has no start time); review's `comm_loss`
gives the outage's duration; `ebr verify` passes."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest

from drivers.profile import PROFILE_DIR
from ebr import Store, read_journal
from ebr.review import load_rules, review
from tests.e2e.conftest import ROOT

pytestmark = [pytest.mark.e2e, pytest.mark.slow]
RECIPE = ROOT / "tests" / "controller" / "recipes" / "processor-hold.yaml"
SCALE = "600"
CLI = (sys.executable, "-m", "cellbatch")


def serve_processor(port: int) -> tuple[subprocess.Popen[str], str]:
    """The cell processor simulator in a process of its own: (process, endpoint)."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "simulators.centrifuge", "--port", str(port), "--time-scale", SCALE],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    words = proc.stdout.readline().split()
    assert words[:1] == ["serving"], words
    return proc, words[1]


def test_modbus_simulator_process_killed_and_restarted_mid_batch(tmp_path: Path) -> None:
    sim, endpoint = serve_processor(0)
    port = int(endpoint.rsplit(":", 1)[1])
    # an outage from 0.3 s (the process is away ≥ 1 s), judged failed only after 60 s:
    # the restart alone must not hold the batch
    profile = tmp_path / "cp.toml"
    profile.write_text(
        (PROFILE_DIR / "cell_processor_modbus.toml")
        .read_text(encoding="utf-8")
        .replace(
            'protocol = "modbus"\n',
            'protocol = "modbus"\nstatus_blip_s = 0.3\nstatus_fail_after_s = 60\n'
            "reconnect_backoff_max_s = 0.5\n",
        ),
        encoding="utf-8",
    )
    plant = tmp_path / "run.toml"
    plant.write_text(
        '[plant]\nname = "served"\nmode = "simulation"\n'
        '[[units]]\nname = "CP-01"\nclass = "cell_processor"\n'
        f'profile = "cp.toml"\nendpoint = "{endpoint}"\n'
    )
    db = f"sqlite:///{tmp_path / 'cp.sqlite'}"
    run = subprocess.Popen(
        [*CLI, "run", str(RECIPE), "--plant", str(plant), "--db", db, "--time-scale", SCALE],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert run.stdout is not None
        lines = []
        deadline = time.monotonic() + 60
        while not any("wash/prepare/settle Running" in line for line in lines):
            assert time.monotonic() < deadline and run.poll() is None, lines
            lines.append(run.stdout.readline())
        sim.kill()  # the instrument dies: no goodbye on the socket
        sim.wait(10)
        time.sleep(1.0)
        sim, again = serve_processor(port)
        assert again == endpoint
        out, err = run.communicate(timeout=120)
        assert run.returncode == 0, err
        output = "".join(lines) + out
        batch_id = output.splitlines()[0].split()[1]
        assert "instrument CP-01 link lost since" in output
        assert "instrument CP-01 link regained after" in output
        assert "instrument CP-01 restarted (setpoint read back differs" in output
        verify = subprocess.run(
            [sys.executable, "-m", "cellbatch", "ebr", "verify", batch_id, "--db", db],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert verify.returncode == 0, verify.stdout + verify.stderr
        store = Store.open(db)
        try:
            entries = read_journal(store, batch_id)
            found = [f for f in review(store, batch_id, load_rules()) if f.rule == "comm_loss"]
        finally:
            store.close()
        kinds = [e.kind for e in entries]
        assert kinds.count("instrument.lost") == 1 and kinds.count("instrument.restored") == 1
        restored = next(e.data for e in entries if e.kind == "instrument.restored")
        down = restored["down_process_s"]
        assert down >= 1.0 * float(SCALE)  # at least the second the process was away
        restarted = next(e.data for e in entries if e.kind == "instrument.restarted")
        assert restarted["policy"] == "reassert"
        assert restarted["differs"] == {
            "input_volume.sp": {"written": 300.0, "found": 500.0},
            "final_volume.sp": {"written": 40.0, "found": 50.0},
        }
        reasserted = [
            e
            for e in entries
            if e.kind == "write.intent" and "restarted" in e.data.get("reason", "")
        ]
        assert {e.data["capability"] for e in reasserted} == set(restarted["differs"])
        results = {e.data["intent"]: e.data for e in entries if e.kind == "write.result"}
        assert all(results[e.seq]["ok"] for e in reasserted)
        states = [e.data["to"] for e in entries if e.kind == "batch.state"]
        assert states[-1] == "Complete" and "Held" not in states
        lost = next(f for f in found if f.title.startswith("instrument CP-01 lost for "))
        assert lost.evidence.facts["lost_s"] == down
        assert "instrument CP-01 restarted and lost its setpoints" in [f.title for f in found]
    finally:
        run.kill()
        run.wait(15)
        sim.terminate()
        sim.wait(15)
