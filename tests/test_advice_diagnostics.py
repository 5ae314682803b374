"""Diagnostics of an enterprise from its metered data (anning_lib.advice.diagnostics).

Expected values are worked out by hand in the comments, not taken from a run of the code.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from conftest import REPO

from anning_lib.advice.diagnostics import (
    band_energy_kwh,
    base_load_kw,
    flexible_peak_kwh,
    load_factor,
    peak_demand,
    power_factor,
    specific_use,
    trend,
)
from anning_lib.advice.readings import enterprise_diagnostics
from anning_lib.dispatch.tariff import load_tou_bands
from anning_lib.errors import AnningError, StoreError
from anning_lib.park import parse_park
from anning_lib.park.polygon import area_m2
from anning_lib.store import init_db, refresh_rollups, write_measurements

TZ = "Asia/Shanghai"
BANDS_FILE = REPO / "data" / "tariffs" / "yunnan_tou_2026.yaml"


def _quarters(start: str, days: int) -> pd.DatetimeIndex:
    return pd.date_range(pd.Timestamp(start, tz=TZ), periods=96 * days, freq="15min")


def _hours(idx: pd.DatetimeIndex) -> np.ndarray:
    return np.asarray(idx.hour + idx.minute / 60.0)


def _two_day_load() -> pd.Series:
    """1,000 kW flat, plus 2,000 kW 08:00-09:00 and 19:00-21:00 local, on 2026-03-02 and 03-03."""
    idx = _quarters("2026-03-02", 2)
    h = _hours(idx)
    extra = ((h >= 8) & (h < 9)) | ((h >= 19) & (h < 21))
    return pd.Series(1000.0 + 2000.0 * extra, index=idx, name="p_kw")


@pytest.fixture(scope="module")
def bands():
    return load_tou_bands(BANDS_FILE)[0]


def test_the_yunnan_bands_the_hand_values_assume(bands):
    # the hand values below take from the file: peak 07-09 and 18-24 (8 h), valley 02-06 and 12-16 (8 h), flat the
    # other 8 h (00-02, 06-07, 09-12, 16-18)
    hours = {b: sum(hi - lo for lo, hi, name in bands if name == b) for b in ("peak", "flat", "valley")}
    assert hours == {"peak": 8.0, "flat": 8.0, "valley": 8.0}
    assert (7.0, 9.0, "peak") in bands and (18.0, 24.0, "peak") in bands and (2.0, 6.0, "valley") in bands


# -------------------------------------------------------------------------------------------------- base load
def test_base_load_of_the_two_day_series():
    b = base_load_kw(_two_day_load())
    # 01:00-05:00 is 1,000 kW both nights; both days have the same energy, so none is idle
    assert b == {"night_kw": 1000.0, "idle_day_kw": None, "idle_days": 0}


def test_idle_day_detection():
    # four days at 1,000 kW (24,000 kWh each) and a fifth at 200 kW (4,800 kWh): the median day is 24,000 kWh,
    # 4,800 < 0.5 x 24,000, so day 5 is idle at 200 kW; the median of the nights [1000 x 4, 200] is 1,000
    idx = _quarters("2026-03-02", 5)
    p = pd.Series(np.where(idx.day == 6, 200.0, 1000.0), index=idx)
    assert base_load_kw(p) == {"night_kw": 1000.0, "idle_day_kw": 200.0, "idle_days": 1}
    # a day with half its quarter-hours missing is not idle: its mean power (1,000 kW) gives a full day's energy
    q = pd.Series(1000.0, index=idx)
    q[(idx.day == 4) & (idx.hour >= 12)] = np.nan
    assert base_load_kw(q)["idle_days"] == 0
    # the nights are local: 01:00-05:00 Beijing time is 17:00-21:00 UTC of the day before
    utc = p.tz_convert("UTC")
    assert base_load_kw(utc) == base_load_kw(p)


def test_base_load_without_data():
    empty = pd.Series([], index=pd.DatetimeIndex([], tz=TZ), dtype="float64")
    assert base_load_kw(empty) == {"night_kw": None, "idle_day_kw": None, "idle_days": 0}
    with pytest.raises(AnningError, match="p_kw"):
        base_load_kw(pd.Series([1.0], index=pd.DatetimeIndex(["2026-03-02 01:00"])))   # naive index


# -------------------------------------------------------------------------------------------------- load factor
def test_load_factor_by_hand():
    # mean = (1,000 x 24 h + 2,000 x 3 h) / 24 h = 1,250 kW; max 3,000 kW -> 1,250 / 3,000 = 0.41667
    assert load_factor(_two_day_load()) == pytest.approx(1250.0 / 3000.0)
    p = _two_day_load()
    p.iloc[:10] = np.nan                                  # NaN-safe: 10 quarters of 1,000 kW left out
    # mean = (1,250 x 192 - 1,000 x 10) / 182 = 230,000 / 182
    assert load_factor(p) == pytest.approx(230000.0 / 182 / 3000.0)
    assert load_factor(pd.Series([np.nan, np.nan], index=_quarters("2026-03-02", 1)[:2])) is None


# -------------------------------------------------------------------------------------------------- tariff bands
def test_band_energy_by_hand(bands):
    e = band_energy_kwh(_two_day_load(), bands)
    # per day: peak 8 h x 1,000 + 2,000 x (1 h of 08-09 + 2 h of 19-21) = 14,000; flat 8 h x 1,000 = 8,000;
    # valley 8,000. Two days: 28,000 / 16,000 / 16,000 (sum 60,000 = 1,250 kW x 48 h)
    assert e == pytest.approx({"peak": 28000.0, "flat": 16000.0, "valley": 16000.0})
    # bands are read in local time: the same instants in UTC give the same split
    assert band_energy_kwh(_two_day_load().tz_convert("UTC"), bands) == pytest.approx(e)


def test_flexible_peak_energy_by_hand(bands):
    # above the 1,000 kW base in peak hours: 2,000 kW x 3 h (08-09 and 19-21) x 2 days = 12,000 kWh
    assert flexible_peak_kwh(_two_day_load(), bands, 1000.0) == pytest.approx(12000.0)
    flat = pd.Series(1000.0, index=_quarters("2026-03-02", 2))
    assert flexible_peak_kwh(flat, bands, 1000.0) == 0.0
    # with a base of 1,500 kW: 1,500 x 3 h x 2 = 9,000 kWh (the flat 1,000 kW never counts negative)
    assert flexible_peak_kwh(_two_day_load(), bands, 1500.0) == pytest.approx(9000.0)


# -------------------------------------------------------------------------------------------------- demand, pf
def test_peak_demand_by_hand():
    d = peak_demand(_two_day_load(), 5000.0)
    # 24 of 192 quarters at 3,000 kW (3 h x 4 x 2 days); the 95 % quantile sits at position 0.95 x 191 = 181.45 of
    # the sorted values, among the 3,000s (positions 168-191); first 3,000 at 08:00 on 2 March; 3,000 / 5,000 = 0.6
    assert d == {"max_kw": 3000.0, "max_at": pd.Timestamp("2026-03-02 08:00", tz=TZ), "p95_kw": 3000.0,
                 "utilisation_frac": pytest.approx(0.6)}
    assert peak_demand(_two_day_load(), None)["utilisation_frac"] is None
    assert peak_demand(pd.Series([], index=pd.DatetimeIndex([], tz=TZ), dtype="float64"), 5000.0)["max_kw"] is None


def test_power_factor_by_hand():
    idx = _quarters("2026-03-02", 1)
    p, q = pd.Series(800.0, index=idx), pd.Series(600.0, index=idx)
    # 800 / sqrt(800^2 + 600^2) = 800 / 1,000 = 0.8 in every quarter: all below 0.90
    got = power_factor(p, q)
    assert got == {"pf": pytest.approx(0.8), "low_share": 1.0, "threshold": 0.90} and type(got["pf"]) is float
    # leading reactive power returned to the grid counts by its absolute value (1983 method, 二)
    assert power_factor(p, -q)["pf"] == pytest.approx(0.8)
    # half the quarters compensated (Q = 0): W_Q / W_P = 300 / 800 = 0.375 -> pf = 1 / sqrt(1 + 0.375^2) = 0.93633
    # (energy-weighted; the mean of the quarter-hour pfs would be 0.9); half of the quarters are below 0.90
    q2 = q.where(np.arange(len(idx)) % 2 == 0, 0.0)
    got = power_factor(p, q2)
    assert got["pf"] == pytest.approx(1.0 / math.sqrt(1.0 + 0.375 ** 2)) and got["low_share"] == 0.5
    assert power_factor(p, None) is None
    assert power_factor(p, pd.Series(np.nan, index=idx)) is None


def test_specific_use():
    assert specific_use(36000.0, 100.0) == 360.0        # 36,000 kWh / 100 t
    assert specific_use(5.0, 0.0) is None and specific_use(5.0, None) is None and specific_use(None, 3.0) is None


# -------------------------------------------------------------------------------------------------- trend
def test_trend_by_hand():
    # [100, 110, 120]: slope 10 per month, (120 - 100) / 100 = 0.2, up
    t = trend(pd.Series([100.0, 110.0, 120.0], index=["2026-01", "2026-02", "2026-03"]))
    assert t == {"months": 3, "slope_per_month": pytest.approx(10.0), "change_frac": pytest.approx(0.2),
                 "direction": "up"}
    # month periods, out of order, with a missing month: x = 0, 1, 3 for y = 100, 110, 130 -> slope 10
    per = pd.Series([130.0, 100.0, 110.0], index=pd.PeriodIndex(["2026-04", "2026-01", "2026-02"], freq="M"))
    assert trend(per)["slope_per_month"] == pytest.approx(10.0)
    assert trend(pd.Series([100.0, 101.5], index=["2026-01", "2026-02"]))["direction"] == "flat"   # 1.5 % < 2 %
    assert trend(pd.Series([100.0, 90.0], index=["2026-01", "2026-02"]))["direction"] == "down"
    assert trend(pd.Series([0.0, 5.0], index=["2026-01", "2026-02"])) == {
        "months": 2, "slope_per_month": pytest.approx(5.0), "change_frac": None, "direction": "up"}
    assert trend(pd.Series([7.0], index=["2026-01"]))["slope_per_month"] is None


def test_footprint_area_of_a_rectangle():
    # 40 m x 20 m = 800 m2, either orientation; a right triangle of legs 40 and 20: 400 m2
    assert area_m2([(0, 0), (40, 0), (40, 20), (0, 20)]) == 800.0
    assert area_m2([(0, 0), (0, 20), (40, 20), (40, 0)]) == 800.0
    assert area_m2([(300, 200), (340, 200), (340, 220)]) == 400.0


# -------------------------------------------------------------------------------------------------- from the store
def _park():
    def pt(i, q, u, lo=-1e5, hi=1e5):
        return {"id": i, "quantity": q, "unit": u, "min": lo, "max": hi}

    def dev(i, t, points, params=None, proto="modbus"):
        return {"id": i, "name": i, "type": t, "protocol": proto, "params": params or {}, "points": points}

    return parse_park({
        "meta": {"name": "诊断测试园区", "name_en": "diagnostics test park", "version": "t1", "year": 2026,
                 "source": "tests", "site": {"latitude_deg": 24.9, "longitude_deg": 102.5, "altitude_m": 1850,
                                             "origin": "gate"}},
        "park_devices": [dev("G0", "grid_meter", [pt("p_kw", "active_power", "kW")])],
        "enterprises": [
            {"id": "E01", "name": "钢厂", "name_en": "steel works", "sector": "steel",
             "buildings": [{"id": "B1", "name": "车间", "footprint_m": [[0, 0], [40, 0], [40, 20], [0, 20]],
                            "height_m": 18},
                           {"id": "B2", "name": "仓库", "footprint_m": [[100, 0], [140, 0], [140, 20]],
                            "height_m": 10}],
             "devices": [
                 dev("E01-M0", "main_meter", [pt("p_kw", "active_power", "kW"),
                                              pt("q_kvar", "reactive_power", "kvar")], {"rated_kva": 5000}),
                 dev("E01-PV", "pv", [pt("p_kw", "active_power", "kW", 0)],
                     {"dc_kwp": 120.0, "ac_kw": 100.0, "tilt_deg": 10.0}),
                 dev("E01-BESS", "bess", [pt("p_kw", "active_power", "kW")],
                     {"capacity_kwh": 400.0, "p_max_kw": 200.0}),
                 dev("E01-B1", "boiler", [pt("steam_t_h", "mass_flow", "kg/h", 0),
                                          pt("gas_nm3_h", "volume_flow_gas", "Nm3/h", 0)],
                     {"steam_rated_t_h": 20.0}),
                 dev("E01-L1", "process_line", [pt("p_kw", "active_power", "kW", 0),
                                                pt("production_t_h", "production_rate", "t/h", 0)],
                     {"profile": "continuous", "rated_kw": 2000, "load_factor": 0.9}, "opcua"),
             ]},
            {"id": "E02", "name": "水厂", "name_en": "water works", "sector": "utilities",
             "devices": [dev("E02-M0", "main_meter", [pt("p_kw", "active_power", "kW")], proto="mqtt")]},
        ],
    }, data_dir=REPO / "data")


@pytest.fixture
def store(engine):
    park = _park()
    init_db(engine, park)
    return engine, park


def _write_two_days(engine):
    """E01 over 2026-03-02/03 local, one 15-minute mean per quarter-hour (the hand values' inputs):

    load L = _two_day_load() (1,000 kW + 2,000 kW 08-09 and 19-21); PV 100 kW 10:00-14:00; storage charging
    200 kW 02:00-03:00 and discharging 180 kW 19:00-20:00; main meter = L - PV - storage (the glossary's balance);
    Q 750 kvar; boiler steam 10,000 kg/h (10 t/h) on 700 Nm3/h of gas; production 50 t/h.
    """
    load = _two_day_load()
    idx, h = load.index, _hours(load.index)
    pv = np.where((h >= 10) & (h < 14), 100.0, 0.0)
    bess = np.where((h >= 2) & (h < 3), -200.0, 0.0) + np.where((h >= 19) & (h < 20), 180.0, 0.0)
    series = {"E01-M0.p_kw": load.to_numpy() - pv - bess, "E01-M0.q_kvar": 750.0, "E01-PV.p_kw": pv,
              "E01-BESS.p_kw": bess, "E01-B1.steam_t_h": 10000.0, "E01-B1.gas_nm3_h": 700.0,
              "E01-L1.production_t_h": 50.0}
    frames = [pd.DataFrame({"tag": tag, "ts": idx, "value": np.broadcast_to(v, len(idx)).astype(float)})
              for tag, v in series.items()]
    write_measurements(engine, pd.concat(frames, ignore_index=True))
    refresh_rollups(engine, idx[0], idx[-1] + pd.Timedelta("15min"))


def test_enterprise_diagnostics_from_the_store(store):
    engine, park = store
    _write_two_days(engine)
    start, end = pd.Timestamp("2026-03-02", tz=TZ), pd.Timestamp("2026-03-04", tz=TZ)
    d = enterprise_diagnostics(engine, park, "E01", start, end, data_dir=REPO / "data")
    assert d["enterprise_id"] == "E01" and d["start"] == start and d["end"] == end and d["days"] == 2.0
    assert d["quarters"] == 192 and d["coverage_frac"] == 1.0
    # grid per day = 30,000 (load) - 400 (PV 100 kW x 4 h) + 200 (charging) - 180 (discharging) = 29,620
    assert d["grid_kwh"] == pytest.approx(2 * 29620.0)
    # consumption = grid + PV + storage = the load: 1,250 kW x 48 h
    assert d["consumption_kwh"] == pytest.approx(60000.0)
    assert d["base"] == {"night_kw": pytest.approx(1000.0), "idle_day_kw": None, "idle_days": 0}
    assert d["load_factor"] == pytest.approx(1250.0 / 3000.0)
    # grid per day by band: peak 14,000 - 180 (discharge 19-20) = 13,820; flat 8,000 - 200 (PV 10-12) = 7,800;
    # valley 8,000 + 200 (charging 02-03) - 200 (PV 12-14) = 8,000
    assert d["bands_kwh"] == pytest.approx({"peak": 27640.0, "flat": 15600.0, "valley": 16000.0})
    assert d["peak_share"] == pytest.approx(27640.0 / 59240.0)
    # grid above the 1,000 kW night base in peak hours, per day: 2,000 (08-09) + 1,820 (19-20) + 2,000 (20-21)
    assert d["flexible_peak_kwh"] == pytest.approx(2 * 5820.0)
    # highest import 3,000 kW, first at 08:00 on 2 March (19-20 is 2,820 with the discharge); 3,000 / 5,000 kVA
    assert d["demand"]["max_kw"] == pytest.approx(3000.0)
    assert d["demand"]["max_at"] == pd.Timestamp("2026-03-02 08:00", tz=TZ)
    assert d["demand"]["utilisation_frac"] == pytest.approx(0.6)
    # W_P = 59,240 kWh, W_Q = 750 x 48 = 36,000 kvarh; a quarter is below 0.90 when P < 750 x 0.9 / sqrt(0.19) =
    # 1,548.6 kW: all but the 12 quarters a day at 2,820-3,000 kW -> 84 / 96 = 0.875
    assert d["power_factor"] == {"pf": pytest.approx(59240.0 / math.hypot(59240.0, 36000.0)), "low_share": 0.875,
                                 "threshold": 0.90}
    # 700 Nm3/h x 48 h; 10 t/h (10,000 kg/h) x 48 h; 50 t/h x 48 h
    assert (d["gas_nm3"], d["steam_t"], d["production_t"]) == pytest.approx((33600.0, 480.0, 2400.0))
    assert d["specific"] == pytest.approx({"kwh_per_t": 60000.0 / 2400.0, "gas_nm3_per_t": 14.0,
                                           "steam_t_per_t": 0.2})
    assert d["has_pv"] and d["has_bess"] and d["pv_kwp"] == 120.0
    assert d["roof_m2"] == 1200.0                         # 40 x 20 rectangle + right triangle of legs 40, 20
    assert d["tariff"] == "yunnan_market_contract_example.yaml"   # E01 trades directly (assignments.yaml)
    assert (REPO / "data" / "tariffs" / d["tariff"]).is_file()


def test_enterprise_diagnostics_without_data_and_errors(store):
    engine, park = store
    start, end = pd.Timestamp("2026-03-02", tz=TZ), pd.Timestamp("2026-03-03", tz=TZ)
    d = enterprise_diagnostics(engine, park, "E02", start, end, data_dir=REPO / "data")
    assert d["quarters"] == 0 and d["coverage_frac"] == 0.0 and d["grid_kwh"] == 0.0 and d["days"] == 1.0
    assert d["load_factor"] is None and d["peak_share"] is None and d["flexible_peak_kwh"] is None
    assert d["power_factor"] is None and d["demand"]["max_kw"] is None and d["base"]["night_kw"] is None
    assert d["gas_nm3"] is None and d["steam_t"] is None and d["production_t"] is None
    assert d["specific"] == {"kwh_per_t": None, "gas_nm3_per_t": None, "steam_t_per_t": None}
    assert not d["has_pv"] and not d["has_bess"] and d["pv_kwp"] == 0.0 and d["roof_m2"] == 0.0
    assert d["tariff"] == "yunnan_agent_purchase_2026.yaml"          # the default tariff
    with pytest.raises(StoreError, match="enterprise_id: unknown enterprise 'E99'"):
        enterprise_diagnostics(engine, park, "E99", start, end, data_dir=REPO / "data")
    with pytest.raises(StoreError, match="naive"):
        enterprise_diagnostics(engine, park, "E01", "2026-03-02", end, data_dir=REPO / "data")
