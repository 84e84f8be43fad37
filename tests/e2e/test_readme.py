"""The README runs as written: its shell blocks marked `<!-- readme-test: NAME -->`
(verify, tamper, QA walkthrough) are executed by bash, in README order, from a
directory laid out like the checkout after `make demo` (`demo-out/demo.sqlite` from a
real demo run, `.venv/bin/cellbatch`), without a terminal and with no CELLBATCH_*
variables but the ones the blocks set."""

from __future__ import annotations

import json
import os
import re
import shutil
import sqlite3
import subprocess
import sys
from contextlib import closing
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.e2e.conftest import Demo

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(600)]  # the first test may run the demo

ROOT = Path(__file__).resolve().parents[2]
README = ROOT / "README.md"
MARK = re.compile(r"^<!-- readme-test: (\w+)\b[^\n]*-->\n```sh\n(.*?)^```$", re.M | re.S)


@dataclass
class Checkout:
    """A directory shaped like the checkout after `make demo`."""

    path: Path
    batch_id: str


def readme_blocks() -> dict[str, str]:
    """The README's tested shell blocks by name, in README order."""
    return {name: body for name, body in MARK.findall(README.read_text())}


def bash(checkout: Checkout, script: str) -> subprocess.CompletedProcess[str]:
    """Run ``script`` with bash -e -o pipefail, as a user pasting it would (no terminal)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("CELLBATCH_")}
    return subprocess.run(
        ["bash", "-e", "-o", "pipefail", "-c", script],
        cwd=checkout.path, env=env, stdin=subprocess.DEVNULL, capture_output=True,
        text=True, timeout=300,
    )  # fmt: skip


@pytest.fixture(scope="module")
def checkout(tmp_path_factory: pytest.TempPathFactory, demo: Demo) -> Checkout:
    """`make demo`'s result: one demo batch in demo-out/demo.sqlite, and .venv/bin/cellbatch.

    The demo is the session's `demo` (one demo process for test_demo and this module),
    copied: the QA walkthrough changes its store."""
    path = tmp_path_factory.mktemp("readme")
    venv_bin = path / ".venv" / "bin"
    venv_bin.mkdir(parents=True)
    cellbatch = venv_bin / "cellbatch"
    cellbatch.write_text(f'#!/bin/sh\nexec "{sys.executable}" -m cellbatch "$@"\n')
    cellbatch.chmod(0o755)
    shutil.copytree(demo.out, path / "demo-out", symlinks=True)
    assert (path / "demo-out" / "demo.sqlite").is_file()
    return Checkout(path, demo.batch_id)


def test_the_readme_marks_the_blocks_it_promises() -> None:
    assert list(readme_blocks()) == ["verify", "tamper", "qa"]


def test_verify_block_finds_the_demo_record_intact(checkout: Checkout) -> None:
    proc = bash(checkout, readme_blocks()["verify"])
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert f"{checkout.batch_id}: intact" in proc.stdout


def test_tamper_block_edits_a_value_in_the_record_and_verify_exits_2(
    checkout: Checkout,
) -> None:
    if shutil.which("sqlite3") is None:
        pytest.skip("the sqlite3 shell is not installed (make tools installs it)")
    proc = bash(checkout, readme_blocks()["tamper"])
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert f"{checkout.batch_id}: TAMPERED" in proc.stdout
    named = re.search(
        rf"^{checkout.batch_id}: journal entry seq (\d+) \(write\.intent\): hash mismatch",
        proc.stderr,
        re.M,
    )
    assert named, proc.stderr
    # The edit is real: the entry verify names says 39 in the copy where the record says 37.
    seq = int(named.group(1))
    query = "SELECT data FROM journal WHERE batch_id = ? AND seq = ?"
    values = {}
    for name in ("demo", "tampered"):
        with closing(sqlite3.connect(checkout.path / "demo-out" / f"{name}.sqlite")) as db:
            (data,) = db.execute(query, (checkout.batch_id, seq)).fetchone()
        entry = json.loads(data)
        assert entry["capability"] == "temperature.sp"
        values[name] = entry["new"]
    assert values == {"demo": 37, "tampered": 39}


def test_qa_walkthrough_dispositions_every_exception_and_releases(checkout: Checkout) -> None:
    env = f"export CELLBATCH_DB=sqlite:///demo-out/demo.sqlite\nBATCH={checkout.batch_id}\n"
    review = env + '.venv/bin/cellbatch ebr review "$BATCH" --json'
    before = json.loads(bash(checkout, review).stdout)
    assert before["open_exceptions"] > 0, "the demo leaves exceptions to review"
    proc = bash(checkout, readme_blocks()["qa"])
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert proc.stdout.count("password changed for") == 3  # QA's, QC's and the QP's first change
    assert "SIMULATION" in proc.stderr or "simulation" in proc.stderr  # release refused, named
    after = json.loads(bash(checkout, review).stdout)
    assert after["batch_id"] == checkout.batch_id
    assert after["disposition"] == "not for use"  # a simulation record is never released
    assert after["open_exceptions"] == 0
    assert [e["id"] for e in after["exceptions"]] == [e["id"] for e in before["exceptions"]]
    assert all(e["signature"] is not None for e in after["exceptions"])
    assert "dispositioned; Quinn Quality (quinn, " in proc.stdout
