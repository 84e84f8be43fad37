"""`cellbatch run --asset-override QA_USER --reason TEXT` and the OPC UA `StartOverride`:
a unit out of calibration refuses the start; only a QA account may override it, signed
and journaled (R8)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from cellbatch.service_client import call
from ebr import Store, read_journal
from ebr.people.users import Directory
from recipes import load_recipe
from tests.e2e.conftest import plant_for_unit
from tests.e2e.test_service import Serve, free_port
from tests.ebr.test_users import ADMIN_PW, FAST_HASHER, PW, ready_user

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parents[2]
SHORT = ROOT / "tests" / "controller" / "recipes" / "short-culture.yaml"


def _cellbatch(*args: str, password: str | None = None) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CELLBATCH_")}
    if password is not None:
        env["CELLBATCH_VERIFIER_PASSWORD"] = password
    return subprocess.run(
        [sys.executable, "-m", "cellbatch", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
        stdin=subprocess.DEVNULL,
    )


def _overdue_plant_and_people(served_url: str, tmp_path: Path, vessel: str) -> tuple[Path, str]:
    """A plant whose one unit is overdue for calibration; a store with olga (operator)
    and quinn (qa)."""
    plant = plant_for_unit(tmp_path / "asset.toml", served_url, vessel)
    with plant.open("a") as f:
        f.write(
            'asset = { id = "EQ-0901", serial = "SN-77", calibration_due = 2020-01-31, '
            'qualification = "qualified" }\n'
        )
    url = f"sqlite:///{tmp_path / 'asset.sqlite'}"
    store = Store.open(url)
    people = Directory(store, hasher=FAST_HASHER)
    people.init("admin", "Site Admin", ADMIN_PW)
    ready_user(people, "olga", "operator")
    ready_user(people, "quinn", "qa")
    store.close()
    return plant, url


def test_run_asset_override_is_qa_only_signed_and_journaled(
    served_url: str, tmp_path: Path
) -> None:
    plant, url = _overdue_plant_and_people(served_url, tmp_path, "ASSET-01")
    base = ("run", str(SHORT), "--plant", str(plant), "--db", url, "--param", "culture_time=30")

    refused = _cellbatch(*base)
    assert refused.returncode == 1
    assert "refused by ASSET-STATUS" in refused.stderr and "EQ-0901" in refused.stderr
    assert "overdue" in refused.stderr and "Traceback" not in refused.stderr

    no_reason = _cellbatch(*base, "--asset-override", "quinn", password=PW)
    assert no_reason.returncode == 2 and "--reason" in no_reason.stderr

    operator = _cellbatch(*base, "--asset-override", "olga", "--reason", "urgent", password=PW)
    assert operator.returncode == 1, operator.stdout + operator.stderr
    assert "refused by SOD-ROLE" in operator.stderr and "Traceback" not in operator.stderr
    store = Store.open(url)
    try:
        site = [e for e in read_journal(store, "@site") if e.kind == "user.refused"]
        assert site[-1].data["rule"] == "SOD-ROLE"
        assert site[-1].data["action"] == "cellbatch run --asset-override"
    finally:
        store.close()

    ok = _cellbatch(
        *base, "--asset-override", "quinn", "--reason", "cal. extended, CC-77", password=PW
    )
    assert ok.returncode == 0, ok.stdout + ok.stderr
    batch_id = ok.stdout.splitlines()[0].removeprefix("batch ")
    store = Store.open(url)
    try:
        entries = read_journal(store, batch_id)
    finally:
        store.close()
    override = next(e for e in entries if e.kind == "asset.override")
    assert override.data["user"] == "quinn" and override.data["reason"] == "cal. extended, CC-77"
    assert "EQ-0901" in override.data["bypassed"][0]
    signature = next(e for e in entries if e.kind == "signature")
    assert signature.data["subject"]["seq"] == override.seq
    assert json.dumps(signature.data["meaning"]) == '"approved"'


async def test_opcua_start_override_is_qa_only_signed_and_journaled(
    served_url: str, tmp_path: Path
) -> None:
    plant, url = _overdue_plant_and_people(served_url, tmp_path, "ASSET-02")
    endpoint = f"opc.tcp://127.0.0.1:{free_port()}"
    serve = Serve(plant, tmp_path / "asset.sqlite", endpoint)
    try:
        args = (load_recipe(SHORT).content_hash, '{"culture_time": 30}', "COI-AO-2", "olga", "")
        plain = await call(endpoint, "Start", *args)
        assert not plain["ok"] and "refused by ASSET-STATUS" in plain["message"]
        by_operator = await call(endpoint, "StartOverride", *args, "olga", PW, "urgent")
        assert not by_operator["ok"] and "refused by SOD-ROLE" in by_operator["message"]
        wrong = await call(endpoint, "StartOverride", *args, "quinn", "nope", "urgent")
        assert not wrong["ok"]
        started = await call(endpoint, "StartOverride", *args, "quinn", PW, "cal. extended")
        assert started["ok"], started
    finally:
        assert serve.end(signal.SIGTERM) == 0
    store = Store.open(url)
    try:
        refused = [e for e in read_journal(store, "@site") if e.kind == "user.refused"]
        assert refused[-1].data["rule"] == "SOD-ROLE"
        entries = read_journal(store, started["batch_id"])
    finally:
        store.close()
    override = next(e for e in entries if e.kind == "asset.override")
    assert override.data["user"] == "quinn" and override.data["reason"] == "cal. extended"
    signature = next(e for e in entries if e.kind == "signature")
    assert signature.data["subject"]["seq"] == override.seq
