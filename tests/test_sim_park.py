"""The park simulator as a whole: PV timing, energy balance, steam and gas, determinism.

Expected values come from formulas written here (solar geometry after Spencer 1971, the meter accuracy
classes of the park file, GB/T 32150-2015 factors), not from the simulator.
"""

from __future__ import annotations

import math
from datetime import date
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from anning_lib.park import load_park
from anning_lib.sim import ParkSimulator
from anning_lib.sim.weather import load_climate, sky_class

ROOT = Path(__file__).resolve().parent.parent
DATA = ROOT / "data"
LAT, LON = 24.92, 102.48
SEED = 11


@pytest.fixture(scope="module")
def park():
    return load_park(DATA / "park" / "anning.yaml", DATA)


def _spencer(day_of_year: int) -> tuple[float, float]:
    """Equation of time [min] and declination [rad] (Spencer 1971, Search 2(5), 172)."""
    g = 2 * math.pi * (day_of_year - 1) / 365
    eot = 229.18 * (0.000075 + 0.001868 * math.cos(g) - 0.032077 * math.sin(g) - 0.014615 * math.cos(2 * g)
                    - 0.040849 * math.sin(2 * g))
    decl = (0.006918 - 0.399912 * math.cos(g) + 0.070257 * math.sin(g) - 0.006758 * math.cos(2 * g)
            + 0.000907 * math.sin(2 * g) - 0.002697 * math.cos(3 * g) + 0.00148 * math.sin(3 * g))
    return eot, decl


def solar_noon_local(day: date) -> pd.Timestamp:
    """Local solar noon in Beijing time (UTC+8, meridian 120 E): 12:00 - 4 min/deg * (120 - lon) ... - EoT."""
    eot, _ = _spencer(day.timetuple().tm_yday)
    minutes = 12 * 60 + 4 * (120 - LON) - eot
    return pd.Timestamp(day, tz="Asia/Shanghai") + pd.Timedelta(minutes=minutes)


def solar_elevation_deg(ts: pd.DatetimeIndex) -> np.ndarray:
    local = ts.tz_convert("Asia/Shanghai")
    out = []
    for t in local:
        eot, decl = _spencer(t.day_of_year)
        solar_time_min = t.hour * 60 + t.minute - 4 * (120 - LON) + eot
        hour_angle = math.radians(solar_time_min / 4 - 180)
        lat = math.radians(LAT)
        sin_el = math.sin(lat) * math.sin(decl) + math.cos(lat) * math.cos(decl) * math.cos(hour_angle)
        out.append(math.degrees(math.asin(sin_el)))
    return np.array(out)


@pytest.fixture(scope="module")
def dry_season(park):
    """Ten days at 1-minute steps in the dry season (mostly clear)."""
    sim = ParkSimulator(park, SEED, DATA)
    return pd.concat(sim.run(date(2026, 1, 5), date(2026, 1, 15), step="1min"))


def test_pv_is_zero_at_night(park, dry_season):
    elevation = solar_elevation_deg(dry_season.index)
    night = elevation < -1.0
    assert night.sum() > 5000
    for _e, d in park.iter_devices():
        if d.type == "pv":
            assert (dry_season.loc[night, f"{d.id}.p_kw"] == 0).all(), d.id


def test_pv_never_exceeds_inverter_rating(park, dry_season):
    for _e, d in park.iter_devices():
        if d.type == "pv":
            assert dry_season[f"{d.id}.p_kw"].max() <= d.p.ac_kw + 1e-9, d.id
            assert dry_season[f"{d.id}.p_kw"].min() >= 0.0


def test_clear_day_peak_at_solar_noon(park, dry_season):
    climate = load_climate(DATA / "sim" / "anning_climate.yaml")
    days = [d for d in pd.date_range("2026-01-05", "2026-01-14").date if sky_class(pd.Timestamp(d), climate, SEED) == "clear"]
    assert len(days) >= 3, "the dry season should give clear days"
    local = dry_season.tz_convert("Asia/Shanghai")
    for day in days:
        p = local.loc[str(day), "PARK-PV.p_kw"]
        # centre of the top of the curve (handles a clipped plateau): times within 2 % of the day's maximum
        top = p.index[p >= 0.98 * p.max()]
        centre = top[0] + (top[-1] - top[0]) / 2
        assert abs(centre - solar_noon_local(day)) <= pd.Timedelta(minutes=20), (day, centre)


@pytest.fixture(scope="module")
def week_15min(park):
    sim = ParkSimulator(park, SEED, DATA)
    return pd.concat(sim.run(date(2026, 7, 6), date(2026, 7, 13), step="15min"))


def _acc(d) -> float:
    return d.p.accuracy_class_pct / 100


def test_enterprise_main_meter_balances_its_sub_meters(park, week_15min):
    """main = sum(loads incl. boiler auxiliaries) * (1 + loss) - PV - BESS, within the meters' accuracy.

    Tolerance: half the main meter's class plus half the sub-meters' class 0.5 (calibration errors are drawn
    within half the class) plus 0.1 % for random error, of the gross load.
    """
    for e in park.enterprises:
        main = next(d for d in e.devices if d.type == "main_meter")
        loads = sum(week_15min[f"{d.id}.p_kw"] for d in e.devices if d.type in ("sub_meter", "process_line", "boiler"))
        gen = sum((week_15min[f"{d.id}.p_kw"] for d in e.devices if d.type in ("pv", "bess")), 0.0)
        expected = loads * (1 + main.p.loss_frac) - gen
        tol = (0.5 * _acc(main) + 0.5 * 0.005 + 0.001) * loads + 1.0
        err = (week_15min[f"{main.id}.p_kw"] - expected).abs()
        assert (err <= tol).all(), (e.id, float((err / loads).max()))


def test_grid_equals_enterprises_minus_pv_plus_storage_charging(park, week_15min):
    grid = park.device("GRID")
    mains = sum(week_15min[f"{d.id}.p_kw"] for e in park.enterprises for d in e.devices if d.type == "main_meter")
    pv = week_15min["PARK-PV.p_kw"]
    bess = week_15min["SES.p_kw"]                      # > 0 discharge, so charging adds to the import
    net = mains - pv - bess
    expected = net + grid.p.loss_frac * net.abs()
    # grid meter half-class, the main meters' half-class 0.25 %, random 0.1 %
    tol = (0.5 * _acc(grid) + 0.0025 + 0.001) * mains.abs()
    assert ((week_15min["GRID.p_kw"] - expected).abs() <= tol).all()
    assert (bess < 0).any() and (bess > 0).any(), "the shared storage should both charge and discharge"


def test_boiler_gas_follows_steam_and_cems_follows_gas(park, week_15min):
    """Gas = steam * 2.69 GJ/t / (efficiency * 0.038931 GJ/Nm3); CO2 = gas * 21.62 t / 10^4 Nm3
    (GB/T 32150-2015: 389.31 GJ/10^4 Nm3, 15.3 tC/TJ, oxidation 0.99; REFERENCE.md)."""
    b = park.device("E04-B1")
    steam = week_15min["E04-B1.steam_t_h"]
    gas = week_15min["E04-B1.gas_nm3_h"]
    assert steam.mean() > 10
    expected_gas = steam * 2.69 / (b.p.efficiency * 0.038931)
    assert np.allclose(gas, expected_gas, rtol=0.01)
    co2 = week_15min["E04-CEMS1.co2_t_h"].sum()
    gas_both = (week_15min["E04-B1.gas_nm3_h"] + week_15min["E04-B2.gas_nm3_h"]).sum()
    assert co2 == pytest.approx(gas_both * 21.62e-4, rel=0.01)


def test_steam_tracks_production(park, week_15min):
    """E05: steam of its one boiler = 1.3 t/t * polypropylene output (process steam per tonne, park file)."""
    line = park.device("E05-PP")
    ratio = week_15min["E05-B1.steam_t_h"].sum() / week_15min["E05-PP.production_t_h"].sum()
    assert ratio == pytest.approx(line.p.steam_t_per_t, rel=0.01)


def test_office_loads_follow_workdays(park):
    sim = ParkSimulator(park, SEED, DATA)
    # State Council 2026 schedule: 1-7 October off (5 October a Monday), Saturday 10 October worked in lieu.
    frame = pd.concat(sim.run(date(2026, 10, 5), date(2026, 10, 13), step="1h")).tz_convert("Asia/Shanghai")
    office = frame["E13-ADMIN.p_kw"]
    holiday_noon = office.loc["2026-10-05 12:00"]
    saturday_in_lieu_noon = office.loc["2026-10-10 12:00"]
    sunday_noon = office.loc["2026-10-11 12:00"]
    monday_noon = office.loc["2026-10-12 12:00"]
    monday_night = office.loc["2026-10-12 02:00"]
    assert monday_noon > 3 * holiday_noon and monday_noon > 3 * sunday_noon and monday_noon > 3 * monday_night
    assert saturday_in_lieu_noon > 3 * sunday_noon


def test_eaf_runs_in_heats(park):
    """An EAF at 1-minute resolution is either in power-on (high) or off (low): few minutes in between."""
    sim = ParkSimulator(park, SEED, DATA)
    day = sim.day(date(2026, 3, 10))["E01-EAF.p_kw"]
    rated = park.device("E01-EAF").p.rated_kw
    high = (day > 0.5 * rated).mean()
    low = (day < 0.1 * rated).mean()
    assert high > 0.5 and low > 0.15 and high + low > 0.95


def test_same_seed_same_numbers_other_seed_other_numbers(park):
    a = ParkSimulator(park, 5, DATA).day(date(2026, 5, 1))
    b = ParkSimulator(park, 5, DATA).day(date(2026, 5, 1))
    c = ParkSimulator(park, 6, DATA).day(date(2026, 5, 1))
    pd.testing.assert_frame_equal(a, b)
    assert not np.allclose(a["GRID.p_kw"], c["GRID.p_kw"])


def test_every_simulated_reading_lies_within_its_point_limits(park):
    """The gateway rejects readings outside a point's min/max, so the simulator must never produce one."""
    from datetime import timedelta

    sim = ParkSimulator(park, 20261125, DATA)
    limits = {f"{d.id}.{p.id}": (p.min, p.max) for _e, d, p in park.iter_points()}
    for k in range(0, 365, 30):                          # one day a month over a year
        frame = sim.day(date(2026, 1, 5) + timedelta(days=k))
        for tag, col in frame.items():
            lo, hi = limits[tag]
            assert lo is None or col.min() >= lo, (tag, col.min(), lo)
            assert hi is None or col.max() <= hi, (tag, col.max(), hi)
