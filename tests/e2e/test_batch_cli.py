"""`batch show`, `batch list` and `batch watch` say why a batch is held: a temperature
monitor whose action band excludes the setpoint holds the batch by itself; the terminal
commands name the monitor, tag, value and limit, show the process values and the alarm
list, and `batch watch` streams the changes until the batch ends."""

from __future__ import annotations

import json
import re
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from tests.e2e.test_service import ROOT, SHORT, Serve, cellbatch, wait_state
from tests.e2e.test_service import setup as setup  # the fixture

pytestmark = [pytest.mark.e2e]


def holding_recipe(folder: Path) -> Path:
    """The short culture whose temperature action band (37.5–38) excludes its 37 °C
    setpoint, watched from the setup on: the monitor holds the batch soon after start."""
    recipe = folder / "holding.yaml"
    text = (
        SHORT.read_text()
        .replace("action: {low: 36.0, high: 38.0}", "action: {low: 37.5, high: 38.0}")
        .replace("alert: {low: 36.5, high: 37.5}", "alert: {low: 37.6, high: 37.9}")
        .replace(
            "on_action: hold\n    active_from: culture/grow",
            "on_action: hold\n    active_from: culture/setup",
        )
    )
    assert "active_from: culture/setup" in text and "low: 37.5" in text
    recipe.write_text(text)
    return recipe


def test_show_list_and_watch_say_why(setup: tuple[Path, Path, str], tmp_path: Path) -> None:
    plant, db, endpoint = setup
    at = ("--endpoint", endpoint, "--user", "olga")
    recipe = holding_recipe(tmp_path)  # in the controller's library before it starts
    serve = Serve(plant, db, endpoint, "--simulated-operator", recipes=(tmp_path,))
    watcher = None
    try:
        started = cellbatch("batch", "start", str(recipe), "--coi", "C-W", *at)
        assert started.returncode == 0, started.stderr
        batch_id = started.stdout.split()[-1]
        watcher = subprocess.Popen(
            [sys.executable, "-m", "cellbatch", "batch", "watch", batch_id, "--endpoint",
             endpoint, "--interval", "0.2"],
            cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
            stdin=subprocess.DEVNULL,
        )  # fmt: skip
        assert watcher.stdout is not None
        # The watcher has seen the batch.
        first = watcher.stdout.readline()
        assert wait_state(endpoint, batch_id, {"Held"}) == "Held"
        shown = cellbatch("batch", "show", batch_id, "--endpoint", endpoint)
        assert shown.returncode == 0, shown.stderr
        text = shown.stdout
        why = re.search(r"why: hold by monitor temperature: (\S+) = (\S+) beyond (.+)", text)
        assert why is not None, text
        tag, value, limit = why.groups()
        assert tag == "bioreactor.temperature.pv" and limit == "action limit 37.5"
        assert float(value) < 37.5
        assert "process values:" in text and "bioreactor.temperature  PV " in text
        assert "action 37.5–38" in text and "degC" in text
        assert re.search(r"action temperature: bioreactor.temperature.pv = \S+ beyond 37.5", text)
        assert "alarms: " in text and "to acknowledge" in text
        listing = cellbatch("batch", "list", "--endpoint", endpoint).stdout
        assert f"{batch_id}  Held" in listing and "(hold by monitor temperature" in listing
        as_json = json.loads(cellbatch("batch", "show", batch_id, "--json", "--endpoint",
                                       endpoint).stdout)  # fmt: skip
        assert as_json["why"].startswith("hold by monitor temperature")
        assert as_json["cpps"][0]["eu"] == "degC" and as_json["cpps"][0]["action"] == [37.5, 38.0]
        # Ctrl-C ends a watch (exit 0), the batch goes on.
        interrupted = subprocess.Popen(
            [sys.executable, "-m", "cellbatch", "batch", "watch", batch_id, "--endpoint", endpoint],
            cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
            stdin=subprocess.DEVNULL, preexec_fn=_default_sigint,
        )  # fmt: skip
        assert interrupted.stdout is not None
        assert "state Held" in interrupted.stdout.readline()
        interrupted.send_signal(signal.SIGINT)
        _out, stopped = interrupted.communicate(timeout=30)
        assert interrupted.returncode == 0 and "stopped watching" in stopped
        assert "Traceback" not in stopped
        # Once the watch has printed the hold (it looks every 0.2 s), the batch is aborted.
        for _ in range(50):  # bounded: the watch prints a few lines a look
            if "why: hold by monitor temperature" in first:
                break
            first += watcher.stdout.readline()
        assert cellbatch("batch", "abort", batch_id, "--reason", "end of test", *at).returncode == 0
        # Not communicate(timeout=…): it reads the pipe past the lines readline() has
        # already buffered, and those would be lost.
        watcher.wait(timeout=60)
        out = first + watcher.stdout.read()
        assert watcher.returncode == 0, out
        lines = [line.split("Z  ", 1)[1] for line in out.splitlines()]
        assert lines[0] in ("state Running", "state Held"), out
        # Held is shown with its reason, in the same look (one journal position), and the
        # alarm that held it.
        held = next(i for i, line in enumerate(lines) if line in ("state Holding", "state Held"))
        assert lines[held + 1].startswith("why: hold by monitor temperature"), out
        assert any(line.startswith("ALARM ") and "temperature" in line for line in lines), out
        assert "why: abort by olga: end of test" in lines, out
        assert "state Aborted" in lines[-2:], out
    finally:
        if watcher is not None and watcher.poll() is None:
            watcher.kill()
        assert serve.end(signal.SIGTERM) == 0


def _default_sigint() -> None:
    """A child started from a non-interactive shell may inherit SIGINT ignored."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def test_watch_of_an_unknown_batch_is_refused(setup: tuple[Path, Path, str]) -> None:
    plant, db, endpoint = setup
    serve = Serve(plant, db, endpoint)
    try:
        watched = cellbatch("batch", "watch", "NO-SUCH", "--endpoint", endpoint)
        assert watched.returncode == 1 and "no batch NO-SUCH" in watched.stdout
    finally:
        assert serve.end(signal.SIGTERM) == 0
