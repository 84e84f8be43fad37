"""Issue 14 done-when: a lot of three linked batches (expansion → wash → cryo), run by the
controller over the real simulators, produces a package whose PDF names every batch,
hand-over and signature; the QP's lot release is refused with an open deviation and
accepted after its closure — all through `cellbatch` commands."""

from __future__ import annotations

import asyncio
import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from cellbatch.cli import cli
from controller.isa88 import State
from controller.plant import Plant, UnitConfig
from controller.prompts import PromptBoard, simulated_operator
from controller.session import Controller
from recipes import load_recipe
from simulators.launch import start_simulators

pytestmark = [pytest.mark.e2e, pytest.mark.slow]
ROOT = Path(__file__).resolve().parents[2]
LIBRARY = ROOT / "recipes" / "library"
COI = "COI-2026-LOT-001"
ADMIN_PW = "site-key-2026"
PEOPLE = {"olga": "operator", "quinn": "qa", "petra": "qp", "cleo": "qc"}
UNITS = {  # the unit of each numeric CQA, as the library recipes declare it
    "viable_cell_count": "cells", "viability": "%", "cd3_positive": "%", "recovery": "%",
    "post_thaw_viability": "%", "car_positive": "%", "vcn": "copies/cell", "endotoxin": "EU/mL",
}  # fmt: skip
RESULTS = {  # CQA → (value, outcome) per recipe
    "car-t-expansion": {"viable_cell_count": 4.1e9, "viability": 92.0, "cd3_positive": 97.0},
    "cell-wash-formulate": {"recovery": 88.0, "viability": 90.0},
    "cryopreserve": {
        "post_thaw_viability": 83.0, "car_positive": 31.0, "vcn": 1.8, "endotoxin": 0.5,
        "sterility": "negative", "mycoplasma": "negative",
    },
}  # fmt: skip


def _pw(name: str) -> str:
    return f"{name[0]}-secret-{len(name)}4"


def run(db: Path, *args: str, user: str | None = None, new: str | None = None) -> Any:
    """One `cellbatch` command in-process (no terminal: passwords from the environment)."""
    password = ADMIN_PW if user == "admin" else (_pw(user) if user else None)
    env = {"CELLBATCH_DB": f"sqlite:///{db}", "CELLBATCH_PASSWORD": password,
           "CELLBATCH_NEW_PASSWORD": new}  # fmt: skip
    result = CliRunner().invoke(cli, list(args), env=env, catch_exceptions=False)
    assert "Traceback" not in result.stderr, result.stderr
    return result


def ok(result: Any) -> str:
    assert result.exit_code == 0, result.stderr
    return str(result.stdout)


async def _run_batches(db: Path) -> list[str]:
    """Expansion on an OPC UA bioreactor, then wash and cryo on Modbus/serial instruments."""
    ids: list[str] = []
    expansion = await start_simulators(
        [{"name": "br", "kind": "opcua-bioreactor", "seed": 7, "vessels": ["BR-01"],
          "listen": "opc.tcp://127.0.0.1:0/cellbatch/lot"}], 25000.0,
    )  # fmt: skip
    suite = await start_simulators(
        [
            {"name": "cp", "kind": "modbus-cell-processor", "listen": "modbus+tcp://127.0.0.1:0"},
            {"name": "pump", "kind": "serial-pump", "tubing_ml_per_rev": 0.5},
            {"name": "balance", "kind": "serial-balance"},
            {"name": "freezer", "kind": "modbus-freezer", "listen": "modbus+tcp://127.0.0.1:0"},
        ],
        1000.0,
    )
    try:
        br = UnitConfig("BR-01", "rocking_bioreactor", "rocking_bioreactor_opcua",
                        expansion.endpoints["br"], {"vessel": "BR-01"})  # fmt: skip
        units = (
            UnitConfig("CP-01", "cell_processor", "cell_processor_modbus",
                       suite.endpoints["cp"], {}),
            UnitConfig("P-01", "peristaltic_pump", "peristaltic_pump_serial",
                       suite.endpoints["pump"], {"pump_address": "1"}),
            UnitConfig("BAL-01", "balance", "balance_mtsics", suite.endpoints["balance"], {}),
            UnitConfig("CRF-01", "controlled_rate_freezer", "controlled_rate_freezer_modbus",
                       suite.endpoints["freezer"], {}),
        )  # fmt: skip
        plants = [
            (Plant("expansion", "hub-a", "simulation", 25000.0, (br,), (), "lot-br"),
             ["car-t-expansion"]),
            (Plant("suite", "hub-a", "simulation", 1000.0, units, (), "lot-suite"),
             ["cell-wash-formulate", "cryopreserve"]),
        ]  # fmt: skip
        for plant, recipes in plants:
            board = PromptBoard()
            board.answerer = simulated_operator(board)
            controller = Controller(plant, f"sqlite:///{db}", user="olga", prompts=board)
            await controller.start()
            try:
                for name in recipes:
                    batch = await controller.create_batch(
                        load_recipe(LIBRARY / f"{name}.yaml"), coi=COI
                    )
                    assert await asyncio.wait_for(controller.run(batch), 180) is State.COMPLETE
                    ids.append(batch.control.batch_id)
            finally:
                await controller.stop()
    finally:
        await expansion.stop()
        await suite.stop()
    return ids


def _people(db: Path) -> None:
    ok(run(db, "users", "init", user="admin"))
    for name, role in PEOPLE.items():
        ok(run(db, "users", "add", name, "--name", name.title(), "--role", role,
               "--user", "admin", user="admin", new="temporary-pw-9"))  # fmt: skip
        env_user = {"CELLBATCH_DB": f"sqlite:///{db}", "CELLBATCH_PASSWORD": "temporary-pw-9",
                    "CELLBATCH_NEW_PASSWORD": _pw(name)}  # fmt: skip
        done = CliRunner().invoke(cli, ["users", "passwd", "--user", name], env=env_user)
        assert done.exit_code == 0, done.stderr


def _review(db: Path, batch_id: str, recipe: str) -> None:
    status = json.loads(ok(run(db, "ebr", "review", batch_id, "--json")))
    for item in status["exceptions"]:
        ok(run(db, "ebr", "disposition", batch_id, item["id"], "--comment",
               "simulation run, reviewed", "--user", "quinn", user="quinn"))  # fmt: skip
    ok(run(db, "ebr", "review", batch_id, "--sign", "--user", "quinn", user="quinn"))
    for test, value in RESULTS[recipe].items():
        unit = ["--unit", UNITS[test]] if test in UNITS else []
        ok(run(db, "ebr", "result", batch_id, test, str(value), *unit,
               "--user", "cleo", user="cleo"))  # fmt: skip


def test_three_linked_batches_make_a_lot_released_after_its_deviation_closes(
    tmp_path: Path,
) -> None:
    db = tmp_path / "lot.sqlite"
    ids = asyncio.run(_run_batches(db))
    _people(db)
    assert json.loads(ok(run(db, "lot", "list", "--json"))) == [
        {"coi": COI, "batches": ids, "handovers": 0, "decision": None}
    ]
    wrong = run(db, "lot", "handover", COI, "--from", ids[0], "--to", ids[1], "--volume-ml",
                "500", "--cells", "4e9", "--container", "BAG-H1", "--scanned", "COI-OTHER",
                "--user", "olga", user="olga")  # fmt: skip
    assert wrong.exit_code == 1 and "identity mismatch" in wrong.stderr
    for (a, b), (volume, cells, bag) in zip(
        ((ids[0], ids[1]), (ids[1], ids[2])),
        (("500", "4e9", "BAG-H1"), ("100", "3.5e9", "BAG-F1")),
        strict=True,
    ):
        ok(run(db, "lot", "handover", COI, "--from", a, "--to", b, "--volume-ml", volume,
               "--cells", cells, "--container", bag, "--scanned", COI, "--user", "olga",
               user="olga"))  # fmt: skip
    for batch_id, recipe in zip(ids, RESULTS, strict=True):
        _review(db, batch_id, recipe)
    opened = ok(run(db, "deviation", "open", "--title", "Cryo bag label reprinted",
                    "--classification", "minor", "--description", "label printer jam",
                    "--lot", COI, "--user", "olga", user="olga"))  # fmt: skip
    dev_id = opened.split()[0]
    refused = run(db, "lot", "release", COI, "--decision", "released", "--user", "petra",
                  user="petra")  # fmt: skip
    assert refused.exit_code == 1 and f"deviation {dev_id} (minor) is open" in refused.stderr
    ok(run(db, "deviation", "update", dev_id, "--impact", "none", "--root-cause", "worn roller",
           "--add-capa", "replace roller", "--owner", "quinn", "--due", "2027-01-15",
           "--reason", "investigated", "--user", "quinn", user="quinn"))  # fmt: skip
    refused = run(db, "deviation", "close", dev_id, "--comment", "ok", "--user", "quinn",
                  user="quinn")  # fmt: skip
    assert refused.exit_code == 1 and "open CAPA" in refused.stderr
    ok(run(db, "deviation", "update", dev_id, "--capa", f"{dev_id}-CAPA-1", "--capa-status",
           "closed", "--reason", "roller replaced", "--user", "quinn", user="quinn"))  # fmt: skip
    ok(run(db, "deviation", "close", dev_id, "--comment", "no product impact", "--user",
           "quinn", user="quinn"))  # fmt: skip
    released = ok(run(db, "lot", "release", COI, "--decision", "released", "--user", "petra",
                      user="petra"))  # fmt: skip
    assert f"lot {COI} released" in released
    out = tmp_path / "package"
    ok(run(db, "lot", "package", COI, "--out", str(out)))
    document = json.loads((out / f"{COI}.json").read_text())
    assert [b["batch_id"] for b in document["batches"]] == ids
    assert document["findings"] == [] and document["decision"]["signature"]["valid"]
    assert all(b["verification"]["ok"] for b in document["batches"])
    assert {q["status"] for b in document["batches"] for q in b["qc_results"]} == {"pass"}
    assert all(b["identity_scans"] for b in document["batches"])
    tool = shutil.which("pdftotext")
    if tool is None:
        pytest.skip("pdftotext (poppler-utils) is not installed: PDF text not checked")
    text = subprocess.run([tool, str(out / f"{COI}.pdf"), "-"], capture_output=True, text=True,
                          check=True).stdout  # fmt: skip
    flat = " ".join(text.split())
    for batch_id in ids:
        assert batch_id in flat
    assert f"{ids[0]} → {ids[1]}" in flat and f"{ids[1]} → {ids[2]}" in flat
    for signature in (s for b in document["batches"] for s in b["signatures"]):
        assert signature["user_id"] in flat
    for name in ("Olga", "Quinn", "Petra", dev_id, "released"):
        assert name in flat
