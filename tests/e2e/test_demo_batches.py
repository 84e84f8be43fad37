"""`cellbatch demo --batches N --sites K --seed S`: seeded batches on the simulators, then
their trend charts — a newcomer sees a trend from one command (issue 14)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = [pytest.mark.e2e, pytest.mark.slow]
ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.timeout(900)
def test_two_seeded_batches_on_two_sites_give_trend_charts(tmp_path: Path) -> None:
    out = tmp_path / "demo"
    proc = subprocess.run(
        [sys.executable, "-m", "cellbatch", "demo", "--batches", "2", "--sites", "2",
         "--seed", "5", "--out", str(out)],
        cwd=ROOT, capture_output=True, text=True, timeout=600, stdin=subprocess.DEVNULL,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert "Traceback" not in proc.stderr
    assert "demo-site-1" in proc.stdout and "demo-site-2" in proc.stdout
    assert (out / "trends" / "car-t-expansion-trends.pdf").read_bytes().startswith(b"%PDF")
    trend = subprocess.run(
        [sys.executable, "-m", "cellbatch", "trend", "car-t-expansion", "--json",
         "--db", f"sqlite:///{out / 'demo.sqlite'}"],
        cwd=ROOT, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert trend.returncode == 0, trend.stderr
    report = json.loads(trend.stdout)
    doubling = [b["figures"]["doubling_time_h"] for b in report["batches"]]
    assert len(doubling) == 2 and all(15 <= d <= 40 for d in doubling), doubling
    assert doubling[0] != doubling[1]  # each batch drew its own biology
    assert {b["site"] for b in report["batches"]} == {"demo-site-1", "demo-site-2"}
