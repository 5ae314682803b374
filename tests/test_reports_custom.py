"""Custom reports (anning_lib.reports.custom, custom_export): figures worked out by hand from hand-made
measurements, the tariff files' own numbers, scoping by role and enterprise, definition errors, saved
definitions, and CSV/XLSX/PDF read back.

The store holds 2026-03-02 and 2026-03-03 (local days, a Monday and a Tuesday) of 15-minute readings, one per
quarter-hour, so each rollup mean is the written value and a quarter-hour is value x 0.25 h:

=========== ================================================================================================
E01-M0      1,000 kW; 3,000 kW at 2026-03-02 19:00; nothing on 2026-03-03 03:00-03:45 (4 quarter-hours)
E01-PV      200 kW 10:00-13:45 (16 quarter-hours = 800 kWh a day)
E02-M0      500 kW
E02-B1      -100 kW 02:00-05:45 (charges 400 kWh), +300 kW 18:00-19:45 (discharges 600 kWh): +200 kWh a day
E03-M0      2,000 kW; 5,000 kW at 2026-03-03 08:00
G0          4,000 kW (the park's grid meter)
=========== ================================================================================================
"""

from __future__ import annotations

import copy
import subprocess

import numpy as np
import pandas as pd
import pytest
import sqlalchemy as sa
import yaml
from conftest import REPO, tiny_park_dict

from anning_lib.auth.access import SYSTEM, Actor
from anning_lib.auth.users import add_user
from anning_lib.carbon.accounting import Line
from anning_lib.carbon.records import month_bounds, store_run
from anning_lib.errors import AccessError, ReportError
from anning_lib.park import parse_park
from anning_lib.reports.custom import METRICS, Definition, parse_definition, run
from anning_lib.reports.custom_export import chart, export, pdf_table
from anning_lib.reports.custom_store import (
    delete_definition,
    list_definitions,
    load_definition,
    save_definition,
)
from anning_lib.store import init_db, make_engine, refresh_rollups, write_measurements
from anning_lib.store.schema import TABLES

TZ = "Asia/Shanghai"
ADMIN = Actor(1, "admin", username="admin")
ENT1 = Actor(3, "enterprise", "E01", "ent1")
VISITOR = Actor(4, "visitor", username="guest")
DAY1, DAY2 = pd.Timestamp("2026-03-02", tz=TZ), pd.Timestamp("2026-03-03", tz=TZ)


def park_dict() -> dict:
    """conftest's tiny park plus a PV on E01, a storage on E02 and a second steel works E03."""
    d = copy.deepcopy(tiny_park_dict())
    d["enterprises"][0]["devices"].append(
        {"id": "E01-PV", "name": "屋顶光伏", "type": "pv", "protocol": "modbus",
         "params": {"dc_kwp": 300, "ac_kw": 250, "tilt_deg": 20},
         "points": [{"id": "p_kw", "quantity": "active_power", "unit": "kW", "min": 0.0, "max": 300.0}]})
    d["enterprises"][1]["devices"].append(
        {"id": "E02-B1", "name": "储能", "type": "bess", "protocol": "modbus",
         "params": {"capacity_kwh": 2000, "p_max_kw": 500},
         "points": [{"id": "p_kw", "quantity": "active_power", "unit": "kW", "min": -600.0, "max": 600.0}]})
    d["enterprises"].append(
        {"id": "E03", "name": "轧钢厂", "name_en": "rolling mill", "sector": "steel",
         "devices": [{"id": "E03-M0", "name": "总表", "type": "main_meter", "protocol": "modbus",
                      "points": [{"id": "p_kw", "quantity": "active_power", "unit": "kW", "min": 0.0,
                                  "max": 1e5}]}]})
    return d


def readings() -> pd.DataFrame:
    """The module docstring's table as a long frame (tag, ts, value)."""
    q = pd.date_range(DAY1, DAY2 + pd.Timedelta("1D"), freq="15min", inclusive="left")
    hm = q.hour + q.minute / 60.0
    cols = {
        "E01-M0.p_kw": np.where(q == DAY1 + pd.Timedelta("19h"), 3000.0, 1000.0),
        "E01-PV.p_kw": np.where((hm >= 10) & (hm < 14), 200.0, 0.0),
        "E02-M0.p_kw": np.full(len(q), 500.0),
        "E02-B1.p_kw": np.select([(hm >= 2) & (hm < 6), (hm >= 18) & (hm < 20)], [-100.0, 300.0], 0.0),
        "E03-M0.p_kw": np.where(q == DAY2 + pd.Timedelta("8h"), 5000.0, 2000.0),
        "G0.p_kw": np.full(len(q), 4000.0),
    }
    gap = (q >= DAY2 + pd.Timedelta("3h")) & (q < DAY2 + pd.Timedelta("4h"))
    cols["E01-M0.p_kw"] = np.where(gap, np.nan, cols["E01-M0.p_kw"])
    wide = pd.DataFrame(cols, index=pd.Index(q, name="ts"))
    return wide.reset_index().melt(id_vars="ts", var_name="tag", value_name="value").dropna()


@pytest.fixture(scope="module")
def park():
    return parse_park(park_dict(), data_dir=REPO / "data")


def _seed(engine, park) -> None:
    init_db(engine, park)
    write_measurements(engine, readings())
    refresh_rollups(engine, DAY1, DAY2 + pd.Timedelta("1D"))


@pytest.fixture(scope="module")
def store(tmp_path_factory, park):
    engine = make_engine(f"sqlite:///{tmp_path_factory.mktemp('custom') / 'store.sqlite'}")
    _seed(engine, park)
    yield engine
    engine.dispose()


def definition(**kw) -> Definition:
    base = {"name": "日报", "metrics": ["e_kwh", "grid_e_kwh", "pv_e_kwh", "bess_e_kwh", "peak_p_kw"],
            "dimension": "enterprise", "start": "2026-03-02", "end": "2026-03-04", "granularity": "day"}
    return Definition(**{**base, **kw})


def row(df: pd.DataFrame, key: str, value: str, start: pd.Timestamp) -> pd.Series:
    hit = df[(df[key] == value) & (df["period_start"] == start)]
    assert len(hit) == 1, (key, value, start)
    return hit.iloc[0]


def hand_cost_per_day(tariff_file: str, kw: float) -> float:
    """Energy charge of a constant ``kw`` over one local day [CNY], from the tariff and band files' numbers:
    Σ over the bands' hours of kw x (flat energy price x band multiplier + non-floating price)."""
    tariff = yaml.safe_load((REPO / "data" / "tariffs" / tariff_file).read_text(encoding="utf-8"))
    bands = yaml.safe_load((REPO / "data" / "tariffs" / tariff["bands_file"]).read_text(encoding="utf-8"))
    mult = tariff.get("multiplier") or bands["multiplier"]
    total = 0.0
    for b in bands["bands"]:
        (h0, m0), (h1, m1) = (map(int, str(b[k]).split(":")) for k in ("start", "end"))
        hours = (h1 + m1 / 60) - (h0 + m0 / 60)
        price = tariff["energy_price_flat_cny_per_kwh"] * mult[b["band"]] + tariff["non_floating_cny_per_kwh"]
        total += kw * hours * price
    return total


# ================================================================================================ figures
def test_daily_energy_peak_and_coverage_by_hand(store, park):
    df = run(store, park, ADMIN, definition())
    assert list(df.columns) == ["period_start", "period_end", "enterprise_id", "name", "e_kwh", "grid_e_kwh",
                                "pv_e_kwh", "bess_e_kwh", "peak_p_kw", "coverage_frac"]
    assert df["enterprise_id"].tolist() == ["E01", "E02", "E03"] * 2          # periods, then park order
    e1 = row(df, "enterprise_id", "E01", DAY1)
    # 95 x 1,000 + 3,000 = 98,000 kW-quarters x 0.25 h = 24,500 kWh; PV 16 x 200 x 0.25 = 800 kWh
    assert e1["grid_e_kwh"] == pytest.approx(24_500.0) and e1["pv_e_kwh"] == pytest.approx(800.0)
    assert e1["e_kwh"] == pytest.approx(25_300.0) and e1["peak_p_kw"] == pytest.approx(3_000.0)
    assert e1["coverage_frac"] == 1.0 and e1["period_end"] == DAY2
    e1b = row(df, "enterprise_id", "E01", DAY2)
    # four quarter-hours missing: 92 x 1,000 x 0.25 = 23,000 kWh; coverage 92 / 96
    assert e1b["grid_e_kwh"] == pytest.approx(23_000.0) and e1b["e_kwh"] == pytest.approx(23_800.0)
    assert e1b["peak_p_kw"] == pytest.approx(1_000.0) and e1b["coverage_frac"] == pytest.approx(92 / 96)
    e2 = row(df, "enterprise_id", "E02", DAY1)
    # 500 kW x 24 h = 12,000 kWh; storage -400 + 600 = +200 kWh; no PV: 0
    assert e2["grid_e_kwh"] == pytest.approx(12_000.0) and e2["bess_e_kwh"] == pytest.approx(200.0)
    assert e2["pv_e_kwh"] == 0.0 and e2["e_kwh"] == pytest.approx(12_200.0) and e2["peak_p_kw"] == 500.0


def test_hourly_and_weekly_periods(store, park):
    df = run(store, park, ADMIN, definition(granularity="hour", filters={"enterprise_ids": ["E01"]}))
    assert len(df) == 48 and df["enterprise_id"].unique().tolist() == ["E01"]
    h19 = row(df, "enterprise_id", "E01", DAY1 + pd.Timedelta("19h"))
    assert h19["grid_e_kwh"] == pytest.approx((3000 + 3 * 1000) * 0.25) and h19["peak_p_kw"] == 3000.0
    assert row(df, "enterprise_id", "E01", DAY1 + pd.Timedelta("10h"))["pv_e_kwh"] == pytest.approx(200.0)
    assert np.isnan(row(df, "enterprise_id", "E01", DAY2 + pd.Timedelta("3h"))["grid_e_kwh"])
    # weeks start on Monday: 2026-03-01 (a Sunday) is a week of its own, cut to one day, with no data
    wk = run(store, park, ADMIN, definition(granularity="week", start="2026-03-01", end="2026-03-05",
                                            filters={"enterprise_ids": ["E02"]}))
    assert wk["period_start"].tolist() == [pd.Timestamp("2026-03-01", tz=TZ), DAY1]
    assert wk["period_end"].tolist() == [DAY1, pd.Timestamp("2026-03-05", tz=TZ)]
    assert np.isnan(wk["e_kwh"].iloc[0]) and wk["coverage_frac"].iloc[0] == 0.0
    assert wk["grid_e_kwh"].iloc[1] == pytest.approx(24_000.0)
    assert wk["coverage_frac"].iloc[1] == pytest.approx(2 / 3)      # 2 of the 3 days have data


def test_time_of_use_cost_from_the_tariff_files(store, park):
    df = run(store, park, ADMIN, definition(metrics=["cost_cny", "grid_e_kwh"]))
    e2 = hand_cost_per_day("yunnan_agent_purchase_2026.yaml", 500.0)       # E02 pays the default tariff
    assert row(df, "enterprise_id", "E02", DAY1)["cost_cny"] == pytest.approx(e2, rel=1e-9)
    assert row(df, "enterprise_id", "E02", DAY2)["cost_cny"] == pytest.approx(e2, rel=1e-9)
    # E01 trades directly (assignments.yaml): its contract; 1,000 kW all day + 2,000 kW more 19:00-19:15 (peak)
    tariff = yaml.safe_load((REPO / "data/tariffs/yunnan_market_contract_example.yaml").read_text("utf-8"))
    peak = tariff["energy_price_flat_cny_per_kwh"] * tariff["multiplier"]["peak"] + tariff["non_floating_cny_per_kwh"]
    e1 = hand_cost_per_day("yunnan_market_contract_example.yaml", 1000.0) + 2000.0 * 0.25 * peak
    assert row(df, "enterprise_id", "E01", DAY1)["cost_cny"] == pytest.approx(e1, rel=1e-9)
    # the park's grid meter pays the park tariff (the agent purchase one): 8 x E02's
    dev = run(store, park, ADMIN, definition(dimension="device", metrics=["cost_cny"]))
    assert row(dev, "device_id", "G0", DAY1)["cost_cny"] == pytest.approx(8 * e2, rel=1e-9)
    assert np.isnan(row(dev, "device_id", "E01-PV", DAY1)["cost_cny"])     # no bill on a PV array


def test_refresh_recomputes_the_rollups_first(store, park):
    day3 = pd.Timestamp("2026-03-04 10:00", tz=TZ)
    write_measurements(store, pd.DataFrame({"tag": ["E02-M0.p_kw"], "ts": [day3], "value": [800.0]}))
    d = definition(filters={"enterprise_ids": ["E02"]}, start="2026-03-04", end="2026-03-05", granularity="hour")
    assert run(store, park, ADMIN, d)["grid_e_kwh"].isna().all()            # not yet in the rollups
    assert run(store, park, ADMIN, d, refresh=True)["grid_e_kwh"].sum() == pytest.approx(200.0)   # 800 x 0.25


def test_sector_sums_enterprises_and_takes_the_coincident_peak(store, park):
    df = run(store, park, ADMIN, definition(dimension="sector"))
    assert df["sector"].unique().tolist() == ["steel", "utilities"]
    s1 = row(df, "sector", "steel", DAY1)
    # E01 24,500 + E03 2,000 x 24 = 48,000; peak at 19:00: 3,000 + 2,000
    assert s1["grid_e_kwh"] == pytest.approx(72_500.0) and s1["e_kwh"] == pytest.approx(73_300.0)
    assert s1["peak_p_kw"] == pytest.approx(5_000.0)
    s2 = row(df, "sector", "steel", DAY2)
    # E03 47,750 + 3,000 extra at 08:00 (x 0.25 = 750); peak 08:00: E01 1,000 + E03 5,000
    assert s2["grid_e_kwh"] == pytest.approx(23_000.0 + 48_750.0) and s2["peak_p_kw"] == pytest.approx(6_000.0)
    assert s2["coverage_frac"] == pytest.approx(92 / 96)                    # every main meter of the sector


def test_device_dimension(store, park):
    df = run(store, park, ADMIN, definition(dimension="device"))
    assert df[df["period_start"] == DAY1]["device_id"].tolist() == [
        "G0", "E01-M0", "E01-L1", "E01-PV", "E02-M0", "E02-B1", "E03-M0"]
    pv = row(df, "device_id", "E01-PV", DAY1)
    assert pv["e_kwh"] == pytest.approx(800.0) and pv["pv_e_kwh"] == pytest.approx(800.0)
    assert np.isnan(pv["grid_e_kwh"]) and pv["peak_p_kw"] == 200.0 and pv["enterprise_id"] == "E01"
    b = row(df, "device_id", "E02-B1", DAY1)
    assert b["e_kwh"] == pytest.approx(200.0) and b["bess_e_kwh"] == pytest.approx(200.0)
    assert row(df, "device_id", "G0", DAY1)["e_kwh"] == pytest.approx(96_000.0)
    assert np.isnan(row(df, "device_id", "E01-L1", DAY1)["e_kwh"])         # never read
    only = run(store, park, ADMIN, definition(dimension="device", filters={"device_types": ["main_meter"]}))
    assert sorted(set(only["device_id"])) == ["E01-M0", "E02-M0", "E03-M0"]


def test_co2_from_the_newest_stored_monthly_account(store, park):
    def lines(*pairs):
        return [Line(s, "x", "x", 1.0, "t", "test", 1.0, "t/t", "test", "1 x 1", co2) for s, co2 in pairs]

    march = month_bounds("2026-03", TZ)
    store_run(store, "E01", *march, "2026.1", lines(("scope1", 10.0), ("scope2_location", 20.0),
                                                     ("scope2_market", 5.0), ("scope3", 7.0), ("memo", 3.0)), 30.0)
    store_run(store, "E01", *march, "2026.2", lines(("scope1", 11.0), ("scope2_location", 21.0)), 32.0)
    store_run(store, "E03", *march, "2026.1", lines(("scope1", 100.0)), 100.0)
    half = (march[0], pd.Timestamp("2026-03-16", tz=TZ).tz_convert("UTC"))       # not a whole month: ignored
    store_run(store, "E02", *half, "2026.1", lines(("scope1", 999.0)), 999.0)
    d = definition(metrics=["co2_t", "e_kwh"], granularity="month", start="2026-03-01", end="2026-05-01")
    df = run(store, park, ADMIN, d)
    mar, apr = pd.Timestamp("2026-03-01", tz=TZ), pd.Timestamp("2026-04-01", tz=TZ)
    assert row(df, "enterprise_id", "E01", mar)["co2_t"] == pytest.approx(32.0)     # 11 + 21 of version 2026.2
    assert np.isnan(row(df, "enterprise_id", "E02", mar)["co2_t"])
    assert np.isnan(row(df, "enterprise_id", "E01", apr)["co2_t"])
    assert row(df, "enterprise_id", "E01", mar)["e_kwh"] == pytest.approx(25_300.0 + 23_800.0)
    assert row(df, "enterprise_id", "E01", mar)["coverage_frac"] == pytest.approx((96 + 92) / (31 * 96))
    sec = run(store, park, ADMIN, d.model_copy(update={"dimension": "sector"}))
    assert row(sec, "sector", "steel", mar)["co2_t"] == pytest.approx(132.0)
    assert row(run(store, park, ENT1, d.model_copy(update={"dimension": "sector"})), "sector", "steel",
               mar)["co2_t"] == pytest.approx(32.0)                           # its own account only


# ================================================================================================ scope
def test_enterprise_user_gets_only_its_own_rows(store, park):
    df = run(store, park, ENT1, definition())
    assert set(df["enterprise_id"]) == {"E01"}
    dev = run(store, park, ENT1, definition(dimension="device"))
    assert set(dev["device_id"]) == {"E01-M0", "E01-L1", "E01-PV"}         # not the park's grid meter G0
    sec = run(store, park, ENT1, definition(dimension="sector"))
    assert sec["sector"].unique().tolist() == ["steel"]                    # E01 alone, not E03
    assert row(sec, "sector", "steel", DAY1)["grid_e_kwh"] == pytest.approx(24_500.0)
    assert run(store, park, ENT1, definition(filters={"sectors": ["utilities"]})).empty


@pytest.mark.parametrize("ids", [["E02"], ["E01", "E02"]])
def test_enterprise_user_naming_another_enterprise_is_refused(store, park, ids):
    with pytest.raises(AccessError, match="ent1.*E02"):
        run(store, park, ENT1, definition(filters={"enterprise_ids": ids}))


def test_visitor_is_refused_and_unknown_enterprise_named(store, park):
    with pytest.raises(AccessError, match="guest"):
        run(store, park, VISITOR, definition())
    with pytest.raises(ReportError, match=r"filters.enterprise_ids\[0\].*'E99'"):
        run(store, park, ADMIN, definition(filters={"enterprise_ids": ["E99"]}))


# ================================================================================================ definition
@pytest.mark.parametrize("change, pattern", [
    ({"granularity": "year"}, r"granularity.*'year'"),
    ({"dimension": "area"}, r"dimension.*'area'"),
    ({"metrics": ["e_kwh", "power_kw"]}, r"metrics.*'power_kw'"),
    ({"metrics": []}, r"metrics"),
    ({"name": "  "}, r"name"),
    ({"name": "x" * 121}, r"name"),
    ({"start": "2026-13-01"}, r"start.*2026-13-01"),
    ({"end": "2026-03-02"}, r"end: 2026-03-02 must be after start 2026-03-02"),
    ({"start": "2025-01-01", "end": "2026-03-01"}, r"end: .*424 days, more than 400"),
    ({"metrics": ["co2_t"]}, r"co2_t .*granularity 'month'.*'day'"),
    ({"metrics": ["co2_t"], "granularity": "month", "start": "2026-03-02", "end": "2026-04-01"}, r"whole months"),
    ({"metrics": ["co2_t"], "granularity": "month", "start": "2026-03-01", "end": "2026-04-01",
      "dimension": "device"}, r"co2_t is not available for dimension 'device'"),
    ({"filters": {"device_types": ["pv"]}}, r"filters.device_types.*dimension 'device'"),
    ({"filters": {"sectors": ["mining"]}}, r"filters.sectors.0.*'mining'"),
    ({"colour": "red"}, r"colour"),
])
def test_bad_definition_names_field_and_value(change, pattern):
    with pytest.raises(ReportError, match=pattern):
        definition(**change)


def test_definition_round_trips_through_json():
    d = definition(filters={"enterprise_ids": ["E01"]})
    assert parse_definition(d.model_dump_json()) == d and parse_definition(d.model_dump(mode="json")) == d
    with pytest.raises(ReportError, match="definition: not JSON"):
        parse_definition("{oops")
    assert all(m.unit and m.description for m in METRICS.values())


# ================================================================================================ saved
@pytest.fixture
def users(engine, park):
    """``engine`` (SQLite and PostgreSQL) seeded with the readings, and an admin, an operator and two enterprise
    users (actors read from the database)."""
    from anning_lib.auth.access import actor_from_db

    _seed(engine, park)
    for name, role, ent in (("adm", "admin", None), ("op", "operator", None), ("e01", "enterprise", "E01"),
                            ("e02", "enterprise", "E02")):
        add_user(engine, SYSTEM, name, f"{name}-password-0001", role, enterprise_id=ent)
    return engine, {n: actor_from_db(engine, n) for n in ("adm", "op", "e01", "e02")}


def test_saved_definitions_are_per_user(users, park):
    engine, who = users
    e01, e02, adm = who["e01"], who["e02"], who["adm"]
    first = save_definition(engine, e01, definition())
    again = save_definition(engine, e01, definition(granularity="hour"))          # same name: replaced
    assert again == first and load_definition(engine, e01, first).granularity == "hour"
    other = save_definition(engine, e02, definition())                             # same name, another owner
    assert other != first
    assert list_definitions(engine, e01)["id"].tolist() == [first]
    assert sorted(list_definitions(engine, adm)["id"]) == sorted([first, other])
    assert list_definitions(engine, adm).set_index("id").loc[other, "owner"] == "e02"
    with pytest.raises(AccessError, match="e02.*definition"):
        load_definition(engine, e02, first)
    with pytest.raises(AccessError):
        delete_definition(engine, who["op"], first)
    with pytest.raises(AccessError, match="e01.*E02"):                             # nothing saved
        save_definition(engine, e01, definition(name="other", filters={"enterprise_ids": ["E02"]}))
    with pytest.raises(AccessError, match="guest"):
        list_definitions(engine, VISITOR)
    # a loaded definition runs in the loader's scope
    assert set(run(engine, park, e01, load_definition(engine, e01, first))["enterprise_id"]) == {"E01"}
    assert load_definition(engine, adm, other).name == "日报"
    delete_definition(engine, e01, first)
    with pytest.raises(ReportError, match=f"no saved report definition {first}"):
        load_definition(engine, e01, first)
    assert list_definitions(engine, adm)["id"].tolist() == [other]


def test_stored_definition_is_validated_again(users):
    engine, who = users
    did = save_definition(engine, who["op"], definition())
    t = TABLES["report_definition"]
    stale = {**definition().model_dump(mode="json"), "metrics": ["e_kwh", "retired_metric"]}
    with engine.begin() as conn:
        conn.execute(sa.update(t).where(t.c.id == did).values(definition=stale))
    with pytest.raises(ReportError, match=f"report definition {did}: metrics.*'retired_metric'"):
        load_definition(engine, who["op"], did)


# ================================================================================================ export
def test_csv_and_xlsx_read_back_equal_the_table(store, park, tmp_path):
    d = definition(dimension="device", metrics=["e_kwh", "cost_cny"])
    df = run(store, park, ADMIN, d)
    csv = export(df, d, "csv", tmp_path / "r.csv")
    assert csv.read_bytes().startswith(b"\xef\xbb\xbf")                        # BOM: Excel reads UTF-8
    back = pd.read_csv(csv, encoding="utf-8-sig")
    for col in ("period_start", "period_end"):
        back[col] = pd.to_datetime(back[col], utc=True).dt.tz_convert(TZ)
    back["enterprise_id"] = back["enterprise_id"].astype(object).where(back["enterprise_id"].notna(), None)
    expect = df.assign(enterprise_id=df["enterprise_id"].astype(object).where(df["enterprise_id"].notna(), None))
    pd.testing.assert_frame_equal(back, expect, check_dtype=False)
    assert "屋顶光伏" in csv.read_text(encoding="utf-8-sig")

    xlsx = export(df, d, "xlsx", tmp_path / "r.xlsx", lang="en", actor=ADMIN)
    sheets = pd.read_excel(xlsx, sheet_name=None)
    assert list(sheets) == ["Data", "Definition"]
    data = sheets["Data"]
    local = df.assign(**{c: df[c].dt.tz_localize(None) for c in ("period_start", "period_end")})
    for col in ("e_kwh", "cost_cny"):
        np.testing.assert_allclose(data[col].to_numpy(float), local[col].to_numpy(float), rtol=1e-12)
    assert (data["period_start"] == local["period_start"]).all() and data["device_id"].tolist() == local[
        "device_id"].tolist()
    about = dict(sheets["Definition"].itertuples(index=False, name=None))
    assert about["Report name"] == "日报" and about["Time zone"] == TZ and "admin" in about["Produced"]
    assert about["Rows"] == len(df)


def test_xlsx_longer_than_a_sheet_is_refused_naming_the_rows(store, park, tmp_path, monkeypatch):
    import anning_lib.reports.custom_export as ce

    d = definition()
    df = run(store, park, ADMIN, d)
    monkeypatch.setattr(ce, "MAX_XLSX_ROWS", len(df) - 1)
    with pytest.raises(ReportError, match=f"{len(df)} rows do not fit in an Excel sheet.*export CSV"):
        export(df, d, "xlsx", tmp_path / "long.xlsx")
    assert not (tmp_path / "long.xlsx").exists()


def test_xlsx_keeps_a_name_like_a_formula_as_text(tmp_path):
    import openpyxl

    d = definition(name="=1+1")
    empty = pd.DataFrame({"period_start": pd.to_datetime([], utc=True), "e_kwh": pd.Series(dtype=float)})
    cell = openpyxl.load_workbook(export(empty, d, "xlsx", tmp_path / "f.xlsx")).worksheets[1]["B2"]
    assert (cell.value, cell.data_type) == ("=1+1", "s")


def test_pdf_has_the_metric_header_and_the_numbers(store, park, tmp_path):
    d = definition(metrics=["e_kwh", "peak_p_kw"], filters={"enterprise_ids": ["E01"]})
    df = run(store, park, ADMIN, d)
    pdf = export(df, d, "pdf", tmp_path / "r.pdf", actor=ADMIN)
    text = subprocess.run(["pdftotext", "-layout", str(pdf), "-"], check=True, capture_output=True,
                          text=True).stdout
    assert "日报" in text and "用电量 [kWh], 最大需量" in text                     # the definition
    header = next(ln for ln in text.splitlines() if "期间开始" in ln)
    assert "用电量" in header and "最大需量" in header and "数据覆盖率" in header
    rows = {ln.split()[0]: ln.split() for ln in text.splitlines() if ln.strip().startswith("2026-03-0")}
    assert rows["2026-03-02"][1:] == ["E01", "钢厂", "25,300.0", "3,000.0", "100"]   # by hand, above
    assert rows["2026-03-03"][1:] == ["E01", "钢厂", "23,800.0", "1,000.0", "96"]    # 92 / 96 quarter-hours
    with pytest.raises(ReportError, match="fmt: unknown export format 'docx'"):
        export(df, d, "docx", tmp_path / "r.docx")


def test_chart_has_a_panel_per_metric_and_copes_with_no_data(store, park):
    d = definition(metrics=["e_kwh", "peak_p_kw"])
    fig = chart(run(store, park, ADMIN, d), d, "en")
    assert len(fig.axes) == 2 and fig.axes[0].get_ylabel() == "Electricity consumed [kWh]"
    assert fig._suptitle.get_text() == "Custom report: 日报"
    empty = run(store, park, ENT1, definition(metrics=d.metrics, filters={"sectors": ["utilities"]}))
    assert empty.empty and list(empty.columns) == list(run(store, park, ENT1, d).columns)
    assert len(chart(empty, d, "zh_CN").axes) == 2
    shown, titles, _dec = pdf_table(empty, d, "en")
    assert shown.empty and titles["e_kwh"] == "Electricity consumed [kWh]"


# ================================================================================================ command line
def test_command_line_runs_a_definition_file_within_the_users_scope(store, park, tmp_path, monkeypatch):
    from typer.testing import CliRunner

    from anning_lib.cli.main import app
    from anning_lib.config import get_settings

    park_file = tmp_path / "park.yaml"
    park_file.write_text(yaml.safe_dump(park_dict(), allow_unicode=True), encoding="utf-8")
    monkeypatch.setenv("ANNING_DB_URL", str(store.url))
    monkeypatch.setenv("ANNING_PARK_FILE", str(park_file))
    get_settings.cache_clear()
    add_user(store, SYSTEM, "cli.e02", "cli-e02-pass-1", "enterprise", enterprise_id="E02")
    spec = tmp_path / "daily.yaml"
    spec.write_text("name: daily\nmetrics: [grid_e_kwh]\ndimension: enterprise\nstart: 2026-03-02\n"
                    "end: 2026-03-04\ngranularity: day\n", encoding="utf-8")
    try:
        out = tmp_path / "daily.csv"
        res = CliRunner().invoke(app, ["report", "custom", str(spec), "--as", "cli.e02", "-o", str(out)])
        assert res.exit_code == 0, res.output
        df = pd.read_csv(out, encoding="utf-8-sig")
        # E02's main meter reads 500 kW all day: 12,000 kWh a day, and only E02's rows for its user
        assert df["enterprise_id"].tolist() == ["E02", "E02"]
        assert df["grid_e_kwh"].tolist() == pytest.approx([12_000.0, 12_000.0])
        spec.write_text(spec.read_text(encoding="utf-8").replace("granularity: day", "granularity: year"))
        res = CliRunner().invoke(app, ["report", "custom", str(spec), "-o", str(out)])
        assert res.exit_code != 0 and "granularity" in str(res.exception)
    finally:
        get_settings.cache_clear()
