"""Rule `out_of_trend` (issue 14): a batch whose trend figure breaks the run rules against
its recipe's declared baseline (the first 25 ended batches) is a review exception."""

from __future__ import annotations

import asyncio
import json
import random
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from cellbatch.cli import cli
from ebr import Store
from ebr.review.exceptions import load_rules, review
from ebr.review.rules import parse_rules
from tests.ebr.trend_batches import Biology, write_expansions

pytestmark = pytest.mark.slow
BASELINE = 25


def _plan() -> list[tuple[str, str, Biology]]:
    rng = random.Random(1414)
    plan = [(f"BASE-{i:03d}", "hub-a", Biology.draw(rng)) for i in range(BASELINE)]
    slow = Biology.draw(rng)
    plan += [
        ("NORMAL", "hub-a", Biology.draw(rng)),
        ("SLOW", "hub-a", Biology(slow.lag_h, 40.0, slow.viability)),  # deliberately slow
        ("AFTER", "hub-a", Biology.draw(rng)),
    ]
    return plan


@pytest.fixture(scope="module")
def trend_db(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("trend-review") / "trends.sqlite"
    store = Store.open(f"sqlite:///{path}")
    try:
        asyncio.run(write_expansions(store, _plan(), step_min=60.0))
    finally:
        store.close()
    return path


def _trend(store: Store, batch_id: str, site_rules: str | None = None) -> list[str]:
    rules = parse_rules("site.toml", site_rules) if site_rules else load_rules(None)
    return [e.id for e in review(store, batch_id, rules) if e.rule == "out_of_trend"]


def test_the_slow_batch_is_out_of_trend_and_a_normal_one_is_not(trend_db: Path) -> None:
    store = Store.open(f"sqlite:///{trend_db}")
    try:
        found = {e.evidence.facts["figure"]: e for e in review(store, "SLOW", load_rules(None))
                 if e.rule == "out_of_trend"}  # fmt: skip
        # slower growth: a longer doubling time and (its consequence) a smaller expansion
        assert {"doubling_time_h", "fold_expansion"} <= set(found)
        slow = found["doubling_time_h"]
        assert slow.id.endswith(".doubling_time_h") and slow.severity == "major"
        assert slow.title.startswith("doubling_time_h 40") and "1: beyond 3 sigma" in slow.title
        assert slow.evidence.facts["baseline"] == BASELINE
        assert slow.category == "out of trend"
        assert _trend(store, "NORMAL") == []
        assert _trend(store, "AFTER") == []  # limits from the baseline, not from SLOW
        assert _trend(store, "BASE-010") == []  # part of the baseline: not judged
        # a site that declares a longer baseline than there are batches judges none
        assert _trend(store, "SLOW", "[out_of_trend]\nbaseline = 30\n") == []
        assert _trend(store, "SLOW", "[out_of_trend]\nenabled = false\n") == []
    finally:
        store.close()


def test_ebr_review_lists_the_out_of_trend_exception(trend_db: Path) -> None:
    db = f"sqlite:///{trend_db}"
    result = CliRunner().invoke(cli, ["ebr", "review", "SLOW", "--db", db, "--json"])
    assert result.exit_code == 0, result.output
    rules = {e["rule"] for e in json.loads(result.stdout)["exceptions"]}
    assert "out_of_trend" in rules
    result = CliRunner().invoke(cli, ["ebr", "review", "NORMAL", "--db", db, "--json"])
    assert result.exit_code == 0, result.output
    assert "out_of_trend" not in {e["rule"] for e in json.loads(result.stdout)["exceptions"]}


_FORKED_VS_SERIAL = """
import json, sys
from ebr import Store
from ebr.record.verify import can_fork
from ebr.review.trends import collect
store = Store.open(sys.argv[1])
assert can_fork(store), "no worker processes: the comparison would be serial against serial"
serial = [b.to_dict() for b in collect(store, "car-t-expansion", site="hub-a")]
forked = [
    b.to_dict()
    for b in collect(store, "car-t-expansion", site="hub-a", jobs=2, min_parallel=2)
]
store.close()
print(json.dumps({"same": forked == serial, "batches": len(serial)}))
"""


def test_worker_processes_read_the_same_figures(trend_db: Path) -> None:
    # In a process of its own: workers are forked only where no other thread runs, and a
    # test session may have threads of earlier tests still about.
    done = subprocess.run(
        [sys.executable, "-c", _FORKED_VS_SERIAL, f"sqlite:///{trend_db}"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    answer = json.loads(done.stdout.strip().splitlines()[-1])
    assert answer == {"same": True, "batches": BASELINE + 3}
