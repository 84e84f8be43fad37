"""`cellbatch controller serve` and `cellbatch batch …`: batches operated over the
controller's OPC UA interface, and crash recovery on start — a SIGKILLed controller,
started again, brings its interrupted batch back Held, and `batch restart` finishes it
with a verifiable record."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from cellbatch.cli import cli
from cellbatch.service_client import call
from ebr import Store, read_journal
from simulators.bioreactor.certs import make_certificates
from tests.e2e.conftest import plant_for_unit

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parents[2]
SHORT = ROOT / "tests" / "controller" / "recipes" / "short-culture.yaml"
PROMPTS = ROOT / "tests" / "controller" / "recipes" / "prompts.yaml"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def cellbatch(*args: str) -> subprocess.CompletedProcess[str]:
    """Run a command in-process (click's runner); `test_no_controller…` runs the real
    console script."""
    result = CliRunner().invoke(cli, list(args), catch_exceptions=False)
    return subprocess.CompletedProcess(args, result.exit_code, result.stdout, result.stderr)


class Serve:
    """A `controller serve` process and the lines it printed before `ready`."""

    def __init__(
        self,
        plant: Path,
        db: Path | str,
        endpoint: str,
        *extra: str,
        recipes: tuple[Path, ...] = (),
    ) -> None:
        """`db`: a SQLite file, or a store URL."""
        library = [arg for folder in (SHORT.parent, *recipes) for arg in ("--recipes", str(folder))]
        url = db if isinstance(db, str) else f"sqlite:///{db}"
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "cellbatch", "controller", "serve", "--plant", str(plant),
             "--db", url, "--listen", endpoint, *library, *extra],
            cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
            stdin=subprocess.DEVNULL,
        )  # fmt: skip
        self.lines: list[str] = []
        assert self.proc.stdout is not None
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            line = self.proc.stdout.readline().strip()
            if not line:
                break
            self.lines.append(line)
            if line == "ready":
                return
        self.proc.kill()
        _out, err = self.proc.communicate(timeout=10)
        raise AssertionError(f"controller serve did not get ready: {self.lines}\n{err[-3000:]}")

    def end(self, sig: int) -> int:
        self.proc.send_signal(sig)
        try:
            return self.proc.wait(30)
        finally:
            if self.proc.poll() is None:
                self.proc.kill()


_SVC_VESSELS = iter(f"SVC-{i:02d}" for i in range(1, 25))
"""A fresh served vessel per test: a vessel takes one inoculation (one batch)."""


@pytest.fixture
def setup(served_url: str, tmp_path: Path) -> Iterator[tuple[Path, Path, str]]:
    """A plant of one unit on a vessel no other test used, a store, a free endpoint."""
    plant = plant_for_unit(tmp_path / "plant.toml", served_url, next(_SVC_VESSELS))
    yield plant, tmp_path / "svc.sqlite", f"opc.tcp://127.0.0.1:{free_port()}"


def listed(endpoint: str) -> list[dict[str, object]]:
    return list(asyncio.run(call(endpoint, "List")))


def wait_state(endpoint: str, batch_id: str, states: set[str], limit_s: float = 60) -> str:
    deadline = time.monotonic() + limit_s
    while time.monotonic() < deadline:
        state = next(str(b["state"]) for b in listed(endpoint) if b["id"] == batch_id)
        if state in states:
            return state
        time.sleep(0.3)
    raise AssertionError(f"{batch_id} not in {states} within {limit_s} s")


def test_batches_over_the_interface_and_recovery_after_sigkill(
    setup: tuple[Path, Path, str],
) -> None:
    plant, db, endpoint = setup
    at = ("--endpoint", endpoint, "--user", "olga")
    serve = Serve(plant, db, endpoint, "--simulated-operator")
    try:
        started = cellbatch("batch", "start", str(SHORT), "--coi", "COI-SVC-1", *at)
        assert started.returncode == 0, started.stderr
        batch_id = started.stdout.split()[-1]
        ok = cellbatch("batch", "hold", batch_id, "--reason", "check the bag", *at)
        assert ok.returncode == 0 and "Held" in ok.stdout, ok.stderr
        again = cellbatch("batch", "hold", batch_id, "--reason", "again", *at)
        assert again.returncode == 1 and "not allowed" in again.stderr
        bare = cellbatch("batch", "restart", batch_id, *at)
        assert bare.returncode == 1 and "refused by REASON-REQUIRED" in bare.stderr
        unknown = cellbatch("batch", "abort", "NO-SUCH", *at)
        assert unknown.returncode == 1 and "no batch NO-SUCH" in unknown.stderr
        shown = json.loads(
            cellbatch("batch", "show", batch_id, "--json", "--endpoint", endpoint).stdout
        )
        assert shown["state"] == "Held" and shown["coi"] == "COI-SVC-1"
        assert shown["why"] == "hold by olga: check the bag"
        assert cellbatch("batch", "restart", batch_id, "--reason", "bag ok", *at).returncode == 0
    finally:
        serve.end(signal.SIGKILL)
    # Started again: the interrupted batch is back, Held, and finishes on restart.
    serve = Serve(plant, db, endpoint, "--simulated-operator")
    try:
        assert f"recovered {batch_id}: Held, waiting for restart" in serve.lines
        assert wait_state(endpoint, batch_id, {"Held"}) == "Held"
        restarted = cellbatch("batch", "restart", batch_id, "--reason", "recovered", *at)
        assert restarted.returncode == 0, restarted.stderr
        assert wait_state(endpoint, batch_id, {"Complete"}) == "Complete"
    finally:
        assert serve.end(signal.SIGTERM) == 0
    assert cellbatch("ebr", "verify", "--db", f"sqlite:///{db}").returncode == 0
    with Store.open(f"sqlite:///{db}") as store:
        entries = read_journal(store, batch_id)
    assert "batch.interrupted" in [e.kind for e in entries]
    assert entries[0].kind == "batch.created" and entries[0].data["user"] == "olga"
    commands = [
        e.data for e in entries if e.kind == "command.accepted" and e.data.get("user") == "olga"
    ]
    assert [c["command"] for c in commands] == ["hold", "restart", "restart"]
    assert all(c["terminal"].startswith("opcua 127.0.0.1:") for c in commands)
    assert all(c["software"].startswith("cellbatch ") and c["user_id"] is None for c in commands)


def test_no_controller_is_a_plain_error() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "cellbatch", "batch", "list", "--endpoint",
         f"opc.tcp://127.0.0.1:{free_port()}"],
        cwd=ROOT, capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL,
    )  # fmt: skip
    assert "Traceback" not in proc.stderr
    assert proc.returncode == 1 and "no controller at" in proc.stderr
    assert os.linesep.join(proc.stderr.splitlines()[:2]).count("\n") <= 1


def test_prompts_are_answered_through_the_interface(setup: tuple[Path, Path, str]) -> None:
    plant, db, endpoint = setup
    at = ("--endpoint", endpoint, "--user", "olga")
    serve = Serve(plant, db, endpoint)
    try:
        started = cellbatch("batch", "start", str(PROMPTS), "--coi", "COI-SVC-2", *at)
        assert started.returncode == 0, started.stderr
        batch_id = started.stdout.split()[-1]
        answers = [
            ("confirm_bag", ["--value", "done=done"]),
            ("scan", ["--value", "scan=COI-SVC-2"]),
            ("cell_count", ["--value", "viable_density=2.5e6", "--value", "viability=93",
                            "--verifier", "vera"]),
        ]  # fmt: skip
        for element, values in answers:
            prompt = wait_shown(endpoint, batch_id, open_prompt(element))
            if element == "cell_count":
                refused = cellbatch("batch", "answer", prompt, *values[:-2], *at)
                assert refused.returncode == 1 and "second person" in refused.stderr
            done = cellbatch("batch", "answer", prompt, *values, *at)
            assert done.returncode == 0, done.stderr
        assert wait_state(endpoint, batch_id, {"Complete"}) == "Complete"
    finally:
        assert serve.end(signal.SIGTERM) == 0
    with Store.open(f"sqlite:///{db}") as store:
        answered = [e.data for e in read_journal(store, batch_id) if e.kind == "prompt.answered"]
    assert [a["user"] for a in answered] == ["olga"] * 3
    assert answered[-1]["verifier"] == "vera" and answered[-1]["values"]["viability"] == 93


def test_alarms_are_acknowledged_through_the_interface(
    setup: tuple[Path, Path, str], tmp_path: Path
) -> None:
    plant, db, endpoint = setup
    recipe = alarming_recipe(tmp_path)
    at = ("--endpoint", endpoint, "--user", "olga")
    serve = Serve(plant, db, endpoint, "--simulated-operator", recipes=(tmp_path,))
    try:
        started = cellbatch(
            "batch", "start", str(recipe), "--param", "culture_time=2880", "--coi", "C-3", *at
        )
        assert started.returncode == 0, started.stderr
        batch_id = started.stdout.split()[-1]
        alarm = wait_shown(endpoint, batch_id, first_open_alarm)
        assert alarm["monitor"] == "ph" and alarm["level"] == "alert"
    finally:
        serve.end(signal.SIGKILL)
    # A controller that died still owes the acknowledgement: recovery reads it back.
    serve = Serve(plant, db, endpoint, "--simulated-operator", recipes=(tmp_path,))
    try:
        assert f"recovered {batch_id}: Held, waiting for restart" in serve.lines
        assert alarm in wait_shown(endpoint, batch_id, lambda shown: shown)["open_alarms"]
        listing = cellbatch("batch", "list", "--endpoint", endpoint).stdout
        assert "alarm(s) to acknowledge" in listing
        seq = str(alarm["seq"])
        done = cellbatch("batch", "ack", batch_id, seq, "--comment", "pH probe checked", *at)
        assert done.returncode == 0 and f"alarm {seq} acknowledged" in done.stdout, done.stderr
        again = cellbatch("batch", "ack", batch_id, seq, *at)
        assert again.returncode == 1 and "not an open alarm" in again.stderr
        shown = json.loads(
            cellbatch("batch", "show", batch_id, "--json", "--endpoint", endpoint).stdout
        )
        assert int(seq) not in [a["seq"] for a in shown["open_alarms"]]
        # The whole alarm list came back from the record: acknowledged, still listed.
        listed_alarms = {a["seq"]: a for a in shown["alarm_list"]}
        assert listed_alarms[int(seq)]["acknowledged_by"] == "olga"
        assert shown["alarms"] == len(shown["alarm_list"])
        assert cellbatch("batch", "stop", batch_id, "--reason", "end of test", *at).returncode == 0
        assert wait_state(endpoint, batch_id, {"Stopped"}) == "Stopped"
    finally:
        assert serve.end(signal.SIGTERM) == 0
    with Store.open(f"sqlite:///{db}") as store:
        acks = [e.data for e in read_journal(store, batch_id) if e.kind == "alarm.acknowledged"]
    assert len(acks) == 1 and acks[0]["alarm"] == int(seq)
    assert acks[0]["user"] == "olga" and acks[0]["comment"] == "pH probe checked"


def alarming_recipe(folder: Path) -> Path:
    """The short culture with its pH alert band above the setpoint, watched from the
    setup on: it raises an alert alarm soon after it starts (whatever the shared vessel
    then does: a vessel inoculated by an earlier test holds the batch at its seed step)."""
    recipe = folder / "alarming.yaml"
    text = (
        SHORT.read_text()
        .replace("alert: {low: 7.0, high: 7.4}", "alert: {low: 7.3, high: 7.4}")
        .replace(
            "on_action: alarm\n    active_from: culture/grow",
            "on_action: alarm\n    active_from: culture/setup",
        )
    )
    assert "active_from: culture/setup" in text
    recipe.write_text(text)
    return recipe


def test_a_secured_interface_takes_only_trusted_terminals(
    setup: tuple[Path, Path, str], tmp_path: Path
) -> None:
    plant, db, endpoint = setup
    pki = tmp_path / "pki"
    certs = make_certificates(pki, untrusted=True)
    assert certs.rogue_cert is not None and certs.rogue_key is not None
    rogue = tmp_path / "rogue"
    rogue.mkdir()
    shutil.copy(certs.rogue_cert, rogue / "client-cert.der")
    shutil.copy(certs.rogue_key, rogue / "client-key.pem")
    shutil.copy(certs.server_cert, rogue / "server-cert.der")
    empty = tmp_path / "empty"
    empty.mkdir()
    refused = subprocess.run(
        [sys.executable, "-m", "cellbatch", "controller", "serve", "--plant", str(plant),
         "--db", f"sqlite:///{db}", "--listen", endpoint, "--pki", str(empty)],
        cwd=ROOT, capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL,
    )  # fmt: skip
    assert refused.returncode == 2 and "no file server-cert.der" in refused.stderr
    assert "Traceback" not in refused.stderr
    serve = Serve(plant, db, endpoint, "--pki", str(pki))
    try:
        trusted = cellbatch("batch", "list", "--endpoint", endpoint, "--pki", str(pki))
        assert trusted.returncode == 0 and trusted.stdout.strip() == "no batches", trusted.stderr
        for who, why in (
            ((), "No matching endpoints"),  # in the clear: no such endpoint is offered
            (("--pki", str(rogue)), "BadCertificateUntrusted"),
        ):
            other = cellbatch("batch", "list", "--endpoint", endpoint, *who)
            assert other.returncode == 1 and why in other.stderr, other.stderr
    finally:
        assert serve.end(signal.SIGTERM) == 0


def wait_shown(
    endpoint: str, batch_id: str, found: Callable[[dict[str, Any]], Any], limit_s: float = 30
) -> Any:
    """Poll `Show` of a batch until `found(shown)` gives something (not None/empty)."""
    deadline = time.monotonic() + limit_s
    shown: dict[str, Any] = {}
    while time.monotonic() < deadline:
        shown = dict(asyncio.run(call(endpoint, "Show", batch_id)))
        if shown.get("ok") and (value := found(shown)):
            return value
        time.sleep(0.2)
    raise AssertionError(f"{batch_id}: not shown within {limit_s} s: {shown}")


def open_prompt(element: str) -> Callable[[dict[str, Any]], str | None]:
    """The ID of the batch's open prompt of `element`, if there is one."""
    return lambda shown: next(
        (str(p["id"]) for p in shown["open_prompts"] if str(p["element"]).endswith(element)),
        None,
    )


def first_open_alarm(shown: dict[str, Any]) -> dict[str, Any] | None:
    """The batch's oldest open alarm, if there is one."""
    return dict(shown["open_alarms"][0]) if shown["open_alarms"] else None
