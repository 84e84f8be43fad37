"""One band function for monitors, review and the PDF charts (issue 12.9): the same
verdict for every value, and charts judge only samples after the monitor's activation."""

from __future__ import annotations

import pytest

from ebr import Store
from ebr.exports.report.analysis import analyse
from ebr.review.bands import Band
from ebr.review.samples import _limits
from ebr.review.view import MonitorLimits
from tests.ebr.review_batches import EXTRA, iso, write

LIMITS = MonitorLimits("temperature", "bioreactor.temperature.pv", "degC", 36.5, 37.5, 36.0, 38.0)
BAND = Band(36.5, 37.5, 36.0, 38.0)


@pytest.mark.parametrize(
    ("value", "level", "breach"),
    [
        (37.0, "normal", None),
        (37.6, "alert", ("high", 37.5, False)),
        (38.2, "action", ("high", 37.5, True)),
        (36.4, "alert", ("low", 36.5, False)),
        (35.9, "action", ("low", 36.5, True)),
    ],
)
def test_monitor_review_and_chart_agree(
    value: float, level: str, breach: tuple[str, float, bool] | None
) -> None:
    assert BAND.level(value)[0] == level  # the controller's monitors
    assert _limits(LIMITS, value) == breach  # review's excursions
    assert BAND.outside(value) is (breach is not None)  # the PDF's marks


def test_hysteresis_narrows_the_band_when_easing() -> None:
    assert BAND.level(37.45, margin=0.1) == ("alert", 37.4)
    assert BAND.level(37.35, margin=0.1) == ("normal", None)


@pytest.mark.sqlite_only
async def test_charts_judge_samples_from_the_monitors_activation(store: Store) -> None:
    await write(store, EXTRA["CLEAN"]("CLEAN"))
    record = analyse(store, "CLEAN")
    since = {m.name: m.since for m in record.monitors}
    assert since == {"temperature": iso(140), "ph": iso(140)}
