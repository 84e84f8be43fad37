"""The command-line contract, as operators and CI call it: exit codes, message
formats, no tracebacks."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parents[2]
MALFORMED = sorted((ROOT / "tests" / "recipes" / "malformed").glob("*.yaml"))
SHORT = ROOT / "tests" / "controller" / "recipes" / "short-culture.yaml"


def cellbatch(*args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "cellbatch", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def test_library_recipes_validate() -> None:
    proc = cellbatch("recipe", "validate", *map(str, (ROOT / "recipes" / "library").glob("*.yaml")))
    assert proc.returncode == 0, proc.stderr
    assert "car-t-expansion 1.0.0" in proc.stdout


def test_every_malformed_recipe_gets_file_line_col_and_exit_1() -> None:
    assert len(MALFORMED) >= 25
    proc = cellbatch("recipe", "validate", *map(str, MALFORMED))
    assert proc.returncode == 1
    assert "Traceback" not in proc.stderr
    for path in MALFORMED:
        expect = path.read_text().splitlines()[0].removeprefix("# expect: ")
        line_col, _, message = expect.partition(": ")
        assert f"{path}:{line_col}: " in proc.stderr, path.name
        assert message in proc.stderr, path.name
    for line in proc.stderr.splitlines():
        assert re.match(r"^\S+\.yaml:\d+:\d+: \S", line), line


def test_one_bad_file_among_good_ones_fails_the_run(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("recipe: [unclosed\n")
    proc = cellbatch("recipe", "validate", str(SHORT), str(bad))
    assert proc.returncode == 1
    assert re.search(rf"^{re.escape(str(bad))}:\d+:\d+: ", proc.stderr, re.M), proc.stderr
    assert "short-culture" in proc.stdout


@pytest.mark.parametrize(
    "args",
    [
        ("recipe", "validate", "no/such/recipe.yaml"),
        ("recipe", "show", "no/such/recipe.yaml"),
        ("run", str(SHORT), "--plant", "no/such/plant.toml"),
        ("run", str(SHORT), "--param", "temperature"),
        ("ebr", "verify", "--db", "sqlite:///no/such/store.sqlite"),
        ("ebr", "export", "CB-NOPE", "--format", "json", "--db", "sqlite:///no/such.sqlite"),
        ("sim", "serve", "--plant", "no/such/plant.toml"),
    ],
)
def test_bad_input_is_one_plain_error_never_a_traceback(args: tuple[str, ...]) -> None:
    proc = cellbatch(*args)
    assert proc.returncode not in (0, None)
    assert proc.stderr.strip()
    assert "Traceback" not in proc.stderr
    assert len(proc.stderr.strip().splitlines()) <= 4, proc.stderr


def test_recipe_show_prints_the_tree() -> None:
    proc = cellbatch("recipe", "show", str(ROOT / "recipes" / "library" / "car-t-expansion.yaml"))
    assert proc.returncode == 0, proc.stderr
    for text in (
        "formula:",
        "equipment:",
        "monitors:",
        "unit procedure expansion",
        "operation day_5",
        "(hold_for)",
        "rocking_bioreactor",
    ):
        assert text in proc.stdout


def test_run_headless_against_sim_serve(served_plant: Path, tmp_path: Path) -> None:
    """Controller and simulator in two processes share the simulator's scaled clock."""
    db = tmp_path / "run.sqlite"
    proc = cellbatch(
        "run",
        str(SHORT),
        "--plant",
        str(served_plant),
        "--db",
        f"sqlite:///{db}",
        "--coi",
        "COI-CLI-1",
        "--param",
        "culture_time=30",
        timeout=120,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    lines = proc.stdout.splitlines()
    batch_id = lines[0].removeprefix("batch ")
    assert re.fullmatch(r"CB-\d{8}-\d{6}-[0-9A-F]{8}", batch_id), lines[0]
    assert lines[-1].endswith(f"batch {batch_id} Complete")
    verify = cellbatch("ebr", "verify", batch_id, "--db", f"sqlite:///{db}")
    assert verify.returncode == 0, verify.stderr
    export = cellbatch("ebr", "export", batch_id, "--format", "json", "--db", f"sqlite:///{db}")
    assert '"COI-CLI-1"' in export.stdout
    assert '"changed": true' in export.stdout or '"changed":true' in export.stdout


PROMPTS = ROOT / "tests" / "controller" / "recipes" / "prompts.yaml"


def test_unattended_prompts_need_an_answer_source(served_plant: Path, tmp_path: Path) -> None:
    proc = cellbatch(
        "run",
        str(PROMPTS),
        "--plant",
        str(served_plant),
        "--db",
        f"sqlite:///{tmp_path / 'p.sqlite'}",
    )
    assert proc.returncode == 2
    assert "--answers FILE" in proc.stderr and "Traceback" not in proc.stderr


def test_run_with_simulated_operator_and_with_an_answers_file(
    served_plant: Path, tmp_path: Path
) -> None:
    db = f"sqlite:///{tmp_path / 'p.sqlite'}"
    proc = cellbatch(
        "run",
        str(PROMPTS),
        "--plant",
        str(served_plant),
        "--db",
        db,
        "--simulated-operator",
        "--coi",
        "COI-7",
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    answers = tmp_path / "answers.yaml"
    answers.write_text(
        "confirm_bag: {done: done, user: op1}\n"
        "scan: {scan: COI-8, user: op1}\n"
        "bench/count/cell_count: {viable_density: 3.1e6, viability: 88, user: op1, verifier: op2}\n"
    )
    proc = cellbatch(
        "run",
        str(PROMPTS),
        "--plant",
        str(served_plant),
        "--db",
        db,
        "--answers",
        str(answers),
        "--coi",
        "COI-8",
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    batch_id = proc.stdout.splitlines()[0].removeprefix("batch ")
    export = cellbatch("ebr", "export", batch_id, "--format", "json", "--db", db).stdout
    assert '"verifier": "op2"' in export or '"verifier":"op2"' in export
