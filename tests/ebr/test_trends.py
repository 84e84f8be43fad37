"""Trends across batches (issue 14): figures from the records, I-MR charts flag a batch we
made slow, and the site comparison tells an equivalent site from a shifted one."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest
from click.testing import CliRunner

from cellbatch.cli import cli
from ebr import Store
from ebr.exports.trends import charts, collect, compare_sites, tost
from tests.ebr.trend_batches import Biology, write_expansions

pytestmark = pytest.mark.slow
SLOW = "EXP-025"


def _plan() -> list[tuple[str, str, Biology]]:
    rng = random.Random(2026)
    plan = []
    for i in range(32):
        bio = Biology.draw(rng)
        if i == 25:
            bio = Biology(bio.lag_h, 40.0, bio.viability)  # deliberately slow
        plan.append((f"EXP-{i:03d}", "hub-a", bio))
    plan += [(f"EXB-{i:03d}", "hub-b", Biology.draw(rng)) for i in range(12)]
    plan += [(f"EXC-{i:03d}", "hub-c", Biology.draw(rng, doubling_shift=6.0)) for i in range(12)]
    return plan


@pytest.fixture(scope="module")
def trend_db(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("trends") / "trends.sqlite"
    import asyncio

    store = Store.open(f"sqlite:///{path}")
    asyncio.run(write_expansions(store, _plan()))
    store.close()
    return path


def test_figures_follow_the_seeded_biology(trend_db: Path) -> None:
    store = Store.open(f"sqlite:///{trend_db}")
    try:
        batches = collect(store, "car-t-expansion", site="hub-a")
    finally:
        store.close()
    assert len(batches) == 32
    plan = {batch_id: bio for batch_id, _, bio in _plan()}
    for batch in batches:
        bio = plan[batch.batch_id]
        figures = batch.figures
        assert figures["doubling_time_h"] == pytest.approx(bio.doubling_h, rel=0.12)
        assert figures["lag_h"] == pytest.approx(bio.lag_h, abs=8)
        assert figures["final_viability_pct"] == pytest.approx(bio.viability, abs=1.5)
        assert 30 <= (figures["fold_expansion"] or 0) <= 200
        assert figures["excursion_min.temperature"] == 0
        assert figures["holds"] == 0 and figures["duration_h"] == pytest.approx(266, abs=1)


def test_the_slow_batch_is_flagged_on_the_doubling_time_chart(trend_db: Path) -> None:
    store = Store.open(f"sqlite:///{trend_db}")
    try:
        batches = collect(store, "car-t-expansion", site="hub-a")
    finally:
        store.close()
    by_figure = {chart.figure: chart for chart in charts(batches, baseline=20)}
    chart = by_figure["doubling_time_h"]
    flagged = chart.flagged()
    assert SLOW in flagged and any(rule.startswith("1:") for rule in flagged[SLOW])
    beyond = [b for b, rules in flagged.items() if any(r.startswith("1:") for r in rules)]
    assert len(beyond) <= 4, flagged  # the others stay (nearly all) in control
    worst = max(zip(chart.values, chart.batch_ids, strict=True))
    assert worst[1] == SLOW and (worst[0] - chart.centre) / chart.sigma > 10


def test_cli_trend_writes_charts_and_json(trend_db: Path, tmp_path: Path) -> None:
    out = tmp_path / "charts"
    result = CliRunner().invoke(
        cli,
        ["trend", "car-t-expansion", "--db", f"sqlite:///{trend_db}", "--site", "hub-a",
         "--baseline", "20", "--json", "--out", str(out)],
    )  # fmt: skip
    assert result.exit_code == 0, result.stderr
    report = json.loads(result.stdout)
    assert len(report["batches"]) == 32
    assert SLOW in report["out_of_trend"]
    assert (out / "chart-doubling_time_h.png").read_bytes().startswith(b"\x89PNG")
    assert (out / "car-t-expansion-trends.pdf").read_bytes().startswith(b"%PDF")


def test_compare_sites_tells_equivalent_from_shifted(trend_db: Path, tmp_path: Path) -> None:
    store = Store.open(f"sqlite:///{trend_db}")
    try:
        batches = [b for b in collect(store, "car-t-expansion") if b.batch_id != SLOW]
    finally:
        store.close()
    results = {
        (r.figure, r.site): r
        for r in compare_sites(batches, {"doubling_time_h": 3.0}, reference="hub-a")
    }
    assert results[("doubling_time_h", "hub-b")].equivalent
    shifted = results[("doubling_time_h", "hub-c")]
    assert not shifted.equivalent and shifted.difference == pytest.approx(6.0, abs=2.0)
    out = tmp_path / "sites"
    result = CliRunner().invoke(
        cli,
        ["trend", "car-t-expansion", "--db", f"sqlite:///{trend_db}", "--compare-sites",
         "--reference-site", "hub-a", "--margin", "doubling_time_h=3", "--out", str(out)],
    )  # fmt: skip
    assert result.exit_code == 0, result.stderr
    assert "doubling_time_h  hub-b" in result.stdout and "NOT equivalent" in result.stdout
    assert (out / "sites-doubling_time_h.png").exists()


def test_tost_on_known_samples() -> None:
    same = tost([10.0, 10.5, 9.5, 10.2, 9.8], [10.1, 9.9, 10.3, 9.7, 10.0], 1.0)
    apart = tost([13.0, 13.5, 12.5, 13.2, 12.8], [10.1, 9.9, 10.3, 9.7, 10.0], 1.0)
    assert same is not None and same[2] < 0.05
    assert apart is not None and apart[2] > 0.5
