"""The portal's data side (anning_lib.portal.views): figures by hand, scoping by role and enterprise, downsampling.

Expected values are worked out by hand in the comments, not taken from a run of the code.
"""

from __future__ import annotations

import copy
import time

import numpy as np
import pandas as pd
import pytest
from conftest import REPO, tiny_park_dict

from anning_lib.auth.access import Actor
from anning_lib.carbon.accounting import Line
from anning_lib.carbon.records import month_bounds, save_activities, store_run
from anning_lib.errors import AccessError, StoreError
from anning_lib.portal.views import (
    daily_electricity,
    devices_of,
    enterprise_overview,
    latest_values,
    minmax_indices,
    park_snapshot,
    point_history,
)
from anning_lib.store import init_db, refresh_rollups, write_measurements

ADMIN = Actor(1, "admin", username="admin")
OPERATOR = Actor(2, "operator", username="op")
ENT1 = Actor(3, "enterprise", "E01", "ent1")
VISITOR = Actor(4, "visitor", username="guest")
TZ = "Asia/Shanghai"
YUNNAN_T_PER_MWH = 0.1073   # data/emission_factors/grid.csv: yunnan 2022 location, the newest Yunnan row of 2026.1


def _write(engine, rows):
    """rows: (tag, local time text, value[, quality])."""
    df = pd.DataFrame([(r[0], pd.Timestamp(r[1], tz=TZ), float(r[2]), r[3] if len(r) > 3 else 0) for r in rows],
                      columns=["tag", "ts", "value", "quality"])
    return write_measurements(engine, df)


def _every(tag, start, end, freq, value):
    return [(tag, t.tz_localize(None).isoformat(), value) for t in pd.date_range(
        pd.Timestamp(start, tz=TZ), pd.Timestamp(end, tz=TZ), freq=freq)]


# --------------------------------------------------------------------------------------------- latest values
def test_latest_values_newest_per_tag_with_quality_age_and_now(db, tiny_park):
    _write(db, [("G0.p_kw", "2026-03-02 10:00", 1.0), ("G0.p_kw", "2026-03-02 10:05", 2.0),
                ("E01-M0.p_kw", "2026-03-02 10:00", 10.0), ("E01-M0.p_kw", "2026-03-02 10:05", 11.0, 2)])
    tags = ["E01-M0.p_kw", "G0.p_kw", "E01-L1.p_kw"]
    df = latest_values(db, tiny_park, ADMIN, tags)
    assert list(df.columns) == ["tag", "ts", "value", "quality"] and df["tag"].tolist() == tags
    assert df["value"].tolist()[:2] == [11.0, 2.0] and np.isnan(df["value"].iloc[2])   # L1 never read
    assert df["quality"].tolist()[:2] == [2, 0] and df["quality"].isna().iloc[2]
    assert df["ts"].iloc[1] == pd.Timestamp("2026-03-02 10:05", tz=TZ) and pd.isna(df["ts"].iloc[2])
    assert str(df["ts"].dt.tz) == TZ
    # the bad reading of 10:05 is skipped when only good/uncertain ones count: 10.0 of 10:00
    assert latest_values(db, tiny_park, ADMIN, tags, max_quality=1)["value"].iloc[0] == 10.0
    # as of 10:01 the newest G0 reading is the 10:00 one (1.0)
    assert latest_values(db, tiny_park, ADMIN, "G0.p_kw", now=pd.Timestamp("2026-03-02 10:01", tz=TZ))[
        "value"].tolist() == [1.0]
    # at 10:10 the 10:05 reading is 300 s old: kept with max_age_s 400, dropped with 200
    now = pd.Timestamp("2026-03-02 10:10", tz=TZ)
    assert latest_values(db, tiny_park, ADMIN, "G0.p_kw", 400, now)["value"].tolist() == [2.0]
    assert latest_values(db, tiny_park, ADMIN, "G0.p_kw", 200, now)["value"].isna().all()


def test_latest_values_are_scoped(db, tiny_park):
    _write(db, [("E01-M0.p_kw", "2026-03-02 10:00", 10.0)])
    assert latest_values(db, tiny_park, ENT1, ["E01-M0.p_kw"])["value"].tolist() == [10.0]
    with pytest.raises(AccessError, match="ent1.*E02"):
        latest_values(db, tiny_park, ENT1, ["E01-M0.p_kw", "E02-M0.p_kw"])
    with pytest.raises(AccessError, match="park-level"):
        latest_values(db, tiny_park, ENT1, ["G0.p_kw"])          # the grid connection is the park's
    with pytest.raises(AccessError, match="guest"):
        latest_values(db, tiny_park, VISITOR, ["E01-M0.p_kw"])
    with pytest.raises(StoreError, match="X.p_kw"):
        latest_values(db, tiny_park, ADMIN, ["X.p_kw"])


# --------------------------------------------------------------------------------------------- park snapshot
def test_park_snapshot_of_the_tiny_park_by_hand(db, tiny_park):
    # E01 reads 1000 kW every 5 min from 00:00 to 10:05; E02 500 kW every 15 min from 01:00 to 10:00; G0 1530 kW
    rows = _every("E01-M0.p_kw", "2026-03-02 00:00", "2026-03-02 10:05", "5min", 1000.0)
    rows += _every("E02-M0.p_kw", "2026-03-02 01:00", "2026-03-02 10:00", "15min", 500.0)
    rows += [("G0.p_kw", "2026-03-02 10:05", 1530.0), ("E01-M0.p_kw", "2026-03-01 23:45", 7777.0)]  # yesterday
    _write(db, rows)
    now = pd.Timestamp("2026-03-02 10:07", tz=TZ)
    refresh_rollups(db, now - pd.Timedelta("1D"), now)                  # the live loop's job
    s = park_snapshot(db, tiny_park, ADMIN, now)
    assert s["now"] == now and s["as_of"] == pd.Timestamp("2026-03-02 10:05", tz=TZ)
    assert s["load_kw"] == 1500.0 and s["grid_import_kw"] == 1530.0    # no PV, no storage: load = Σ main meters
    assert s["pv_kw"] is None and s["bess_p_kw"] is None and s["bess_soc_frac"] is None
    assert [(r["enterprise_id"], r["p_kw"], r["load_kw"]) for r in s["enterprises"]] == [
        ("E01", 1000.0, 1000.0), ("E02", 500.0, 500.0)]
    # today 00:00..10:07: 40 whole quarter-hours + 7 min of the running one = 10.11667 h
    # E01 1000 kW x 10.11667 h = 10,116.667 kWh; E02 from 01:00: 36 quarter-hours + 7 min = 9.11667 h x 500 kW
    # = 4,558.333 kWh; together 14,675 kWh bought = consumed (no PV, no storage)
    assert s["today_start"] == pd.Timestamp("2026-03-02", tz=TZ)
    assert s["today_grid_e_kwh"] == pytest.approx(14_675.0) and s["today_e_kwh"] == pytest.approx(14_675.0)
    assert s["grid_factor_t_per_mwh"] == pytest.approx(YUNNAN_T_PER_MWH)
    assert s["today_co2_t"] == pytest.approx(14.675 * 0.1073)          # 1.5746 tCO2
    assert s["today_co2_t_per_mwh"] == pytest.approx(0.1073)
    assert s["today_coverage_frac"] == pytest.approx(37 / 41)           # E02 missing in 00:00..00:45
    assert s["missing_tags"] == []


def test_park_snapshot_scope_and_stale_readings(db, tiny_park):
    _write(db, [("E01-M0.p_kw", "2026-03-02 10:05", 1000.0), ("E02-M0.p_kw", "2026-03-02 10:00", 500.0),
                ("G0.p_kw", "2026-03-02 10:05", 1530.0)])
    now = pd.Timestamp("2026-03-02 10:16", tz=TZ)                       # E02's 10:00 reading is 16 min old: stale
    admin = park_snapshot(db, tiny_park, ADMIN, now)
    assert admin["load_kw"] == 1000.0 and admin["missing_tags"] == ["E02-M0.p_kw"]
    assert [r["p_kw"] for r in admin["enterprises"]] == [1000.0, None]
    ent = park_snapshot(db, tiny_park, ENT1, now)
    assert [r["enterprise_id"] for r in ent["enterprises"]] == ["E01"] and ent["missing_tags"] == []
    guest = park_snapshot(db, tiny_park, VISITOR, now)
    assert guest["enterprises"] == [] and guest["missing_tags"] == []
    assert guest["load_kw"] == ent["load_kw"] == 1000.0 and guest["grid_import_kw"] == 1530.0   # public figures


def test_park_snapshot_of_the_real_park_by_hand(engine):
    from anning_lib.park import load_park

    park = load_park()
    init_db(engine, park)
    at = "2026-06-21 11:59"
    rows = [(f"E{i:02d}-MM.p_kw", at, 1000.0) for i in range(1, 14)]                 # 13 main meters: 13,000 kW
    rows += [(f"{d}.p_kw", at, 500.0) for d in ("E01-PV", "E02-PV", "E08-PV", "E09-PV", "E10-PV", "E11-PV",
                                                 "E12-PV", "E13-PV")]                  # 8 x 500 = 4,000 kW
    rows += [("PARK-PV.p_kw", at, 10_000.0), ("GRID.p_kw", at, 8_100.0)]
    # storage: p_kw (> 0 discharge) and soc of SES 50,000 kWh, E05 4,000, E10 8,000, E12 4,000
    for dev, p, soc in (("SES", -5000.0, 0.6), ("E05-BESS", 1000.0, 0.5), ("E10-BESS", 2000.0, 0.25),
                        ("E12-BESS", -1000.0, 1.0)):
        rows += [(f"{dev}.p_kw", at, p), (f"{dev}.soc_frac", at, soc)]
    _write(engine, rows)
    s = park_snapshot(engine, park, OPERATOR, pd.Timestamp("2026-06-21 12:00", tz=TZ))
    assert s["pv_kw"] == 14_000.0                                       # 10,000 park + 4,000 enterprises
    assert s["bess_p_kw"] == -3000.0                                    # -5000 + 1000 + 2000 - 1000
    # stored 0.6*50,000 + 0.5*4,000 + 0.25*8,000 + 1.0*4,000 = 38,000 kWh of 66,000 kWh
    assert s["bess_stored_e_kwh"] == pytest.approx(38_000.0)
    assert s["bess_soc_frac"] == pytest.approx(38_000 / 66_000)
    # load: 13,000 main + 4,000 own PV + (1000 + 2000 - 1000) own storage = 19,000 kW (the shared station and the
    # park PV feed the park network, not an enterprise's load)
    assert s["load_kw"] == 19_000.0 and s["grid_import_kw"] == 8_100.0
    e10 = next(r for r in s["enterprises"] if r["enterprise_id"] == "E10")
    assert (e10["p_kw"], e10["load_kw"]) == (1000.0, 3500.0)            # 1000 + 500 PV + 2000 discharge
    assert len(s["enterprises"]) == 13 and s["missing_tags"] == []
    # today so far: one quarter-hour (11:45-12:00) of readings: 13,000 kW x 0.25 h bought, 19,000 x 0.25 consumed
    assert s["today_grid_e_kwh"] == pytest.approx(3250.0) and s["today_e_kwh"] == pytest.approx(4750.0)
    assert s["today_co2_t"] == pytest.approx(3.25 * 0.1073)              # 0.3487 tCO2
    assert s["today_co2_t_per_mwh"] == pytest.approx(3.25 * 0.1073 / 4.75)
    assert s["today_coverage_frac"] == pytest.approx(1 / 48)
    e10_user = park_snapshot(engine, park, Actor(9, "enterprise", "E10", "e10"), pd.Timestamp(at, tz=TZ)
                             + pd.Timedelta("1min"))
    assert [r["enterprise_id"] for r in e10_user["enterprises"]] == ["E10"] and e10_user["load_kw"] == 19_000.0


# ---------------------------------------------------------------------------------------- enterprise overview
def _steel_park():
    """The tiny park with production on E01's line and a second steel works E03 (the peer)."""
    from anning_lib.park import parse_park

    raw = copy.deepcopy(tiny_park_dict())
    prod = {"id": "production_t_h", "quantity": "production_rate", "unit": "t/h", "min": 0.0, "max": 1e5}
    raw["enterprises"][0]["devices"][1]["points"].append(prod)
    raw["enterprises"].append(
        {"id": "E03", "name": "第二钢厂", "name_en": "second steel works", "sector": "steel", "devices": [
            {"id": "E03-M0", "name": "总表", "type": "main_meter", "protocol": "modbus",
             "points": [{"id": "p_kw", "quantity": "active_power", "unit": "kW", "min": 0.0, "max": 1e5}]}]})
    return parse_park(raw, data_dir=REPO / "data")


def _line(scope, category, item, amount, unit, co2):
    return Line(scope, category, item, amount, unit, "test", 0.0, "", "test", "test", co2)


@pytest.fixture
def steel(engine):
    park = _steel_park()
    init_db(engine, park)
    start, end = month_bounds("2026-03", TZ)
    store_run(engine, "E01", start, end, "2026.1", [
        _line("scope1", "combustion", "natural_gas", 1000.0, "Nm3", 2.1),
        _line("scope2_location", "electricity", "electricity", 20_000.0, "kWh", 2.146),
        _line("scope2_market", "electricity", "electricity", 20.0, "MWh", 2.146),   # not counted twice as energy
        _line("scope3", "freight", "freight_rail", 5000.0, "t*km", 0.5),
        _line("memo", "cems", "co2", 2.0, "t", 0.0)], 4.246)
    store_run(engine, "E03", start, end, "2026.1", [], 8.0)
    store_run(engine, "E02", start, end, "2026.1", [], 1.0)                          # utilities: not a peer
    save_activities(engine, [{"enterprise_id": "E03", "kind": "production", "item": "rebar", "amount": 100.0,
                              "unit": "t", "period_start": start, "period_end": end}])
    # E01: 20 t/h for one hour on its line = 20 t; main meter 1000 kW for an hour on the 1st, 2000 kW for the
    # last half hour of the 31st; readings just outside the month do not count
    rows = _every("E01-L1.production_t_h", "2026-03-02 00:00", "2026-03-02 00:45", "15min", 20.0)
    rows += _every("E01-M0.p_kw", "2026-03-01 00:00", "2026-03-01 00:45", "15min", 1000.0)
    rows += _every("E01-M0.p_kw", "2026-03-31 23:30", "2026-03-31 23:45", "15min", 2000.0)
    rows += [("E01-M0.p_kw", "2026-02-28 23:45", 9000.0), ("E01-M0.p_kw", "2026-04-01 00:00", 9000.0)]
    _write(engine, rows)
    refresh_rollups(engine, start - pd.Timedelta("1D"), end + pd.Timedelta("1D"))
    return engine, park


def test_enterprise_overview_by_hand(steel):
    engine, park = steel
    o = enterprise_overview(engine, park, ADMIN, "E01", "2026-03")
    assert (o["enterprise_id"], o["sector"], o["factor_version"], o["energy_source"]) == (
        "E01", "steel", "2026.1", "account")
    em = o["emissions"]
    assert em["total_co2_t"] == pytest.approx(4.246) and em["scope1_co2_t"] == pytest.approx(2.1)
    assert em["scope2_location_co2_t"] == pytest.approx(2.146) and em["scope2_market_co2_t"] == pytest.approx(2.146)
    assert em["scope3_co2_t"] == pytest.approx(0.5)
    energy = o["energy"].set_index("carrier")
    assert sorted(energy.index) == ["electricity", "natural_gas"]
    assert energy.loc["electricity", "amount"] == 20_000.0 and energy.loc["electricity", "unit"] == "kWh"
    assert energy.loc["electricity", "e_gj"] == pytest.approx(72.0)                 # 20,000 kWh x 3.6 MJ/kWh
    assert energy.loc["natural_gas", "e_gj"] == pytest.approx(1000 * 0.038931)      # NCV 0.038931 GJ/Nm3
    daily = o["daily"]
    assert len(daily) == 31 and daily.index[0] == pd.Timestamp("2026-03-01", tz=TZ)
    assert daily["e_kwh"].iloc[0] == pytest.approx(1000.0)                           # 4 x 1000 kW x 0.25 h
    assert daily["e_kwh"].iloc[30] == pytest.approx(1000.0)                          # 2 x 2000 kW x 0.25 h
    assert daily["e_kwh"].iloc[1:30].isna().all() and daily["e_kwh"].sum() == pytest.approx(2000.0)
    assert daily["coverage_frac"].iloc[0] == pytest.approx(4 / 96)
    # peers in order of intensity: E03 8.0 t / 100 t = 0.08 t/t, E01 4.246 t / 20 t = 0.2123 t/t
    peers = o["peers"]
    assert peers["enterprise_id"].tolist() == ["E03", "E01"] and peers["is_self"].tolist() == [False, True]
    assert peers["co2_t_per_t"].tolist() == pytest.approx([0.08, 0.2123])
    assert peers["production_t"].tolist() == pytest.approx([100.0, 20.0])


def test_enterprise_user_sees_its_own_overview_with_anonymous_peers(steel):
    engine, park = steel
    peers = enterprise_overview(engine, park, ENT1, "E01", "2026-03")["peers"]
    assert peers["name"].tolist() == ["peer 1", "钢厂"]                                # E03's name is hidden
    assert peers["enterprise_id"].isna().tolist() == [True, False] and peers["enterprise_id"].iloc[1] == "E01"
    assert peers["co2_t_per_t"].iloc[0] == pytest.approx(0.08)                       # the value only
    assert np.isnan(peers["co2_t"].iloc[0]) and np.isnan(peers["production_t"].iloc[0])
    with pytest.raises(AccessError, match="ent1.*E02"):
        enterprise_overview(engine, park, ENT1, "E02", "2026-03")
    with pytest.raises(AccessError, match="guest"):
        enterprise_overview(engine, park, VISITOR, "E01", "2026-03")
    with pytest.raises(AccessError):
        daily_electricity(engine, park, ENT1, "E03", "2026-03")
    with pytest.raises(StoreError, match="E99"):
        enterprise_overview(engine, park, ADMIN, "E99", "2026-03")


def test_month_without_an_account_shows_metered_energy(steel):
    engine, park = steel
    _write(engine, _every("E02-M0.p_kw", "2026-04-10 00:00", "2026-04-10 00:45", "15min", 400.0))
    o = enterprise_overview(engine, park, OPERATOR, "E02", "2026-04")
    assert o["energy_source"] is None                  # the page reads the rollups, it does not compute them
    refresh_rollups(engine, "2026-04-10T00:00+08:00", "2026-04-10T01:00+08:00")   # the gateway's minute job
    o = enterprise_overview(engine, park, OPERATOR, "E02", "2026-04")
    assert o["emissions"] is None and o["factor_version"] is None and o["energy_source"] == "meters"
    assert o["energy"]["carrier"].tolist() == ["electricity"]
    assert o["energy"]["amount"].iloc[0] == pytest.approx(400.0)                     # 4 x 400 kW x 0.25 h
    assert o["energy"]["e_gj"].iloc[0] == pytest.approx(1.44)
    assert o["peers"].empty and o["daily"]["e_kwh"].sum() == pytest.approx(400.0)
    empty = enterprise_overview(engine, park, OPERATOR, "E03", "2026-05")
    assert empty["energy_source"] is None and empty["energy"].empty and empty["daily"]["e_kwh"].isna().all()


# ------------------------------------------------------------------------------------------ devices and points
def test_devices_of_by_role(tiny_park):
    admin = devices_of(tiny_park, ADMIN)
    assert admin["device_id"].tolist() == ["G0", "E01-M0", "E01-L1", "E02-M0"]
    assert admin["enterprise_id"].isna().tolist() == [True, False, False, False]  # G0 is park-level
    assert admin.loc[1, "tags"] == ["E01-M0.p_kw", "E01-M0.e_kwh"]
    assert devices_of(tiny_park, ENT1)["device_id"].tolist() == ["E01-M0", "E01-L1"]
    assert devices_of(tiny_park, ENT1, "E01")["type"].tolist() == ["main_meter", "process_line"]
    assert devices_of(tiny_park, VISITOR).empty
    with pytest.raises(AccessError, match="E02"):
        devices_of(tiny_park, ENT1, "E02")
    with pytest.raises(StoreError, match="E99"):
        devices_of(tiny_park, ADMIN, "E99")


def test_point_history_downsamples_and_is_scoped(db, tiny_park):
    # one day of minutes: 100 kW, with 900 kW at 13:37 and 5 kW at 04:20
    rows = _every("E01-M0.p_kw", "2026-03-02 00:00", "2026-03-02 23:59", "1min", 100.0)
    peak, dip = "2026-03-02T13:37:00", "2026-03-02T04:20:00"
    rows = [(t, ts, 900.0 if ts == peak else 5.0 if ts == dip else v) for t, ts, v in rows]
    assert _write(db, rows) == 1440
    start, end = pd.Timestamp("2026-03-02", tz=TZ), pd.Timestamp("2026-03-03", tz=TZ)
    s = point_history(db, tiny_park, ENT1, "E01-M0.p_kw", start, end, max_points=100)
    assert len(s) <= 100 and s.name == "E01-M0.p_kw" and s.index.is_monotonic_increasing
    assert s.max() == 900.0 and s.idxmax() == pd.Timestamp(peak, tz=TZ)
    assert s.min() == 5.0 and s.idxmin() == pd.Timestamp(dip, tz=TZ)
    assert s.index[0] == start and s.index[-1] == pd.Timestamp("2026-03-02 23:59", tz=TZ)
    assert s.attrs == {"unit": "kW", "n_raw": 1440, "downsampled": True}
    full = point_history(db, tiny_park, ADMIN, "E01-M0.p_kw", start, end)
    assert len(full) == 1440 and full.attrs["downsampled"] is False
    with pytest.raises(AccessError, match="ent1.*E02"):
        point_history(db, tiny_park, ENT1, "E02-M0.p_kw", start, end)
    with pytest.raises(AccessError, match="park-level"):
        point_history(db, tiny_park, ENT1, "G0.p_kw", start, end)
    with pytest.raises(AccessError):
        point_history(db, tiny_park, VISITOR, "E01-M0.p_kw", start, end)
    with pytest.raises(StoreError, match="max_points"):
        point_history(db, tiny_park, ADMIN, "E01-M0.p_kw", start, end, max_points=3)


def test_minmax_keeps_the_extremes_of_a_year_of_minutes():
    n = 365 * 24 * 60
    assert n == 525_600
    t = np.arange(n)
    rng = np.random.default_rng(7)
    y = 1000.0 + 400.0 * np.sin(2 * np.pi * t / 1440) + rng.uniform(-50, 50, n)   # within [550, 1450]
    y[200_000], y[333_333] = 5000.0, -100.0                                      # the global max and min
    y[10_000:10_050] = np.nan
    t0 = time.perf_counter()
    idx = minmax_indices(y, 2000)
    elapsed = time.perf_counter() - t0
    assert len(idx) <= 2000 and np.all(np.diff(idx) > 0)
    assert idx[0] == 0 and idx[-1] == n - 1
    assert 200_000 in idx and 333_333 in idx
    assert np.nanmax(y[idx]) == 5000.0 and np.nanmin(y[idx]) == -100.0
    assert elapsed < 1.0                                                          # about 10 ms here
    assert minmax_indices(y[:50], 2000).tolist() == list(range(50))               # short: everything
    assert minmax_indices(np.array([3.0, 1.0, 4.0, 1.0, 5.0, 9.0, 2.0]), 4).tolist() == [0, 1, 5, 6]
    # one bucket y[1:6] = [1, 4, 1, 5, 9]: its (first) minimum at 1, maximum at 5; plus the ends 0 and 6
