"""What a user can get wrong at the command line gets one plain line, never a traceback."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from cellbatch.cli import cli
from ebr import Store


@pytest.mark.parametrize(
    "args",
    [
        ["batch", "list", "--endpoint", "garbage"],
        ["batch", "show", "CB-X", "--endpoint", "http://127.0.0.1:1"],
        ["batch", "list", "--endpoint", "opc.tcp://127.0.0.1:notaport"],
    ],
)
def test_a_malformed_endpoint_is_named(args: list[str]) -> None:
    done = CliRunner().invoke(cli, args)
    assert done.exit_code == 1
    assert "not an OPC UA endpoint URL" in done.output
    assert "Traceback" not in done.output and "internal error" not in done.output


def test_controller_serve_refuses_a_malformed_listen_url(tmp_path: Path) -> None:
    db = f"sqlite:///{tmp_path / 'c.sqlite'}"
    done = CliRunner().invoke(cli, ["controller", "serve", "--listen", "garbage", "--db", db])
    assert done.exit_code == 2
    assert "--listen 'garbage' is not an OPC UA endpoint URL" in done.output
    assert "Traceback" not in done.output


def test_backup_of_a_store_named_by_a_relative_path(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    Store.open("sqlite:///cellbatch.sqlite").close()  # the default store, a relative path
    done = CliRunner().invoke(cli, ["ebr", "backup", "copy.sqlite"])
    assert done.exit_code == 0, done.output
    assert (tmp_path / "copy.sqlite").is_file()


@pytest.mark.parametrize(
    ("args", "said"),
    [
        (["--since", "yesterday"], "'yesterday' is not a date; expected YYYY-MM-DD"),
        (["--since", "2026-13-01"], "'2026-13-01' is not a date"),
        (["--margin", "lagh=6"], "no figure 'lagh'; did you mean 'lag_h'?"),
        (["--margin", "lag_h=nan"], "'lag_h=nan': expected FIGURE=POSITIVE_NUMBER"),
        (["--margin", "lag_h"], "'lag_h': expected FIGURE=POSITIVE_NUMBER"),
    ],
)
def test_trend_refuses_a_bad_since_or_margin(tmp_path: Path, args: list[str], said: str) -> None:
    db = f"sqlite:///{tmp_path / 'none.sqlite'}"  # refused before any store is opened
    done = CliRunner().invoke(cli, ["trend", "expansion", "--db", db, *args])
    assert done.exit_code == 2, done.output
    assert said in done.output and "Traceback" not in done.output


ROOT = Path(__file__).parents[2]
PROMPTS = ROOT / "tests" / "controller" / "recipes" / "prompts.yaml"
DEMO_PLANT = ROOT / "plants" / "demo.toml"


def test_run_checks_the_answers_file_before_the_batch_starts(tmp_path: Path) -> None:
    answers = tmp_path / "answers.yaml"
    answers.write_text(
        "confirm_bg: {done: done, user: op1}\n"
        "scan: {scan: COI-8, user: op1}\n"
        "bench/count/cell_count: {viable_densty: 3.1e6, viability: lots, user: op1,"
        " verifier: op1}\n"
    )
    db = tmp_path / "never.sqlite"
    done = subprocess.run(
        [sys.executable, "-m", "cellbatch", "run", str(PROMPTS), "--plant", str(DEMO_PLANT),
         "--db", f"sqlite:///{db}", "--answers", str(answers), "--coi", "COI-8"],
        capture_output=True, text=True, timeout=60, cwd=ROOT, stdin=subprocess.DEVNULL,
    )  # fmt: skip
    out = done.stderr
    assert done.returncode == 1, out
    typo = "no prompt phase 'confirm_bg' in prompts; did you mean 'confirm_bag'?"
    assert f"{answers}:1:1: {typo}" in out
    entry = "no entry 'viable_densty'; did you mean 'viable_density'?"
    assert f"{answers}:3:26: bench/count/cell_count: {entry}" in out
    assert "bench/count/cell_count: viability: expected a number, got 'lots'" in out
    assert "the verifier must be a different person than op1" in out
    assert "no answer for the prompt 'bench/receive/confirm_bag'" in out
    assert "Traceback" not in out and not db.exists()  # nothing started
