"""Fail-safe storage (issue 16): the store's file system is full during a batch (the
`cellbatch run` or `controller serve` process may not grow any file past a limit:
RLIMIT_FSIZE, a real EFBIG from the kernel on SQLite's writes). The batch is held with
the reason and its holding logic drives the instrument to the safe state while the store
is still down (read back from the simulator over OPC UA); nothing acknowledged is lost:
once space is back the hold and the holding writes are recorded, in order, and a resumed
run completes with a record that `ebr verify` accepts. A controller's HMI and `batch
list` say that the store cannot commit, since when and why, and stop saying it once it
commits again."""

from __future__ import annotations

import asyncio
import os
import resource
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from asyncua import Client
from textual.widgets import Static

from cellbatch.hmi import BatchHmi
from cellbatch.service_client import call
from ebr import Entry, Store, read_journal
from recipes import load_recipe
from tests.e2e.conftest import plant_for_unit
from tests.e2e.test_service import SHORT, cellbatch, free_port  # noqa: F401 (fixture)
from tests.e2e.test_service import setup as setup

pytestmark = [pytest.mark.e2e, pytest.mark.slow, pytest.mark.timeout(300)]
ROOT = Path(__file__).resolve().parents[2]
VESSEL = "LEASE-02"
CULTURE = "culture/grow/culture"  # the phase whose holding logic stops the rocking
BACK = "STORAGE: the store commits again"


def _no_sigxfsz() -> None:
    """In the child: a file past RLIMIT_FSIZE fails with EFBIG instead of killing it."""
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)


def _journal(db: Path, batch_id: str) -> list[Entry]:
    with Store.open(db, create=False) as store:
        return read_journal(store, batch_id)


def _rocking_sp(url: str) -> float:
    """The vessel's rocking setpoint, read from the simulator over OPC UA."""

    async def read() -> float:
        async with Client(url, timeout=10) as client:
            node = client.get_node(f"ns=2;s={VESSEL}.Rocking.RateSP")
            return float(await node.read_value())

    return asyncio.run(read())


async def _storage_variable(endpoint: str) -> str:
    """The controller's ``Objects/StorageProblem``, read by a plain OPC UA client."""
    async with Client(endpoint, timeout=10) as client:
        idx = await client.get_namespace_index("urn:cellbatch:controller")
        node = await client.nodes.objects.get_child([f"{idx}:StorageProblem"])
        return str(await node.read_value())


def _until(check: object, what: str, tries: int = 600, pause: float = 0.2) -> None:
    """Wait (bounded in count and time) until `check()` is true."""
    assert callable(check)
    for _ in range(tries):
        if check():
            return
        time.sleep(pause)
    pytest.fail(f"gave up waiting: {what}")


def test_full_disk_holds_the_batch_in_its_safe_state_and_a_resumed_run_completes(
    served_url: str, tmp_path: Path
) -> None:
    if not hasattr(resource, "prlimit"):
        pytest.skip("resource.prlimit is Linux-only")
    plant = plant_for_unit(tmp_path / "plant.toml", served_url, VESSEL)
    db = tmp_path / "full.sqlite"
    Store.open(db).close()
    env = {k: v for k, v in os.environ.items() if not k.startswith("CELLBATCH_")}
    env["PYTHONDONTWRITEBYTECODE"] = "1"
    run = [sys.executable, "-m", "cellbatch", "run", "--plant", str(plant),
           "--db", f"sqlite:///{db}", "--simulated-operator"]  # fmt: skip
    proc = subprocess.Popen(
        [*run, str(SHORT), "--param", "culture_time=600"],
        cwd=ROOT, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
        stderr=subprocess.PIPE, text=True, preexec_fn=_no_sigxfsz,
    )  # fmt: skip
    errors: list[str] = []
    assert proc.stderr is not None and proc.stdout is not None
    reader = threading.Thread(target=lambda: errors.extend(proc.stderr or []), daemon=True)
    reader.start()
    try:
        first = proc.stdout.readline().split()
        assert first[:1] == ["batch"], errors
        batch_id = first[1]

        def culturing() -> bool:
            assert proc.poll() is None, "".join(errors)[-2000:]
            return any(
                e.kind == "element.state"
                and e.data["element"] == CULTURE
                and e.data["to"] == "Running"
                for e in _journal(db, batch_id)
            )

        _until(culturing, "the culture phase running")
        assert _rocking_sp(served_url) > 0
        # The disk is full from now on: no write may reach past the first KiB of a file
        # (not even a WAL that SQLite restarts takes a frame); the -shm index exists
        # already and does not grow.
        resource.prlimit(proc.pid, resource.RLIMIT_FSIZE, (1024, resource.RLIM_INFINITY))
        _until(lambda: any("cannot commit" in line for line in errors), "the full store reported")
        assert proc.poll() is None  # still in control, not ended
        # While the store is still full, the holding logic has stopped the rocking.
        _until(lambda: _rocking_sp(served_url) == 0.0, "the rocking stopped", tries=150)
        assert any("cannot commit" in line for line in errors[-50:])
        assert not any(BACK in line for line in errors), "".join(errors)[-3000:]
        written = len(_journal(db, batch_id))
        resource.prlimit(proc.pid, resource.RLIMIT_FSIZE, (resource.RLIM_INFINITY,) * 2)

        def hold_recorded() -> bool:
            return any(
                e.kind == "command.accepted" and "cannot commit" in str(e.data.get("reason"))
                for e in _journal(db, batch_id)
            )

        _until(hold_recorded, "the hold recorded once space is back")
        _until(lambda: any(BACK in line for line in errors), "the store back")
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGINT)
            try:
                proc.wait(60)
            except subprocess.TimeoutExpired:
                proc.kill()
    entries = _journal(db, batch_id)
    hold = next(
        i for i, e in enumerate(entries)
        if e.kind == "command.accepted" and "cannot commit" in str(e.data.get("reason"))
    )  # fmt: skip
    assert entries[hold].data["command"] == "hold" and hold >= written
    after = entries[hold:]
    intent = next(
        i for i, e in enumerate(after)
        if e.kind == "write.intent" and e.data["capability"] == "rocking.rate_sp"
    )  # fmt: skip
    assert after[intent].data["new"] == 0 and after[intent].data["element"] == CULTURE
    result = after[intent + 1 :]
    assert any(e.kind == "write.result" and e.data["intent"] == after[intent].seq for e in result)
    resumed = subprocess.run(
        [*run, "--resume", batch_id], cwd=ROOT, env=env, stdin=subprocess.DEVNULL,
        capture_output=True, text=True, timeout=110,
    )  # fmt: skip
    verify = subprocess.run(
        [sys.executable, "-m", "cellbatch", "ebr", "verify", "--db", f"sqlite:///{db}", batch_id],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    states = [e.data.get("to") for e in _journal(db, batch_id) if e.kind == "batch.state"]
    assert "Traceback" not in resumed.stderr and "Traceback" not in "".join(errors)
    assert resumed.returncode == 0 and states[-1] == "Complete", resumed.stderr[-2000:]
    assert verify.returncode == 0, verify.stdout + verify.stderr


async def test_the_hmi_and_batch_list_say_the_store_cannot_commit_until_it_does(
    setup: tuple[Path, Path, str],
) -> None:
    if not hasattr(resource, "prlimit"):
        pytest.skip("resource.prlimit is Linux-only")
    plant, db, endpoint = setup
    env = {k: v for k, v in os.environ.items() if not k.startswith("CELLBATCH_")}
    out, err = db.with_name("serve.out"), db.with_name("serve.err")
    with out.open("w") as stdout, err.open("w") as stderr:
        proc = subprocess.Popen(  # noqa: ASYNC220 (started once, before anything awaits it)
            [sys.executable, "-m", "cellbatch", "controller", "serve", "--plant", str(plant),
             "--db", f"sqlite:///{db}", "--listen", endpoint, "--recipes", str(SHORT.parent)],
            cwd=ROOT, env=env, stdin=subprocess.DEVNULL, stdout=stdout, stderr=stderr,
            preexec_fn=_no_sigxfsz,
        )  # fmt: skip
    try:
        _until(lambda: "ready" in out.read_text().split(), "controller serve ready", tries=150)
        recipe = load_recipe(SHORT).content_hash
        started = await call(
            endpoint, "Start", recipe, '{"culture_time": 600}', "COI-ST", "olga", ""
        )
        batch_id = started["batch_id"]
        assert (await call(endpoint, "Info"))["storage_problem"] is None
        resource.prlimit(proc.pid, resource.RLIMIT_FSIZE, (1024, resource.RLIM_INFINITY))
        app = BatchHmi(endpoint, "olga")
        async with app.run_test(size=(100, 30)) as pilot:
            storage = app.query_one("#storage", Static)

            async def until(check: object, what: str) -> None:
                assert callable(check)
                for _ in range(150):  # bounded: 30 s
                    if check():
                        return
                    await pilot.pause(0.2)
                pytest.fail(f"gave up waiting: {what}\n{err.read_text()[-2000:]}")

            await until(lambda: storage.has_class("shown"), "the STORAGE banner")
            assert "STORAGE: cannot commit since" in str(storage.render())
            info = await call(endpoint, "Info")
            assert "cannot commit" in info["storage_problem"] and info["storage_since"]
            assert (await _storage_variable(endpoint)).startswith("STORAGE: cannot commit")
            for _ in range(40):  # bounded: the banner can come before the hold has ended
                listing = await asyncio.to_thread(  # in-process, on a thread of its own
                    cellbatch, "batch", "list", "--endpoint", endpoint
                )
                if f"{batch_id}  Held" in listing.stdout:
                    break
                await asyncio.sleep(0.5)
            assert listing.stdout.startswith("STORAGE: cannot commit since"), listing.stderr
            assert f"{batch_id}  Held" in listing.stdout, listing.stdout
            resource.prlimit(proc.pid, resource.RLIMIT_FSIZE, (resource.RLIM_INFINITY,) * 2)
            await until(lambda: not storage.has_class("shown"), "the banner gone")
            assert (await call(endpoint, "Info"))["storage_problem"] is None
            for _ in range(20):  # bounded: the address space is written twice a second
                if not await _storage_variable(endpoint):
                    break
                await asyncio.sleep(0.25)
            assert await _storage_variable(endpoint) == ""
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(60)
        finally:
            if proc.poll() is None:
                proc.kill()
    assert "Traceback" not in err.read_text()
