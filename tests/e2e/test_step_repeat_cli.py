"""`cellbatch batch step ID PATH --repeat --reason TEXT` on a GMP plant (R7): only a
supervisor repeats a held phase, with a reason, signed; the phase runs again from its
start on restart (`step.repeat_ended`) and `ebr review` lists the repeat as an
exception."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import time
from pathlib import Path

import pytest
from click.testing import CliRunner

from cellbatch.cli import cli
from cellbatch.service_client import call
from ebr import Store, read_journal
from ebr.people.users import Directory
from tests.e2e.conftest import plant_for_unit
from tests.e2e.test_service import SHORT, Serve, free_port, wait_state
from tests.ebr.test_users import ADMIN_PW, FAST_HASHER, PW, ready_user

pytestmark = pytest.mark.e2e


def _cellbatch(db: Path, *args: str) -> tuple[int, str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CELLBATCH_")}
    env |= {"CELLBATCH_DB": f"sqlite:///{db}", "CELLBATCH_PASSWORD": PW}
    result = CliRunner().invoke(cli, list(args), env=env, catch_exceptions=False)
    assert "Traceback" not in result.stderr, result.stderr
    return result.exit_code, result.stdout, result.stderr


def _running_phase(endpoint: str, batch_id: str) -> str:
    """The first phase of the batch seen running (bounded wait)."""
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        shown = asyncio.run(call(endpoint, "Show", batch_id))
        phases = [a.split()[0] for a in shown["active"] if a.count("/") == 2]
        if phases:
            return phases[0]
        time.sleep(0.05)
    raise AssertionError(f"{batch_id}: no phase running within 30 s")


def _wait_gone(endpoint: str, batch_id: str, phase: str) -> None:
    """Wait (bounded) until `phase` is no longer active in the batch."""
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        shown = asyncio.run(call(endpoint, "Show", batch_id))
        if not any(a.split()[0] == phase for a in shown["active"]):
            return
        time.sleep(0.05)
    raise AssertionError(f"{batch_id}: {phase} still active after 30 s")


def test_only_a_supervisor_repeats_a_held_phase_with_a_reason(
    served_url: str, tmp_path: Path
) -> None:
    plant = plant_for_unit(tmp_path / "gmp.toml", served_url, "REPEAT-01")
    plant.write_text(plant.read_text().replace('mode = "simulation"', 'mode = "gmp"'))
    db = tmp_path / "repeat.sqlite"
    store = Store.open(f"sqlite:///{db}")
    people = Directory(store, hasher=FAST_HASHER)
    people.init("admin", "Site Admin", ADMIN_PW)
    for name, role in (("olga", "operator"), ("sam", "supervisor"), ("quinn", "qa")):
        ready_user(people, name, role)
    store.close()
    recipes = tmp_path / "recipes"
    recipes.mkdir()
    recipe = recipes / "short.yaml"
    recipe.write_text(SHORT.read_text().replace("status: draft", "status: approved"))
    code, _out, err = _cellbatch(db, "recipe", "approve", str(recipe), "--user", "quinn")
    assert code == 0, err
    endpoint = f"opc.tcp://127.0.0.1:{free_port()}"
    serve = Serve(plant, db, endpoint, recipes=(recipes,))
    try:
        at = ("--endpoint", endpoint)
        code, out, err = _cellbatch(db, "batch", "start", str(recipe), "--coi", "C-R1",
                                    "--user", "olga", *at)  # fmt: skip
        assert code == 0, err
        batch_id = out.split()[-1]
        phase = _running_phase(endpoint, batch_id)
        code, _out, err = _cellbatch(db, "batch", "hold", batch_id, "--reason", "bag check",
                                     "--user", "olga", *at)  # fmt: skip
        assert code == 0, err
        assert wait_state(endpoint, batch_id, {"Held"}) == "Held"
        shown = asyncio.run(call(endpoint, "Show", batch_id))
        assert f"{phase} Held" in shown["active"], shown["active"]
        step = ("batch", "step", batch_id, phase, "--repeat")
        code, _out, err = _cellbatch(db, *step, "--reason", "redo", "--user", "olga", *at)
        assert code == 1 and "refused by SOD-ROLE" in err and "supervisor" in err, err
        code, _out, err = _cellbatch(db, *step, "--reason", " ", "--user", "sam", *at)
        assert code == 1 and "refused by REASON-REQUIRED" in err, err
        code, out, err = _cellbatch(db, *step, "--reason", "bag moved, DEV-21", "--user", "sam",
                                    *at)  # fmt: skip
        assert code == 0 and "repeat" in out and "accepted" in out, err
        code, _out, err = _cellbatch(db, "batch", "restart", batch_id, "--reason", "bag fixed",
                                     "--user", "olga", *at)  # fmt: skip
        assert code == 0, err
        # A GMP plant runs on real time: once the repeated phase has run again and the
        # procedure moved on, the batch is aborted.
        _wait_gone(endpoint, batch_id, phase)
        code, _out, err = _cellbatch(db, "batch", "abort", batch_id, "--reason", "end of test",
                                     "--user", "sam", *at)  # fmt: skip
        assert code == 0, err
        assert wait_state(endpoint, batch_id, {"Aborted"}) == "Aborted"
    finally:
        assert serve.end(signal.SIGTERM) == 0
    store = Store.open(f"sqlite:///{db}")
    try:
        entries = read_journal(store, batch_id)
    finally:
        store.close()
    repeat = next(e for e in entries if e.kind == "step.repeated")
    assert repeat.data["element"] == phase and repeat.data["user"] == "sam"
    signature = next(e for e in entries if e.kind == "signature" and e.seq > repeat.seq)
    assert signature.data["subject"]["seq"] == repeat.seq
    assert any(e.kind == "step.repeat_ended" and e.data["outcome"] == "complete" for e in entries)
    refused = [e.data["rule"] for e in entries if e.kind == "command.refused"]
    assert refused == ["REASON-REQUIRED"]  # SOD-ROLE is refused before the batch (site chain)
    code, out, err = _cellbatch(db, "ebr", "review", batch_id, "--json")
    assert code == 0, err
    found = [x for x in json.loads(out)["exceptions"] if x["rule"] == "override"]
    assert [(x["severity"], x["element"]) for x in found if "step.repeated" in x["title"]] == [
        ("critical", phase)
    ]
