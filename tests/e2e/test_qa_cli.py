"""QA and user administration as people and CI call them: `cellbatch users …`,
`ebr review|disposition|release|result`, `recipe approve`, and a GMP plant refusing an
unapproved recipe — passwords from CELLBATCH_PASSWORD / CELLBATCH_NEW_PASSWORD (no
terminal), exit 0 done / 1 refused, one plain line, never a traceback."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from cellbatch.cli import cli
from ebr import Store
from recipes import load_recipe
from tests.e2e.conftest import plant_for_unit
from tests.ebr.review_batches import TRIGGERS, write

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parents[2]
SHORT = ROOT / "tests" / "controller" / "recipes" / "short-culture.yaml"
ADMIN_PW = "site-key-2026"
SPECS = ROOT / "tests" / "ebr" / "specs-test.toml"


def cellbatch(
    db: Path, *args: str, password: str | None = None, new: str | None = None
) -> subprocess.CompletedProcess[str]:
    """Run a command in-process (click's runner: no terminal, so passwords come from the
    environment) — the same code path as the console script minus interpreter start-up."""
    env = {"CELLBATCH_DB": f"sqlite:///{db}", "CELLBATCH_PASSWORD": password,
           "CELLBATCH_NEW_PASSWORD": new, "CELLBATCH_SPECS": str(SPECS)}  # fmt: skip
    result = CliRunner().invoke(cli, list(args), env=env, catch_exceptions=False)
    assert "Traceback" not in result.stderr, result.stderr
    return subprocess.CompletedProcess(args, result.exit_code, result.stdout, result.stderr)


def console(db: Path, *args: str, password: str) -> subprocess.CompletedProcess[str]:
    """Run the console entry point in its own process (errors handled by `main`)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("CELLBATCH_")}
    env |= {"CELLBATCH_DB": f"sqlite:///{db}", "CELLBATCH_PASSWORD": password}
    proc = subprocess.run(
        [sys.executable, "-m", "cellbatch", *args],
        cwd=ROOT, env=env, stdin=subprocess.DEVNULL, capture_output=True, text=True,
        timeout=60,
    )  # fmt: skip
    assert "Traceback" not in proc.stderr, proc.stderr
    return proc


def ok(proc: subprocess.CompletedProcess[str]) -> str:
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


def refused(proc: subprocess.CompletedProcess[str], message: str) -> None:
    assert proc.returncode == 1, proc.stdout
    assert message in proc.stderr, proc.stderr
    assert len(proc.stderr.strip().splitlines()) <= 3


def add_user(db: Path, name: str, role: str, password: str) -> None:
    out = ok(
        cellbatch(
            db, "users", "add", name, "--name", name.title(), "--role", role,
            "--user", "admin", password=ADMIN_PW, new="temporary-pw-9",
        )
    )  # fmt: skip
    assert "must be changed at first use" in out
    refused(
        cellbatch(db, "ebr", "result", "B-QA", "endotoxin", "0.3", "--unit", "EU/mL",
                  "--user", name, password="temporary-pw-9"),
        "password must be changed",
    )  # fmt: skip
    ok(cellbatch(db, "users", "passwd", "--user", name, password="temporary-pw-9", new=password))


@pytest.fixture(scope="module")
def qa_db(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A store with one ended GMP batch with exceptions and four people."""
    db = tmp_path_factory.mktemp("qa") / "qa.sqlite"
    store = Store.open(f"sqlite:///{db}")
    asyncio.run(write(store, TRIGGERS["parameter"]("B-QA")))
    store.close()
    env = {k: v for k, v in os.environ.items() if not k.startswith("CELLBATCH_")}
    env |= {"CELLBATCH_DB": f"sqlite:///{db}", "CELLBATCH_PASSWORD": ADMIN_PW}
    proc = subprocess.run(
        [sys.executable, "-m", "cellbatch", "users", "init"],
        cwd=ROOT, env=env, stdin=subprocess.DEVNULL, capture_output=True, text=True,
        timeout=60,
    )  # fmt: skip
    assert proc.returncode == 0 and "created user U0001 admin" in proc.stdout, proc.stderr
    for name, role in (("olga", "operator"), ("quinn", "qa"), ("petra", "qp"), ("cleo", "qc")):
        add_user(db, name, role, f"{name[0]}-secret-{len(name)}4")
    return db


def test_users_list_and_admin_cannot_sign(qa_db: Path) -> None:
    listed = json.loads(ok(cellbatch(qa_db, "users", "list", "--json")))
    assert [(u["user_id"], u["username"], u["status"]) for u in listed] == [
        ("U0001", "admin", "active"),
        ("U0002", "olga", "active"),
        ("U0003", "quinn", "active"),
        ("U0004", "petra", "active"),
        ("U0005", "cleo", "active"),
    ]
    assert "password" not in json.dumps(listed).replace("password_set_at", "").replace(
        "must_change", ""
    )
    refused(
        cellbatch(qa_db, "ebr", "release", "B-QA", "--decision", "rejected", "--user", "admin",
                  password=ADMIN_PW),
        "admin accounts cannot sign",
    )  # fmt: skip
    refused(cellbatch(qa_db, "users", "init", password=ADMIN_PW), "already initialised")
    refused(
        cellbatch(qa_db, "users", "roles", "admin", "--role", "qa", "--reason", "approve",
                  "--user", "admin", password=ADMIN_PW),
        "refused by SOD-SELF",
    )  # fmt: skip


def test_review_disposition_release(qa_db: Path) -> None:
    review = json.loads(ok(cellbatch(qa_db, "ebr", "review", "B-QA", "--json")))
    ids = [item["id"] for item in review["exceptions"] if item["open"]]
    assert ids and review["disposition"] == "in review"
    text = ok(cellbatch(qa_db, "ebr", "review", "B-QA"))
    assert all(i in text for i in ids) and "evidence: journal #" in text
    refused(
        cellbatch(qa_db, "ebr", "release", "B-QA", "--decision", "released", "--user", "petra",
                  password="p-secret-54"),
        "open exception",
    )  # fmt: skip
    refused(
        cellbatch(qa_db, "ebr", "disposition", "B-QA", ids[0], "--comment", "ok",
                  "--user", "quinn", password="wrong-pw-123"),
        "authentication failed",
    )  # fmt: skip
    refused(
        cellbatch(qa_db, "ebr", "disposition", "B-QA", ids[0], "--comment", "ok",
                  "--user", "olga", password="o-secret-44"),
        "cannot sign as 'reviewed'",
    )  # fmt: skip
    for exception_id in ids:
        ok(
            cellbatch(qa_db, "ebr", "disposition", "B-QA", exception_id, "--comment",
                      "within the validated range", "--deviation", "DEV-1",
                      "--user", "quinn", password="q-secret-54")
        )  # fmt: skip
    ok(cellbatch(qa_db, "ebr", "review", "B-QA", "--sign", "--user", "quinn",
                 password="q-secret-54"))  # fmt: skip
    refused(
        cellbatch(qa_db, "ebr", "result", "B-QA", "endotoxin", "0.3", "--unit", "EU/mL",
                  "--user", "olga", password="o-secret-44"),
        "refused by SOD-QC-ONLY",
    )  # fmt: skip
    out = ok(cellbatch(qa_db, "ebr", "result", "B-QA", "endotoxin", "0.3", "--unit", "EU/mL",
                       "--user", "cleo", password="c-secret-44"))  # fmt: skip
    assert "endotoxin = 0.3 EU/mL, in specification" in out
    ok(cellbatch(qa_db, "ebr", "result", "B-QA", "identity", "conforms",
                 "--user", "cleo", password="c-secret-44"))  # fmt: skip
    out = ok(
        cellbatch(qa_db, "ebr", "release", "B-QA", "--decision", "released", "--pending",
                  "sterility", "--pending", "mycoplasma", "--user", "petra",
                  password="p-secret-54")
    )  # fmt: skip
    assert "released pending results" in out
    for test in ("sterility", "mycoplasma"):
        ok(cellbatch(qa_db, "ebr", "result", "B-QA", test, "pass",
                     "--user", "cleo", password="c-secret-44"))  # fmt: skip
    ok(cellbatch(qa_db, "ebr", "release", "B-QA", "--decision", "released", "--user", "petra",
                 password="p-secret-54"))  # fmt: skip
    (listed,) = json.loads(ok(cellbatch(qa_db, "ebr", "list", "--json")))
    assert listed["disposition"] == "released" and listed["open_exceptions"] == 0
    ok(cellbatch(qa_db, "ebr", "verify"))


def test_disabled_users_cannot_act(qa_db: Path) -> None:
    add_user(qa_db, "dora", "qa", "d-secret-44")
    ok(cellbatch(qa_db, "users", "disable", "dora", "--reason", "left", "--user", "admin",
                 password=ADMIN_PW))  # fmt: skip
    refused(cellbatch(qa_db, "users", "passwd", "--user", "dora", password="d-secret-44",
                      new="new-secret-77"), "disabled")  # fmt: skip


def test_gmp_plant_runs_only_approved_recipes(qa_db: Path, served_url: str, tmp_path: Path) -> None:
    plant = plant_for_unit(tmp_path / "gmp.toml", served_url, "GMP-01")
    plant.write_text(plant.read_text().replace('mode = "simulation"', 'mode = "gmp"'))
    draft = SHORT.read_text()
    recipe = tmp_path / "short.yaml"
    recipe.write_text(draft.replace("status: draft", "status: approved"))
    run = ("run", str(recipe), "--plant", str(plant), "--user", "olga")
    refused(console(qa_db, *run, password="o-secret-44"), "is draft in the record")
    drafted = tmp_path / "draft.yaml"
    drafted.write_text(draft)
    proc = cellbatch(qa_db, "recipe", "approve", str(drafted), "--user", "quinn",
                     password="q-secret-54")  # fmt: skip
    assert proc.returncode == 2 and "set `status: approved`" in proc.stderr
    refused(
        cellbatch(qa_db, "recipe", "approve", str(recipe), "--user", "olga",
                  password="o-secret-44"),
        "cannot sign as 'approved'",
    )  # fmt: skip
    ok(cellbatch(qa_db, "recipe", "approve", str(recipe), "--user", "quinn",
                 password="q-secret-54"))  # fmt: skip
    assert "approved" in ok(cellbatch(qa_db, "recipe", "status", str(recipe)))
    # Approved: the batch starts (first line `batch <ID>`); Ctrl-C holds it and exits.
    env = {k: v for k, v in os.environ.items() if not k.startswith("CELLBATCH_")}
    env |= {"CELLBATCH_DB": f"sqlite:///{qa_db}", "CELLBATCH_PASSWORD": "o-secret-44"}
    with subprocess.Popen(
        [sys.executable, "-m", "cellbatch", *run],
        cwd=ROOT, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
        stderr=subprocess.PIPE, text=True,
    ) as child:  # fmt: skip
        try:
            assert child.stdout is not None
            first = child.stdout.readline()
            assert first.startswith("batch "), child.stderr.read() if child.stderr else ""
            child.send_signal(signal.SIGINT)
            _out, err = child.communicate(timeout=30)
        finally:
            if child.poll() is None:
                child.kill()
    assert child.returncode == 1 and "held" in err
    ok(cellbatch(qa_db, "recipe", "retire", str(recipe), "--reason", "superseded",
                 "--user", "quinn", password="q-secret-54"))  # fmt: skip
    refused(console(qa_db, *run, password="o-secret-44"), "is retired in the record")


async def test_gmp_hmi_asks_for_each_signature_and_signs_out_when_idle(
    qa_db: Path, served_url: str, tmp_path: Path
) -> None:
    from textual.widgets import Static

    from cellbatch.hmi import BatchHmi
    from cellbatch.hmi_forms import PromptForm
    from cellbatch.service_client import call
    from tests.e2e.test_hmi import _until
    from tests.e2e.test_service import PROMPTS, Serve, free_port

    plant = plant_for_unit(tmp_path / "gmp.toml", served_url, "GMP-02")
    plant.write_text(plant.read_text().replace('mode = "simulation"', 'mode = "gmp"'))
    recipe = tmp_path / "prompts.yaml"
    recipe.write_text(PROMPTS.read_text().replace("status: draft", "status: approved"))
    ok(cellbatch(qa_db, "recipe", "approve", str(recipe), "--user", "quinn",
                 password="q-secret-54"))  # fmt: skip
    endpoint = f"opc.tcp://127.0.0.1:{free_port()}"
    olga, quinn = "o-secret-44", "q-secret-54"
    serve = Serve(plant, qa_db, endpoint, recipes=(tmp_path,))
    try:
        wrong = await call(endpoint, "SignIn", "olga", "not-her-password")
        assert not wrong["ok"] and "password" in wrong["message"]
        assert (await call(endpoint, "SignIn", "olga", olga))["name"] == "Olga"
        named = load_recipe(recipe).content_hash  # Start names a recipe of the library
        started = await call(endpoint, "Start", named, "{}", "COI-GMP-HMI", "olga", olga)
        assert started["ok"], started
        batch_id = started["batch_id"]
        app = BatchHmi(endpoint, "olga", olga)
        async with app.run_test(size=(140, 40)) as pilot:

            def shown(text: str) -> bool:
                return text in str(app.query_one("#promptlist", Static).render())

            def message() -> str:
                return str(app.query_one("#message", Static).render())

            def form_error() -> str:
                return str(app.screen.query_one("#error", Static).render())

            async def answer(element: str, *fields: str) -> None:
                """The prompt's form: its entries, the verifier, then each signer's
                password (every time)."""
                await _until(lambda: shown(element), pilot, 30)
                await pilot.press("n")
                assert isinstance(app.screen, PromptForm)
                for value in fields:
                    await pilot.press(*value, "enter")

            await answer("confirm_bag", "done", "wrong-password-1")
            await _until(lambda: "refused" in form_error(), pilot)
            assert isinstance(app.screen, PromptForm)  # the form stays, refusal shown whole
            await pilot.press("escape")
            await answer("confirm_bag", "done", olga)
            await _until(lambda: "answered" in message(), pilot)
            await answer("scan", "COI-GMP-HMI", olga)
            await _until(lambda: shown("cell_count"), pilot, 30)
            await answer("cell_count", "2.5e6", "93", "quinn", olga, quinn)
            await _until(lambda: "answered and verified" in message(), pilot)
            # Idle past the timeout: the next action signs out and asks for ID + password.
            app.idle_timeout_s = 0.0
            await pilot.press("h")
            await _until(lambda: "signed out" in message(), pilot)
            app.idle_timeout_s = 900.0
            await pilot.press("l", *"olga", "enter", *olga, "enter")
            await _until(lambda: "signed in: Olga" in message(), pilot)
            await _until(
                lambda: "COMPLETE" in str(app.query_one("#batchline", Static).render()), pilot, 30
            )
    finally:
        assert serve.end(signal.SIGTERM) == 0
    with Store.open(f"sqlite:///{qa_db}") as store:
        from ebr import read_journal

        entries = read_journal(store, batch_id)
    answered = [e.data for e in entries if e.kind == "prompt.answered"]
    assert [a["user"] for a in answered] == ["olga"] * 3 and answered[-1]["verifier"] == "quinn"
    created = entries[0].data  # who started it and where (R2, R8)
    assert (created["user"], created["user_id"], created["printed_name"]) == (
        "olga",
        "U0002",
        "Olga",
    )
    assert created["terminal"].startswith("opcua 127.0.0.1:") and created["software"]


async def test_network_sign_in_guesses_are_throttled_per_client_and_alerted(
    qa_db: Path, served_url: str, tmp_path: Path
) -> None:
    """One client guessing at many accounts (no account fails often enough to be
    throttled or alerted on its own) is throttled by its address, and the alert is on
    the site chain: `users audit` names the client. Nobody is locked out."""
    import sqlite3

    from cellbatch.service_client import call
    from controller.service import CLIENT_FREE_FAILURES
    from tests.e2e.test_service import Serve, free_port

    db = tmp_path / "copy.sqlite"  # the module's store stays free of these alerts
    with sqlite3.connect(qa_db) as source, sqlite3.connect(db) as copy:
        source.backup(copy)
    plant = plant_for_unit(tmp_path / "gmp.toml", served_url, "GMP-01")
    plant.write_text(plant.read_text().replace('mode = "simulation"', 'mode = "gmp"'))
    endpoint = f"opc.tcp://127.0.0.1:{free_port()}"
    serve = Serve(plant, db, endpoint)
    try:
        for i in range(CLIENT_FREE_FAILURES):  # a different account each time
            answer = await call(endpoint, "SignIn", f"guess-{i % 5}", "wrong-password")
            assert not answer["ok"] and "authentication failed" in answer["message"], answer
        throttled = await call(endpoint, "SignIn", "olga", "o-secret-44")  # even the right one
        assert not throttled["ok"] and "too many failed sign-ins" in throttled["message"]
        alerts = await call(endpoint, "Alerts")
    finally:
        assert serve.end(signal.SIGTERM) == 0
    assert [a["client"] for a in alerts if "client" in a] == ["127.0.0.1"], alerts
    audit = ok(cellbatch(db, "users", "audit"))
    assert "network client 127.0.0.1: 10 failed sign-ins" in audit, audit
    listed = json.loads(ok(cellbatch(db, "users", "list", "--json")))
    assert {u["username"]: u["status"] for u in listed}["olga"] == "active"
    with Store.open(f"sqlite:///{db}") as store:
        from ebr.people.users import site_entries
        from ebr.record.kinds import Kind

        failed = site_entries(store, Kind.USER_AUTH_FAILED)
    assert {f.data.get("client") for f in failed[-CLIENT_FREE_FAILURES:]} == {"127.0.0.1"}
