"""Seeded per-batch biology (issue 14): each vessel draws lag, growth and death rates
within published ranges; the same seed always gives the same batch."""

from __future__ import annotations

import math
import random

import pytest

from simulators.bioreactor.kinetics import BIOLOGY_RANGES, GrowthParameters, draw_growth
from simulators.bioreactor.opcua_server import BioreactorServer
from simulators.bioreactor.physics import BioreactorModel
from tests.simulators.test_sim_physics import DAY_S, STEP_S, apply_recipe


def test_draws_stay_in_published_ranges_and_vary() -> None:
    draws = [draw_growth(random.Random(seed)) for seed in range(300)]
    for name, (low, high) in BIOLOGY_RANGES.items():
        values = [getattr(g, name) for g in draws]
        assert all(low <= v <= high for v in values), name
        assert len(set(values)) > 250, name  # not one fixed value
    base = GrowthParameters()
    lags = sorted(g.lag_h for g in draws)
    assert lags[0] < base.lag_h < lags[-1]
    assert draw_growth(random.Random(5)) == draw_growth(random.Random(5))


def _doubling_and_viability(growth: GrowthParameters) -> tuple[float, float]:
    """Steepest doubling time (h) between day 2 and 8, and viability at day 10."""
    model = BioreactorModel(seed=1, growth=growth)
    density: list[tuple[float, float]] = []
    viability = 0.0
    for k in range(round(10 * DAY_S / STEP_S)):
        apply_recipe(model.setpoints, k * STEP_S / DAY_S)
        if k == 60:
            model.inoculate(50.0, 1e8)
        model.step(STEP_S)
        if k % 60 == 0 and k > 60:
            density.append((k * STEP_S / 3600, model.culture.viable_per_ml))
        viability = model.culture.viability_pct
    best = 0.0
    for (t0, x0), (t1, x1) in zip(density, density[24:], strict=False):
        best = max(best, math.log(x1 / x0) / (t1 - t0))
    return math.log(2) / best, viability


@pytest.mark.slow
def test_drawn_batches_grow_within_published_ranges() -> None:
    results = [_doubling_and_viability(draw_growth(random.Random(seed))) for seed in range(4)]
    for doubling, viability in results:
        assert 20.0 <= doubling <= 36.0, results
        assert 85.0 <= viability <= 99.0, results
    assert len({round(d, 2) for d, _ in results}) == 4


def test_server_vessels_draw_their_own_biology_only_when_seeded() -> None:
    fixed = BioreactorServer(["A", "B"], url="opc.tcp://127.0.0.1:0/x", seed=3)
    seeded = BioreactorServer(["A", "B"], url="opc.tcp://127.0.0.1:0/x", seed=3, biology="seeded")
    again = BioreactorServer(["A", "B"], url="opc.tcp://127.0.0.1:0/x", seed=3, biology="seeded")
    assert fixed.vessel("A").growth == fixed.vessel("B").growth == GrowthParameters()
    assert seeded.vessel("A").growth != seeded.vessel("B").growth
    assert seeded.vessel("A").growth == again.vessel("A").growth
    with pytest.raises(ValueError, match="biology must be one of"):
        BioreactorServer(["A"], url="opc.tcp://127.0.0.1:0/x", biology="wild")
