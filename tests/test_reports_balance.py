"""The park's energy balance (anning_lib.reports.balance) on hand-made quarter-hours; expected values worked out in
comments (energy = mean power [kW] x 0.25 h)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from anning_lib.park import load_park
from anning_lib.park.catalogue import Carrier
from anning_lib.reports.balance import (
    BALANCE_COLUMNS,
    balance_points,
    boiler_balance,
    boiler_tags,
    check_balance,
    electricity_balance,
    enterprise_consumption,
    fuel_tags,
    fuel_use,
    submetering,
    submetering_tags,
)

TZ = "Asia/Shanghai"
START = pd.Timestamp("2026-10-01 00:00", tz=TZ)
HOUR = START + pd.Timedelta("1h")
POINTS = pd.DataFrame(
    [("GRID.p_kw", "grid", None, "GRID"), ("SES.p_kw", "bess", None, "SES"), ("PV.p_kw", "pv", None, "PV"),
     ("A-MM.p_kw", "main", "A", "A-MM"), ("A-PV.p_kw", "pv", "A", "A-PV"), ("A-BESS.p_kw", "bess", "A", "A-BESS"),
     ("B-MM.p_kw", "main", "B", "B-MM")], columns=["tag", "term", "enterprise_id", "device_id"])


def _means(rows: dict[str, list[float]], start: pd.Timestamp = START) -> pd.DataFrame:
    n = len(next(iter(rows.values())))
    return pd.DataFrame(rows, index=pd.date_range(start, periods=n, freq="15min", name="ts"), dtype="float64")


@pytest.fixture
def hour() -> pd.DataFrame:
    """Four quarter-hours [kW]; the last lacks B's main meter, so only three count.

    q0: grid 1000 in; A 600, B 390                                 supply 1000  use 990          residual 10
    q1: grid 800 in, SES +200 (discharge), park PV 100; A-MM 500 with its PV 40 and battery -20 (charging);
        B 580                                                      supply 800 + 140 + 200 = 1140
        A consumes 500 + 40 - 20 = 520; use 520 + 580 + charge 20 = 1120                       residual 20
    q2: grid -100 (export), SES -300 (charging), park PV 400; A-MM -5 (exports) with PV 50 and battery +30; B 0
        supply 0 + 450 + 30 = 480; A consumes -5 + 50 + 30 = 75; use 75 + 300 + 100 = 475     residual 5
    """
    nan = np.nan
    return _means({"GRID.p_kw": [1000, 800, -100, 900], "SES.p_kw": [0, 200, -300, 0], "PV.p_kw": [0, 100, 400, 0],
                   "A-MM.p_kw": [600, 500, -5, 600], "A-PV.p_kw": [0, 40, 50, 0], "A-BESS.p_kw": [0, -20, 30, 0],
                   "B-MM.p_kw": [390, 580, 0, nan]})


def test_electricity_balance_of_one_hour_by_hand(hour):
    total = electricity_balance(hour, POINTS, START, HOUR, freq=None)
    assert list(total.columns) == BALANCE_COLUMNS and list(total.index) == [START]
    row = total.iloc[0]
    expected = {
        "grid_import_e_kwh": (1000 + 800) * 0.25,            # 450
        "pv_e_kwh": (0 + 140 + 450) * 0.25,                  # 147.5: park and enterprise PV
        "bess_discharge_e_kwh": (200 + 30) * 0.25,           # 57.5: SES in q1, A's battery in q2
        "supply_e_kwh": 655.0,
        "consumption_e_kwh": (990 + 1100 + 75) * 0.25,       # 541.25
        "bess_charge_e_kwh": (20 + 300) * 0.25,              # 80
        "grid_export_e_kwh": 100 * 0.25,                     # 25
        "use_e_kwh": 646.25,
        "residual_e_kwh": (10 + 20 + 5) * 0.25,              # 8.75 = grid + park PV + SES - mains
        "residual_frac": 8.75 / 655.0,
        "coverage_frac": 3 / 4,
    }
    for col, value in expected.items():
        assert row[col] == pytest.approx(value), col


def test_enterprise_consumption_adds_up_to_the_park_consumption(hour):
    ent = enterprise_consumption(hour, POINTS, START, HOUR, freq=None)
    assert list(ent.columns) == ["A", "B"]
    assert ent.iloc[0]["A"] == pytest.approx((600 + 520 + 75) * 0.25)      # 298.75
    assert ent.iloc[0]["B"] == pytest.approx((390 + 580 + 0) * 0.25)       # 242.5 (q3 incomplete: left out)
    assert ent.iloc[0].sum() == pytest.approx(541.25)


def test_days_are_local_and_a_day_without_data_is_nan(hour):
    late = hour.copy()
    late.index = late.index + pd.Timedelta("23h")        # 23:00-24:00 local on 1 October (15:00-16:00 UTC)
    end = START + pd.Timedelta("2D")
    daily = electricity_balance(late, POINTS, START, end, freq="D")
    assert list(daily.index) == [START, START + pd.Timedelta("1D")]
    assert daily.iloc[0]["residual_e_kwh"] == pytest.approx(8.75)
    assert daily.iloc[0]["coverage_frac"] == pytest.approx(3 / 96)
    assert np.isnan(daily.iloc[1]["supply_e_kwh"]) and daily.iloc[1]["coverage_frac"] == 0.0
    total = electricity_balance(late, POINTS, START, end, freq=None)
    checks = check_balance(daily, total)
    assert checks["ok"].all(), checks
    assert total.iloc[0]["coverage_frac"] == pytest.approx(3 / 192)


def test_check_balance_finds_a_row_that_does_not_close(hour):
    table = electricity_balance(hour, POINTS, START, HOUR, freq=None)
    assert check_balance(table)["ok"].all()
    bad = table.copy()
    bad["residual_e_kwh"] += 2.0
    checks = check_balance(bad).set_index("check")
    assert not checks.loc["supply = use + residual", "ok"]
    assert checks.loc["supply = use + residual", "difference_e_kwh"] == pytest.approx(2.0)
    assert checks.loc["supply = grid import + PV + storage discharge", "ok"]


def test_missing_columns_count_as_no_data(hour):
    table = electricity_balance(hour.drop(columns=["B-MM.p_kw"]), POINTS, START, HOUR, freq=None)
    assert table.iloc[0]["coverage_frac"] == 0.0 and np.isnan(table.iloc[0]["supply_e_kwh"])
    with pytest.raises(ValueError, match="aware"):
        electricity_balance(hour, POINTS, START.tz_localize(None), HOUR)


def test_balance_points_of_the_park():
    park = load_park()
    pts = balance_points(park)
    assert pts.iloc[0]["tag"] == "GRID.p_kw" and pts.iloc[0]["term"] == "grid"
    counts = pts["term"].value_counts()
    n = {t: sum(d.type == t for _e, d in park.iter_devices()) for t in ("grid_meter", "pv", "bess", "main_meter")}
    assert (counts["grid"], counts["pv"], counts["bess"], counts["main"]) == (
        n["grid_meter"], n["pv"], n["bess"], n["main_meter"])
    assert set(pts.loc[pts["term"] == "main", "enterprise_id"]) == {e.id for e in park.enterprises}
    assert pts.loc[pts["tag"] == "SES.p_kw", "enterprise_id"].isna().all()


def test_submetering_of_one_enterprise_by_hand():
    """E01: four loads at 100 kW each, its PV at 50 kW, no battery; its main meter reads what the simulator's
    balance gives, 400 x (1 + loss_frac) - 50. One hour: consumption = (main + PV) x 1 h = 400 (1 + loss) kWh,
    sub-metered 400 kWh, so unmetered / sub-metered = loss_frac."""
    park = load_park()
    main = park.device("E01-MM")
    loss = main.p.loss_frac
    loads = [f"{d.id}.p_kw" for d in park.enterprise("E01").devices if d.type in ("sub_meter", "process_line")]
    assert len(loads) == 4
    rows = {t: [100.0] * 4 for t in loads} | {"E01-PV.p_kw": [50.0] * 4,
                                              "E01-MM.p_kw": [400 * (1 + loss) - 50] * 4}
    out = submetering(_means(rows), park, START, HOUR)
    e01 = out.loc["E01"]
    assert e01["consumption_e_kwh"] == pytest.approx(400 * (1 + loss))
    assert e01["submetered_e_kwh"] == pytest.approx(400.0)
    assert e01["unmetered_e_kwh"] == pytest.approx(400 * loss)
    assert e01["unmetered_frac"] == pytest.approx(loss) and e01["loss_frac"] == loss
    assert e01["coverage_frac"] == 1.0
    assert out.loc["E02", "coverage_frac"] == 0.0 and np.isnan(out.loc["E02", "consumption_e_kwh"])
    assert set(loads) | {"E01-MM.p_kw", "E01-PV.p_kw"} <= set(submetering_tags(park))


def test_boiler_balance_by_hand():
    """E04-B1 burns 1,000 Nm3/h and raises 10 t/h for one hour. With an NCV of 0.04 GJ/Nm3 and 2.5 GJ/t of steam:
    fuel 40 GJ, steam 25 GJ, loss 15 GJ, efficiency 25 / 40 = 0.625."""
    park = load_park()
    carriers = {"natural_gas": Carrier("natural_gas", "天然气", "natural gas", "volume_flow_gas", "Nm3",
                                       ncv_gj_per_unit=0.04),
                "steam": Carrier("steam", "蒸汽", "steam", "mass_flow", "t", heat_gj_per_unit=2.5)}
    means = _means({"E04-B1.gas_nm3_h": [1000.0] * 4, "E04-B1.steam_t_h": [10.0] * 4})
    out = boiler_balance(means, park, carriers, START, HOUR).set_index("device_id")
    assert set(out.index) == {d.id for _e, d in park.iter_devices() if d.type == "boiler"}
    b1 = out.loc["E04-B1"]
    assert (b1["enterprise_id"], b1["fuel"], b1["fuel_unit"]) == ("E04", "natural_gas", "Nm3")
    assert b1["fuel_amount"] == pytest.approx(1000.0) and b1["fuel_gj"] == pytest.approx(40.0)
    assert b1["steam_t"] == pytest.approx(10.0) and b1["steam_gj"] == pytest.approx(25.0)
    assert b1["loss_gj"] == pytest.approx(15.0) and b1["efficiency_frac"] == pytest.approx(0.625)
    assert b1["rated_efficiency_frac"] == park.device("E04-B1").p.efficiency and b1["coverage_frac"] == 1.0
    b2 = out.loc["E04-B2"]
    assert b2["coverage_frac"] == 0.0 and np.isnan(b2["efficiency_frac"])
    assert {"E04-B1.gas_nm3_h", "E04-B1.steam_t_h"} <= set(boiler_tags(park))


def test_fuel_use_per_enterprise_by_hand():
    """E04's gas is metered on several points; only E04-B1's 1,000 Nm3/h for one hour has data: 1,000 Nm3, 40 GJ at
    0.04 GJ/Nm3, and no quarter-hour with every one of E04's gas points (coverage 0)."""
    park = load_park()
    carriers = {"natural_gas": Carrier("natural_gas", "天然气", "natural gas", "volume_flow_gas", "Nm3",
                                       ncv_gj_per_unit=0.04)}
    out = fuel_use(_means({"E04-B1.gas_nm3_h": [1000.0] * 4}), park, carriers, START, HOUR)
    e04 = out[out["enterprise_id"] == "E04"].iloc[0]
    assert (e04["fuel"], e04["unit"]) == ("natural_gas", "Nm3")
    assert e04["amount"] == pytest.approx(1000.0) and e04["e_gj"] == pytest.approx(40.0)
    assert e04["coverage_frac"] == 0.0
    assert out[out["enterprise_id"] == "E01"]["amount"].isna().all()
    assert "E04-B1.gas_nm3_h" in fuel_tags(park)
