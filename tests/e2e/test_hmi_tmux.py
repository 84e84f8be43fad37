"""`cellbatch hmi` in a real terminal: tmux runs it at 80×24, the test types keys and
reads the pane, as an operator would see it. Through a running controller: an alarm
shows up, the operator holds the batch with a reason (shown as its WHY), acknowledges
the alarm (it stays listed, acknowledged by them), restarts with a reason and answers
the prompt in its form; with the controller gone the screen says UNREACHABLE and marks
the values STALE, and clears that once the controller is back.

The restart permissive (refused while an action alarm is unacknowledged) is driven at
the terminal by test_hmi_permissive.py. Skipped when tmux is not installed."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from ebr import Store, read_journal
from tests.e2e.test_service import PROMPTS, ROOT, Serve, cellbatch
from tests.e2e.test_service import setup as setup  # the fixture

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.slow,
    pytest.mark.skipif(shutil.which("tmux") is None, reason="tmux is not installed"),
]


class Pane:
    """One tmux session on a private server, 80×24, running a command."""

    def __init__(self, command: list[str]) -> None:
        self.socket = f"cellbatch-test-{os.getpid()}"
        self.tmux("new-session", "-d", "-s", "hmi", "-x", "80", "-y", "24", *command)

    def tmux(self, *args: str) -> str:
        done = subprocess.run(
            ["tmux", "-L", self.socket, *args], capture_output=True, text=True, timeout=20
        )
        assert done.returncode == 0, done.stderr
        return done.stdout

    def screen(self) -> str:
        return self.tmux("capture-pane", "-p", "-t", "hmi")

    def keys(self, *keys: str) -> None:
        """Named keys (Enter, Escape) or single characters, one at a time."""
        for key in keys:
            self.tmux("send-keys", "-t", "hmi", key)
            time.sleep(0.15)

    def type(self, text: str) -> None:
        """Literal text, a character at a time (as typed)."""
        for char in text:
            self.tmux("send-keys", "-t", "hmi", "-l", char)
            time.sleep(0.05)

    def wait(self, *texts: str, limit_s: float = 40) -> str:
        """The screen once it shows every one of `texts` (one-line matches)."""
        deadline = time.monotonic() + limit_s
        screen = ""
        while time.monotonic() < deadline:
            screen = self.screen()
            if all(t in screen for t in texts):
                return screen
            time.sleep(0.3)
        raise AssertionError(f"the pane did not show {texts}:\n{screen}")

    def close(self) -> None:
        subprocess.run(["tmux", "-L", self.socket, "kill-server"], capture_output=True, timeout=20)


def alarm_and_prompt_recipe(folder: Path) -> Path:
    """The prompts recipe with a pH monitor whose alert band (7.5–7.9) excludes the
    vessel's pH: an alert alarm is raised a minute of process time after the start."""
    text = PROMPTS.read_text().replace(
        "procedure:\n",
        "monitors:\n"
        "  - name: ph\n    unit: bioreactor\n    tag: ph.pv\n    engineering_unit: pH\n"
        "    alert: {low: 7.5, high: 7.9}\n    action: {low: 6.0, high: 8.5}\n"
        "    delay: 1 min\n    on_action: alarm\n"
        "procedure:\n",
        1,
    )
    recipe = folder / "alarm-prompts.yaml"
    recipe.write_text(text)
    return recipe


@pytest.fixture
def pane_factory() -> Iterator[list[Pane]]:
    panes: list[Pane] = []
    yield panes
    for pane in panes:
        pane.close()


def test_an_operator_at_an_80x24_terminal(
    setup: tuple[Path, Path, str], tmp_path: Path, pane_factory: list[Pane]
) -> None:
    plant, db, endpoint = setup
    at = ("--endpoint", endpoint, "--user", "olga")
    recipe = alarm_and_prompt_recipe(tmp_path)  # in the controller's library before it starts
    serve = Serve(plant, db, endpoint, recipes=(tmp_path,))
    try:
        started = cellbatch("batch", "start", str(recipe), *at)
        assert started.returncode == 0, started.stderr
        batch_id = started.stdout.split()[-1]
        hmi = [sys.executable, "-m", "cellbatch", "hmi", *at]
        pane = Pane(["env", f"PYTHONPATH={ROOT}", *hmi])
        pane_factory.append(pane)
        pane.wait("ONLINE", batch_id, "RUNNING", "q quit")
        pane.keys("2")
        pane.wait("#", "ALERT ph", "NOT ACKNOWLEDGED", "1 alarm(s)")
        # Hold: a reason is required, then it is the batch's WHY.
        pane.keys("h")
        pane.wait("HOLD " + batch_id, "Reason (required)")
        pane.keys("Enter")
        pane.wait("A reason is required to hold")
        pane.type("bag check")
        pane.keys("Enter")
        pane.wait("hold accepted", "WHY: hold by olga: bag check", "HELD")
        # Acknowledge: it stays listed, now with who acknowledged it.
        pane.keys("k")
        pane.type("probe ok")
        pane.keys("Enter")
        pane.wait("acknowledged by olga", "0 to acknowledge")
        # Restart with a reason; the WHY goes.
        pane.keys("r")
        pane.wait("RESTART " + batch_id)
        pane.type("bag ok")
        pane.keys("Enter")
        screen = pane.wait("restart accepted", "RUNNING")
        assert "WHY:" not in screen
        # The prompt in its form.
        pane.keys("3")
        pane.wait("n answers", "confirm_bag", "done: choice, one of done")
        pane.keys("n")
        pane.wait("PROMPT bench/receive/confirm_bag")
        pane.type("done")
        pane.keys("Enter")
        pane.wait("bench/receive/confirm_bag: answered")
        screen = pane.wait("bench/receive/scan", "scan: text")
        assert "scan: text, e.g." not in screen  # the expected ID is never shown
        # The controller goes away: UNREACHABLE, values STALE; back: cleared.
        serve.end(signal.SIGKILL)
        pane.wait("UNREACHABLE", "CONTROLLER UNREACHABLE", "values are STALE")
        serve = Serve(plant, db, endpoint, recipes=(tmp_path,))
        screen = pane.wait("ONLINE", "HELD", limit_s=60)
        assert "CONTROLLER UNREACHABLE" not in screen and "STALE" not in screen
        for line in screen.splitlines():
            assert len(line) <= 80
        pane.keys("q")
    finally:
        assert serve.end(signal.SIGTERM) == 0
    with Store.open(f"sqlite:///{db}") as store:
        entries = read_journal(store, batch_id)
    commands = [(e.data["command"], e.data["reason"]) for e in entries
                if e.kind == "command.accepted" and e.data["user"] == "olga"]  # fmt: skip
    assert commands == [("hold", "bag check"), ("restart", "bag ok")]
    acks = [e.data for e in entries if e.kind == "alarm.acknowledged"]
    assert [(a["user"], a["comment"]) for a in acks] == [("olga", "probe ok")]
    answered = [e.data for e in entries if e.kind == "prompt.answered"]
    assert answered[0]["user"] == "olga" and answered[0]["values"] == {"done": "done"}
