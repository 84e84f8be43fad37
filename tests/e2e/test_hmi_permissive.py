"""The restart permissive at a real terminal: `cellbatch hmi` in tmux at 80×24.

A pH probe spikes beyond its action limit (a fault scheduled in `cellbatch sim serve`,
so the value really comes back later). The operator holds the batch with a reason; a
restart is refused while the action alarm is unacknowledged (the refusal is shown whole,
naming the rule); once the probe reads true again the alarm clears, the operator
acknowledges it, restarts, and answers the batch's first prompt in its form.
Skipped when tmux is not installed."""

from __future__ import annotations

import shutil
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from ebr import Store, read_journal
from tests.e2e.conftest import plant_for_unit
from tests.e2e.test_hmi_tmux import Pane
from tests.e2e.test_service import PROMPTS, ROOT, Serve, cellbatch, free_port

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.slow,
    pytest.mark.skipif(shutil.which("tmux") is None, reason="tmux is not installed"),
]

VESSEL = "PERMIT-01"
SPIKE_S = 40.0
"""Wall seconds the pH probe reads 9.2 after the simulator is ready."""


@pytest.fixture
def spiking_simulator(tmp_path: Path) -> Iterator[str]:
    """`cellbatch sim serve` of one vessel whose pH probe spikes from the start."""
    plant = tmp_path / "sim.toml"
    plant.write_text(
        '[plant]\nname = "sim"\nmode = "simulation"\n'
        '[[simulators]]\nname = "bioreactors"\nkind = "opcua-bioreactor"\n'
        f'listen = "opc.tcp://127.0.0.1:0/cellbatch/permit"\nvessels = ["{VESSEL}"]\n'
        '[[units]]\nname = "BR-01"\nclass = "rocking_bioreactor"\n'
        'profile = "rocking_bioreactor_opcua"\n'
        'endpoint = "opc.tcp://127.0.0.1:0/cellbatch/permit"\n'
        f'address = {{ vessel = "{VESSEL}" }}\n'
    )
    faults = tmp_path / "faults.toml"
    faults.write_text(
        '[[fault]]\nsimulator = "bioreactors"\nkind = "spike"\n'
        f'target = "{VESSEL}.pH.PV"\nvalue = 9.2\nat = 0\nduration = {SPIKE_S}\n'
    )
    server = subprocess.Popen(
        [sys.executable, "-m", "cellbatch", "sim", "serve", "--plant", str(plant),
         "--time-scale", "2000", "--faults", str(faults)],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert server.stdout is not None
        _name, url = server.stdout.readline().split()
        assert server.stdout.readline().strip() == "ready"
        yield url
    finally:
        server.terminate()
        server.wait(10)


def spike_recipe(folder: Path) -> Path:
    """The prompts recipe with a pH monitor whose action band (6.0–8.5) the spike leaves;
    its action raises an alarm (the operator decides to hold)."""
    text = PROMPTS.read_text().replace(
        "procedure:\n",
        "monitors:\n"
        "  - name: ph\n    unit: bioreactor\n    tag: ph.pv\n    engineering_unit: pH\n"
        "    alert: {low: 6.5, high: 8.0}\n    action: {low: 6.0, high: 8.5}\n"
        "    delay: 1 min\n    on_action: alarm\n"
        "procedure:\n",
        1,
    )
    recipe = folder / "spike-prompts.yaml"
    recipe.write_text(text)
    return recipe


def test_restart_is_refused_until_the_action_alarm_is_acknowledged(
    spiking_simulator: str, tmp_path: Path
) -> None:
    plant = plant_for_unit(tmp_path / "plant.toml", spiking_simulator, VESSEL)
    db = tmp_path / "permit.sqlite"
    endpoint = f"opc.tcp://127.0.0.1:{free_port()}"
    at = ("--endpoint", endpoint, "--user", "olga")
    recipe = spike_recipe(tmp_path)  # in the controller's library before it starts
    serve = Serve(plant, db, endpoint, recipes=(tmp_path,))
    pane: Pane | None = None
    try:
        started = cellbatch("batch", "start", str(recipe), *at)
        assert started.returncode == 0, started.stderr
        batch_id = started.stdout.split()[-1]
        pane = Pane(["env", f"PYTHONPATH={ROOT}", sys.executable, "-m", "cellbatch", "hmi", *at])
        pane.wait("ONLINE", batch_id, "RUNNING")
        pane.keys("2")
        pane.wait("ACTION ph", "NOT ACKNOWLEDGED")
        pane.keys("h")
        pane.wait("HOLD " + batch_id, "Reason (required)")
        pane.type("pH probe")
        pane.keys("Enter")
        pane.wait("hold accepted", "HELD")
        # Restart while the action alarm is unacknowledged: refused, the rule named.
        pane.keys("r")
        pane.wait("RESTART " + batch_id)
        pane.type("try again")
        pane.keys("Enter")
        pane.wait("refused", "PERMISSIVE-ALARM")
        # The probe reads true again: the alarm clears (still listed, unacknowledged).
        pane.wait("cleared", "NOT ACKNOWLEDGED", limit_s=SPIKE_S + 60)
        pane.keys("k")
        pane.type("probe recalibrated")
        pane.keys("Enter")
        pane.wait("acknowledged by olga")
        pane.keys("r")
        pane.wait("RESTART " + batch_id)
        pane.type("probe ok")
        pane.keys("Enter")
        pane.wait("restart accepted", "RUNNING")
        pane.keys("3")
        pane.wait("n answers", "confirm_bag")
        pane.keys("n")
        pane.wait("PROMPT bench/receive/confirm_bag")
        pane.type("done")
        pane.keys("Enter")
        pane.wait("bench/receive/confirm_bag: answered")
        pane.keys("q")
    finally:
        if pane is not None:
            pane.close()
        assert serve.end(signal.SIGTERM) == 0
    with Store.open(f"sqlite:///{db}") as store:
        entries = read_journal(store, batch_id)
    refused = [e.data for e in entries if e.kind == "command.refused"]
    assert any(r.get("rule") == "PERMISSIVE-ALARM" for r in refused), refused
    accepted = [(e.data["command"], e.data["reason"]) for e in entries
                if e.kind == "command.accepted" and e.data["user"] == "olga"]  # fmt: skip
    assert accepted == [("hold", "pH probe"), ("restart", "probe ok")]
