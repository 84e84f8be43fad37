"""BioreactorModel: pure physics, stepped directly (no server)."""

from __future__ import annotations

import math

import pytest

from simulators.bioreactor.physics import (
    MEASUREMENT_NAMES,
    SETPOINT_FIELDS,
    BioreactorModel,
    Setpoints,
    VesselStateError,
)
from simulators.bioreactor.tags import TAGS

STEP_S = 60.0
DAY_S = 86_400.0


def run_for(model: BioreactorModel, seconds: float) -> None:
    for _ in range(round(seconds / STEP_S)):
        model.step(STEP_S)


def apply_recipe(sp: Setpoints, day: float) -> None:
    """The reference CAR-T expansion schedule (domain notes) as setpoints."""
    sp.temperature_c, sp.ph, sp.do_pct = 37.0, 7.2, 50.0
    sp.volume_ml, sp.rocking_rpm, sp.rocking_angle_deg = 150.0, 6.0, 6.0
    if day >= 3:
        sp.volume_ml, sp.rocking_rpm, sp.rocking_angle_deg = 500.0, 8.0, 7.0
    if day >= 5:
        sp.volume_ml, sp.rocking_rpm = 1000.0, 10.0
        sp.perfusion_ml_per_day = min(2000.0, 500.0 + (day - 5.0) / 4.0 * 1500.0)
    if day >= 7:
        sp.rocking_rpm, sp.rocking_angle_deg = 12.0, 8.0


def test_tag_list_matches_model() -> None:
    assert {t.path for t in TAGS if not t.writable} == set(MEASUREMENT_NAMES)
    assert {t.path for t in TAGS if t.writable} == set(SETPOINT_FIELDS)
    assert set(SETPOINT_FIELDS.values()) == set(Setpoints.__slots__)


def test_temperature_settles_to_setpoint_with_ten_minute_time_constant() -> None:
    m = BioreactorModel(seed=1)
    assert m.temperature_c == pytest.approx(22.0)
    run_for(m, 600.0)  # one time constant: 63 % of the way from 22 to 37
    assert m.temperature_c == pytest.approx(22.0 + 15.0 * (1 - math.exp(-1)), abs=0.01)
    run_for(m, 2 * 3600.0)
    assert m.temperature_c == pytest.approx(37.0, abs=0.01)
    assert m.measurements()["Temperature.PV"] == pytest.approx(37.0, abs=0.1)
    m.setpoints.temperature_c = 30.0
    run_for(m, 3600.0)
    assert m.temperature_c == pytest.approx(30.0, abs=0.05)
    m.setpoints.temperature_c = 10.0  # a heater pad cannot cool below ambient
    run_for(m, 4 * 3600.0)
    assert m.temperature_c == pytest.approx(22.0, abs=0.05)


def test_reference_expansion_reaches_target_and_stays_healthy() -> None:
    m = BioreactorModel(seed=3)
    inoculum = 1e8
    fold_day_11 = peak_density = 0.0
    worst = {"temp": 0.0, "ph_lo": 14.0, "ph_hi": 0.0, "do": 100.0, "viab": 100.0}
    for k in range(round(12 * DAY_S / STEP_S)):
        t_s = k * STEP_S
        apply_recipe(m.setpoints, t_s / DAY_S)
        if k == 60:  # day 0, after the 150 mL fill has warmed for an hour
            m.inoculate(50.0, inoculum)
        m.step(STEP_S)
        if k < 120:  # judge health from one hour after inoculation
            continue
        c = m.culture
        worst["temp"] = max(worst["temp"], abs(m.temperature_c - 37.0))
        worst["ph_lo"], worst["ph_hi"] = min(worst["ph_lo"], m.ph), max(worst["ph_hi"], m.ph)
        worst["do"] = min(worst["do"], m.do_pct)
        worst["viab"] = min(worst["viab"], c.viability_pct)
        if m.time_s >= 10 * DAY_S:
            peak_density = max(peak_density, c.viable_per_ml)
        if m.time_s == 11 * DAY_S:
            fold_day_11 = m.viable_cells / inoculum
    assert 30.0 <= fold_day_11 <= 100.0, fold_day_11
    assert 6e6 <= peak_density <= 1.5e7, peak_density
    assert m.volume_ml == pytest.approx(1000.0)
    assert worst["temp"] <= 0.3
    assert worst["ph_lo"] >= 7.0 and worst["ph_hi"] <= 7.4
    assert worst["do"] >= 40.0
    assert worst["viab"] > 80.0


def test_without_perfusion_the_culture_acidifies_and_dies() -> None:
    m = BioreactorModel(seed=3)
    for k in range(round(9 * DAY_S / STEP_S)):
        apply_recipe(m.setpoints, min(k * STEP_S / DAY_S, 4.0))  # schedule frozen at day 4
        if k == 60:
            m.inoculate(50.0, 1e8)
        m.step(STEP_S)
    c = m.culture
    assert c.glucose_mm < 2.0
    assert c.lactate_mm > 30.0
    assert m.ph < 7.1
    assert c.viability_pct < 60.0


def test_fill_is_rate_limited_and_never_drains() -> None:
    m = BioreactorModel()
    m.setpoints.volume_ml = 500.0
    run_for(m, 600.0)
    assert m.volume_ml == pytest.approx(200.0)  # 20 mL/min
    run_for(m, 3600.0)
    assert m.volume_ml == pytest.approx(500.0)
    m.setpoints.volume_ml = 100.0
    run_for(m, 3600.0)
    assert m.volume_ml == pytest.approx(500.0)


def test_perfusion_exchanges_medium_at_constant_volume() -> None:
    m = BioreactorModel()
    m.setpoints.volume_ml = 1000.0
    run_for(m, 2 * 3600.0)
    m.inoculate(50.0, 5e9)
    m.setpoints.volume_ml = 1050.0
    run_for(m, DAY_S)
    lactate_before = m.culture.lactate_mm
    m.setpoints.perfusion_ml_per_day = 2000.0
    volumes = []
    for _ in range(round(DAY_S / STEP_S)):
        m.step(STEP_S)
        volumes.append(m.volume_ml)
    assert max(volumes) - min(volumes) < 1e-9
    assert m.perfusion_ml_per_day == 2000.0
    assert m.measurements()["Perfusion.RatePV"] == 2000.0
    assert m.culture.lactate_mm < lactate_before
    assert m.culture.glucose_mm > 15.0


def test_dense_culture_at_slow_rocking_falls_below_do_setpoint() -> None:
    m = BioreactorModel()
    m.setpoints.volume_ml = 1000.0
    m.setpoints.rocking_rpm, m.setpoints.rocking_angle_deg = 12.0, 8.0
    run_for(m, 3 * 3600.0)
    m.inoculate(50.0, 2.5e10)  # ~2.4e7 cells/mL
    run_for(m, 3600.0)
    assert m.do_pct >= 50.0 - 0.5  # fast rocking with O2 enrichment holds the setpoint
    m.setpoints.rocking_rpm, m.setpoints.rocking_angle_deg = 3.0, 4.0
    run_for(m, 3 * 3600.0)
    assert m.do_pct < 40.0


def test_rocking_follows_setpoints() -> None:
    m = BioreactorModel()
    m.setpoints.rocking_rpm, m.setpoints.rocking_angle_deg = 12.0, 8.0
    m.step(STEP_S)
    pv = m.measurements()
    assert pv["Rocking.RatePV"] == 12.0 and pv["Rocking.AnglePV"] == 8.0
    assert m.kla_per_h() > BioreactorModel().kla_per_h()


def test_inoculate_once_only_and_validated() -> None:
    m = BioreactorModel()
    m.setpoints.volume_ml = 150.0
    run_for(m, 3600.0)
    for volume, cells in [(0.0, 1e8), (50.0, -1.0), (math.nan, 1e8), (50.0, math.inf)]:
        with pytest.raises(ValueError):
            m.inoculate(volume, cells)
    with pytest.raises(ValueError):
        m.inoculate(2000.0, 1e8)  # overfills the 2 L bag
    assert not m.inoculated
    m.inoculate(50.0, 1e8)
    assert m.inoculated
    assert m.volume_ml == pytest.approx(200.0)
    assert m.culture.viable_per_ml == pytest.approx(5e5)
    assert m.culture.viability_pct == pytest.approx(95.0)
    with pytest.raises(VesselStateError):
        m.inoculate(50.0, 1e8)


def test_harvest_removes_broth_and_full_harvest_frees_the_bag() -> None:
    m = BioreactorModel()
    with pytest.raises(VesselStateError):
        m.harvest(10.0)
    m.setpoints.volume_ml = 150.0
    run_for(m, 3600.0)
    m.inoculate(50.0, 1e8)
    cells = m.harvest(100.0)
    assert cells == pytest.approx(5e7)
    assert m.volume_ml == pytest.approx(100.0)
    assert m.setpoints.volume_ml == pytest.approx(100.0)  # the feed pump will not refill
    run_for(m, 3600.0)
    assert m.volume_ml == pytest.approx(100.0)
    with pytest.raises(ValueError):
        m.harvest(500.0)
    m.harvest(100.0)
    assert not m.inoculated and m.volume_ml == 0.0
    m.setpoints.volume_ml = 150.0
    run_for(m, 3600.0)
    m.inoculate(50.0, 1e8)  # a fresh bag may be inoculated again


def test_force_overrides_a_reading_only() -> None:
    m = BioreactorModel()
    run_for(m, 3600.0)
    m.force("Temperature.PV", 45.0)
    m.step(STEP_S)
    assert m.measurements()["Temperature.PV"] == 45.0
    assert m.forced == {"Temperature.PV": 45.0}
    assert m.temperature_c == pytest.approx(37.0, abs=0.05)  # the process is unaffected
    m.force("Temperature.PV", None)
    assert m.measurements()["Temperature.PV"] == pytest.approx(37.0, abs=0.2)
    with pytest.raises(KeyError):
        m.force("Temperature.SP", 1.0)


def test_seeded_noise_is_deterministic() -> None:
    def readings(seed: int) -> list[dict[str, float]]:
        m = BioreactorModel(seed=seed)
        m.setpoints.volume_ml = 200.0
        out = []
        for _ in range(30):
            m.step(STEP_S)
            out.append(m.measurements())
        return out

    assert readings(5) == readings(5)
    assert readings(5) != readings(6)


def test_one_long_step_equals_many_short_ones() -> None:
    a, b = BioreactorModel(), BioreactorModel()
    for m in (a, b):
        m.setpoints.volume_ml = 300.0
    a.step(3600.0)
    run_for(b, 3600.0)
    assert a.time_s == b.time_s == 3600.0
    assert a.volume_ml == pytest.approx(b.volume_ml)
    assert a.temperature_c == pytest.approx(b.temperature_c)
    with pytest.raises(ValueError):
        a.step(0.0)
