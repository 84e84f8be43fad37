"""CPPs and CQAs in recipes, and tech transfer that may only narrow ranges (issue 14)."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from recipes import RecipeError, load_recipe, parse_recipe
from recipes.transfer import transfer

ROOT = Path(__file__).resolve().parents[2]
LIBRARY = ROOT / "recipes" / "library"
EXPANSION = LIBRARY / "car-t-expansion.yaml"

MINI = """\
recipe: {name: mini, version: "1.0", product: P, status: draft, author: QA}
equipment:
  bioreactor: {class: rocking_bioreactor}
monitors:
  - name: temperature
    unit: bioreactor
    tag: temperature.pv
    engineering_unit: degC
    alert: {low: 36.5, high: 37.5}
    action: {low: 36.0, high: 38.0}
    on_action: hold
%s
%s
procedure:
  name: mini
  unit_procedures:
    - name: up
      unit: bioreactor
      operations:
        - name: op
          phases:
            - {name: wait, type: hold_for, duration: 1 min}
"""


def _mini(monitor_extra: str = "", cqas: str = "") -> str:
    return MINI % (monitor_extra, cqas)


def test_library_declares_cpps_with_ranges_and_cqas() -> None:
    recipe = load_recipe(EXPANSION)
    temperature = next(m for m in recipe.monitors if m.name == "temperature")
    assert temperature.criticality == "critical"
    assert temperature.nor is not None and temperature.par is not None
    assert (temperature.par.low, temperature.par.high) == (36.0, 38.0)
    assert temperature.rationale
    assert {c.name for c in recipe.cqas} >= {"viability", "cd3_positive"}
    cryo = load_recipe(LIBRARY / "cryopreserve.yaml")
    sterility = next(c for c in cryo.cqas if c.name == "sterility")
    assert sterility.meets("Negative") and not sterility.meets("positive")
    endotoxin = next(c for c in cryo.cqas if c.name == "endotoxin")
    assert endotoxin.meets(4.9) and not endotoxin.meets(5.1)
    assert endotoxin.specification() == "≤ 5 EU/mL"


def test_nor_outside_par_is_reported_at_the_bound() -> None:
    extra = (
        "    criticality: critical\n    nor: {low: 35.5, high: 37.5}\n"
        "    par: {low: 36.0, high: 38.0}\n    rationale: growth"
    )
    with pytest.raises(RecipeError) as err:
        parse_recipe(_mini(extra), "mini.yaml")
    assert [str(d) for d in err.value.diagnostics] == [
        "mini.yaml:13:16: monitor 'temperature': nor low 35.5 is below the par low 36 "
        "(it must lie within the proven acceptable range)"
    ]


def test_a_critical_parameter_needs_par_and_rationale() -> None:
    with pytest.raises(RecipeError) as err:
        parse_recipe(_mini("    criticality: critical"), "mini.yaml")
    messages = " | ".join(d.message for d in err.value.diagnostics)
    assert "needs a 'par' range" in messages and "needs a 'rationale'" in messages


def test_cqa_specification_is_checked() -> None:
    cqas = "cqas:\n  - {name: via, unit: x, method: count, specification: {low: 90, high: 80}}"
    with pytest.raises(RecipeError) as err:
        parse_recipe(_mini(cqas=cqas), "mini.yaml")
    assert "low 90 is above high 80" in str(err.value)
    assert re.search(r"mini\.yaml:14:\d+: ", str(err.value))


def _ranges(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "site-ranges.yaml"
    path.write_text(text)
    return path


def test_transfer_narrows_and_stamps_the_site(tmp_path: Path) -> None:
    ranges = _ranges(
        tmp_path,
        "formula:\n  temperature: {min: 36.8, max: 37.2}\n"
        "monitors:\n  temperature: {alert: {low: 36.7, high: 37.3}, nor: {low: 36.7, high: 37.3}}\n"
        "cqas:\n  viability: {low: 75}\n",
    )
    site = parse_recipe(transfer(EXPANSION, "hub-b", ranges), "site.yaml")
    master = load_recipe(EXPANSION)
    assert site.header.site == "hub-b"
    assert site.header.master_sha256 == master.content_hash
    assert (site.formula["temperature"].min, site.formula["temperature"].max) == (36.8, 37.2)
    temperature = next(m for m in site.monitors if m.name == "temperature")
    assert (temperature.alert_low, temperature.alert_high) == (36.7, 37.3)
    assert next(c for c in site.cqas if c.name == "viability").spec.low == 75  # type: ignore[union-attr]
    assert site.content_hash != master.content_hash


@pytest.mark.parametrize(
    ("text", "where", "message"),
    [
        ("formula:\n  temperature: {min: 36.8, max: 37.9}\n", "2:33", "max 37.9 is above"),
        (
            "monitors:\n  ph:\n    par: {low: 6.5}\n",
            "3:16",
            "low 6.5 is below the master's low 6.8",
        ),
        ("cqas:\n  viability: {low: 60}\n", "2:20", "low 60 is below the master's low 70"),
        ("monitors:\n  nope: {alert: {low: 1}}\n", "2:3", "has no monitor 'nope'"),
    ],
)
def test_transfer_refuses_widening_at_its_line(
    tmp_path: Path, text: str, where: str, message: str
) -> None:
    ranges = _ranges(tmp_path, text)
    with pytest.raises(RecipeError) as err:
        transfer(EXPANSION, "hub-b", ranges)
    first = str(err.value.diagnostics[0])
    assert first.startswith(f"{ranges}:{where}: "), first
    assert message in first


def _cellbatch(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "cellbatch", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )


@pytest.mark.e2e
def test_cli_transfer_refuses_widening_with_file_line_col(tmp_path: Path) -> None:
    ranges = _ranges(tmp_path, "monitors:\n  temperature:\n    action: {low: 35.0}\n")
    out = tmp_path / "site.yaml"
    transfer_args = ("recipe", "transfer", str(EXPANSION), "--site", "hub-b", "--out", str(out))
    proc = _cellbatch(*transfer_args, "--ranges", str(ranges))
    assert proc.returncode == 1
    assert "Traceback" not in proc.stderr
    assert proc.stderr.startswith(f"{ranges}:3:19: monitor 'temperature': action: low 35")
    assert not out.exists()
    ok = _cellbatch(*transfer_args)
    assert ok.returncode == 0, ok.stderr
    shown = _cellbatch("recipe", "show", str(out))
    assert "site recipe for hub-b" in shown.stdout
    assert "NOR [36.5 … 37.5]  PAR [36 … 38]" in shown.stdout
    assert "post_thaw_viability" not in shown.stdout and "cd3_positive" in shown.stdout
