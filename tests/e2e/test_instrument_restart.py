"""End to end: `cellbatch sim serve --faults FILE` restarts the bioreactor mid-batch
(gone for a moment, back with its default setpoints) while `cellbatch run` drives a
culture on it. The run completes; the console tells the outage; the record holds the
outage with its duration and the re-asserted setpoints; `ebr verify` passes."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from drivers.profile import PROFILE_DIR
from ebr import Store, read_journal
from tests.e2e.conftest import ROOT

pytestmark = [pytest.mark.e2e, pytest.mark.slow]
RECIPE = ROOT / "tests" / "controller" / "recipes" / "setpoints-hold.yaml"


def test_simulator_restart_mid_batch(tmp_path: Path) -> None:
    sim_plant = tmp_path / "sim.toml"
    sim_plant.write_text(
        '[plant]\nname = "sim"\nmode = "simulation"\n'
        '[[simulators]]\nname = "bioreactors"\nkind = "opcua-bioreactor"\n'
        'listen = "opc.tcp://127.0.0.1:0/cellbatch/rs"\nvessels = ["RS-01"]\n'
        '[[units]]\nname = "RS-01"\nclass = "rocking_bioreactor"\n'
        'profile = "rocking_bioreactor_opcua"\n'
        'endpoint = "opc.tcp://127.0.0.1:0/cellbatch/rs"\naddress = { vessel = "RS-01" }\n'
    )
    faults = tmp_path / "faults.toml"
    # 10 wall s after ready: past `cellbatch run`'s start and connect on a loaded machine
    # (a restart during the connect refuses the run), inside the 24 s hold (x300)
    faults.write_text(
        '[[fault]]\nsimulator = "bioreactors"\nkind = "restart"\ndowntime_s = 1.0\nat = 10.0\n'
    )
    # a link judged failed only after 60 s: the restart alone must not hold the batch
    profile = tmp_path / "br.toml"
    profile.write_text(
        (PROFILE_DIR / "rocking_bioreactor_opcua.toml")
        .read_text(encoding="utf-8")
        .replace(
            'protocol = "opcua"\n',
            'protocol = "opcua"\nstatus_fail_after_s = 60\nreconnect_backoff_max_s = 0.5\n',
        ),
        encoding="utf-8",
    )
    server = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "cellbatch",
            "sim",
            "serve",
            "--plant",
            str(sim_plant),
            "--time-scale",
            "300",
            "--faults",
            str(faults),
        ],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert server.stdout is not None
        _name, url = server.stdout.readline().split()
        assert server.stdout.readline().strip() == "ready"
        run_plant = tmp_path / "run.toml"
        run_plant.write_text(
            '[plant]\nname = "served"\nmode = "simulation"\n'
            '[[units]]\nname = "RS-01"\nclass = "rocking_bioreactor"\n'
            f'profile = "br.toml"\nendpoint = "{url}"\naddress = {{ vessel = "RS-01" }}\n'
        )
        db = f"sqlite:///{tmp_path / 'rs.sqlite'}"
        run = subprocess.run(
            [
                sys.executable,
                "-m",
                "cellbatch",
                "run",
                str(RECIPE),
                "--plant",
                str(run_plant),
                "--db",
                db,
            ],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=180,
        )
        assert run.returncode == 0, run.stderr
        batch_id = run.stdout.splitlines()[0].split()[1]
        assert "instrument RS-01 link lost since" in run.stdout
        assert "instrument RS-01 link regained after" in run.stdout
        assert "instrument RS-01 restarted (server start time changed from " in run.stdout
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
        finally:
            store.close()
        kinds = [e.kind for e in entries]
        assert kinds.count("instrument.lost") == 1 and kinds.count("instrument.restored") == 1
        restored = next(e.data for e in entries if e.kind == "instrument.restored")
        assert restored["down_process_s"] > 0
        restarted = next(e.data for e in entries if e.kind == "instrument.restarted")
        assert restarted["policy"] == "reassert" and restarted["differs"]
        reasserted = {
            e.data["capability"]
            for e in entries
            if e.kind == "write.intent" and "restarted" in e.data.get("reason", "")
        }
        # told by the server's new start time: every setpoint written is re-asserted
        assert restarted["reason"].startswith("server start time changed")
        assert reasserted == {"temperature.sp", "ph.sp", "rocking.rate_sp", "volume.sp"}
        states = [e.data["to"] for e in entries if e.kind == "batch.state"]
        assert states[-1] == "Complete" and "Held" not in states
    finally:
        server.terminate()
        server.wait(15)
