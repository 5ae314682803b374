"""Carbon assets: ledger validation, holdings, compliance position, year-end projection, store round trip.

Expected values are worked out by hand in the comments, not taken from a run of the code.
"""

from __future__ import annotations

import datetime as dt
import math

import pandas as pd
import pytest
import sqlalchemy as sa

from anning_lib.carbon.assets import (
    compliance_position,
    holdings,
    project_year_end,
    validate_movement,
)
from anning_lib.carbon.ledger import position, read_ledger, record_movement
from anning_lib.errors import AnningError, CarbonError
from anning_lib.store import count_rows
from anning_lib.store.schema import TABLES

UTC = dt.timezone.utc
BEIJING = "Asia/Shanghai"

# The worked example: CEA allocated 100,000 t, bought 5,000 t at 80 CNY/t, sold 2,000 t at 95 CNY/t, nothing
# surrendered; CCER bought 6,000 t at 60 CNY/t.
MOVES = [
    {"year": 2026, "instrument": "CEA", "kind": "allocated", "quantity_t": 100_000},
    {"year": 2026, "instrument": "CEA", "kind": "bought", "quantity_t": 5_000, "price_cny_per_t": 80},
    {"year": 2026, "instrument": "CEA", "kind": "sold", "quantity_t": 2_000, "price_cny_per_t": 95},
    {"year": 2026, "instrument": "CCER", "kind": "bought", "quantity_t": 6_000, "price_cny_per_t": 60},
]


def _ledger(moves=MOVES) -> pd.DataFrame:
    return pd.DataFrame([{"price_cny_per_t": None, **m} for m in moves])


# ------------------------------------------------------------------------------------------------ pure
def test_carbon_error_is_an_anning_error():
    assert issubclass(CarbonError, AnningError)


def test_holdings_worked_example():
    h = holdings(_ledger())
    cea, ccer = h["CEA"], h["CCER"]
    assert (cea["allocated"], cea["bought"], cea["sold"], cea["surrendered"]) == (100_000, 5_000, 2_000, 0)
    assert cea["balance_t"] == 103_000                 # 100,000 + 5,000 - 2,000 - 0
    assert cea["purchase_cost_cny"] == 400_000         # 5,000 t x 80 CNY/t
    assert cea["sale_proceeds_cny"] == 190_000         # 2,000 t x 95 CNY/t
    assert cea["avg_purchase_price_cny_per_t"] == 80
    assert cea["net_trade_cash_cny"] == -210_000       # 190,000 - 400,000
    assert ccer["balance_t"] == 6_000 and ccer["allocated"] == 0
    assert ccer["avg_purchase_price_cny_per_t"] == 60  # 360,000 CNY / 6,000 t
    assert ccer["net_trade_cash_cny"] == -360_000


def test_holdings_average_price_of_two_purchases_and_empty_ledger():
    moves = [{"instrument": "CEA", "kind": "bought", "quantity_t": 1_000, "price_cny_per_t": 70},
             {"instrument": "CEA", "kind": "bought", "quantity_t": 3_000, "price_cny_per_t": 90}]
    # (1,000 x 70 + 3,000 x 90) / 4,000 = (70,000 + 270,000) / 4,000 = 85 CNY/t
    assert holdings(pd.DataFrame(moves))["CEA"]["avg_purchase_price_cny_per_t"] == 85
    empty = holdings(pd.DataFrame(columns=["instrument", "kind", "quantity_t", "price_cny_per_t"]))
    assert empty["CEA"]["balance_t"] == 0 and empty["CEA"]["avg_purchase_price_cny_per_t"] is None


@pytest.mark.parametrize("col, value, needle", [
    ("instrument", "EUA", "ledger.instrument"),
    ("kind", "stolen", "ledger.kind"),
    ("quantity_t", -5.0, "ledger.quantity_t"),
    ("price_cny_per_t", None, "ledger.price_cny_per_t"),   # row 1 is a purchase: it needs a price
])
def test_holdings_refuses_bad_rows(col, value, needle):
    df = _ledger()
    df[col] = df[col].astype(object)
    df.loc[1, col] = value
    with pytest.raises(CarbonError, match=needle) as err:
        holdings(df)
    assert "row 1" in str(err.value)


def test_compliance_position_worked_example():
    p = compliance_position(_ledger(), verified_co2_t=104_000, price_cny_per_t=80)
    assert p["cea_balance_t"] == 103_000
    assert p["ccer_cap_t"] == pytest.approx(5_200)       # 5 % x 104,000
    assert p["ccer_usable_t"] == pytest.approx(5_200)    # min(6,000, 5,200)
    assert p["ccer_unusable_t"] == pytest.approx(800)    # 6,000 - 5,200
    assert p["available_t"] == pytest.approx(108_200)    # 103,000 + 5,200
    assert p["outstanding_t"] == 104_000
    assert p["surplus_t"] == pytest.approx(4_200)        # 108,200 - 104,000
    assert p["value_cny"] == pytest.approx(336_000)      # 4,200 t x 80 CNY/t
    assert p["status"] == "surplus"
    assert "4,200.000 t" in p["formula"] and "336,000.00 CNY" in p["formula"]


def test_compliance_position_deficit_and_cap_argument():
    # verified 120,000: cap 6,000 -> all 6,000 CCER usable; available 109,000; deficit 11,000 t
    p = compliance_position(_ledger(), 120_000, 80)
    assert p["ccer_usable_t"] == pytest.approx(6_000) and p["ccer_unusable_t"] == pytest.approx(0)
    assert p["surplus_t"] == pytest.approx(-11_000)
    assert p["value_cny"] == pytest.approx(-880_000)     # -11,000 t x 80 CNY/t
    assert p["status"] == "deficit"
    # no offsets allowed: available 103,000 against 104,000 -> deficit 1,000 t, valued at 60 -> -60,000 CNY
    p0 = compliance_position(_ledger(), 104_000, 60, ccer_cap_frac=0.0)
    assert p0["ccer_usable_t"] == 0 and p0["ccer_unusable_t"] == 6_000
    assert p0["surplus_t"] == pytest.approx(-1_000) and p0["value_cny"] == pytest.approx(-60_000)


def test_surrender_does_not_change_the_surplus():
    # surrender 98,800 t CEA + 5,200 t CCER (the cap) against 104,000 t: CEA balance 103,000 - 98,800 = 4,200,
    # the cap is used up, nothing is outstanding -> surplus still 4,200 t; the 800 t CCER left are unusable
    moves = MOVES + [{"year": 2026, "instrument": "CEA", "kind": "surrendered", "quantity_t": 98_800},
                     {"year": 2026, "instrument": "CCER", "kind": "surrendered", "quantity_t": 5_200}]
    p = compliance_position(_ledger(moves), 104_000, 80)
    assert p["cea_balance_t"] == 4_200 and p["ccer_balance_t"] == 800
    assert p["outstanding_t"] == pytest.approx(0)
    assert p["ccer_usable_t"] == pytest.approx(0) and p["ccer_unusable_t"] == pytest.approx(800)
    assert p["surplus_t"] == pytest.approx(4_200) and p["value_cny"] == pytest.approx(336_000)


@pytest.mark.parametrize("kwargs, field", [
    ({"verified_co2_t": -1.0}, "verified_co2_t"),
    ({"verified_co2_t": math.nan}, "verified_co2_t"),
    ({"price_cny_per_t": -80}, "price_cny_per_t"),
    ({"ccer_cap_frac": 1.5}, "ccer_cap_frac"),
])
def test_compliance_position_refuses_bad_arguments(kwargs, field):
    args = {"verified_co2_t": 104_000, "price_cny_per_t": 80, **kwargs}
    with pytest.raises(CarbonError, match=f"^{field}:"):
        compliance_position(_ledger(), **args)


def test_compliance_position_refuses_several_years():
    df = _ledger()
    df.loc[0, "year"] = 2025
    with pytest.raises(CarbonError, match="ledger.year"):
        compliance_position(df, 104_000, 80)


NINE_MONTHS = pd.Series([8_000.0] * 9, index=range(1, 10))
# last year: January-September 6,000 t each (54,000 t), October-December 9,000 t each (27,000 t)
LAST_YEAR = pd.Series([6_000.0] * 9 + [9_000.0] * 3, index=range(1, 13))


def test_projection_linear_worked_example():
    p = project_year_end(NINE_MONTHS, 2026)
    assert p["ytd_co2_t"] == 72_000                       # 9 x 8,000
    assert p["months_observed"] == list(range(1, 10)) and p["months_missing"] == [10, 11, 12]
    assert p["linear"]["year_end_co2_t"] == pytest.approx(96_000)   # 72,000 x 12 / 9
    assert "× 12 / 9" in p["linear"]["formula"]
    assert p["seasonal"] is None


def test_projection_seasonal_worked_example():
    # 72,000 + 27,000 x (72,000 / 54,000) = 72,000 + 36,000 = 108,000 t
    p = project_year_end(NINE_MONTHS, 2026, last_year=LAST_YEAR)
    assert p["seasonal"]["year_end_co2_t"] == pytest.approx(108_000)
    assert p["linear"]["year_end_co2_t"] == pytest.approx(96_000)
    zero = project_year_end(NINE_MONTHS, 2026, last_year=pd.Series([0.0] * 9 + [9_000.0] * 3, index=range(1, 13)))
    assert zero["seasonal"]["year_end_co2_t"] is None and "undefined" in zero["seasonal"]["formula"]


def test_projection_with_month_timestamps_in_beijing_time():
    # aware month starts in UTC: 2026-01-01 00:00 Beijing is 2025-12-31 16:00 UTC, still January 2026
    idx = pd.date_range("2026-01-01", periods=9, freq="MS", tz=BEIJING).tz_convert("UTC")
    p = project_year_end(pd.Series(8_000.0, index=idx), 2026,
                         last_year=pd.Series(LAST_YEAR.to_numpy(), index=pd.period_range("2025-01", periods=12,
                                                                                         freq="M")))
    assert p["months_observed"] == list(range(1, 10))
    assert p["linear"]["year_end_co2_t"] == pytest.approx(96_000)
    assert p["seasonal"]["year_end_co2_t"] == pytest.approx(108_000)
    # a whole year observed: both methods give the total, 12 x 8,000 = 96,000 t
    full = project_year_end(pd.Series(8_000.0, index=range(1, 13)), 2026, last_year=LAST_YEAR)
    assert full["linear"]["year_end_co2_t"] == 96_000 and full["seasonal"]["year_end_co2_t"] == 96_000


@pytest.mark.parametrize("series, last, needle", [
    (pd.Series(dtype=float), None, "no month"),
    (pd.Series([1.0, 2.0], index=[1, 13]), None, "got 13"),
    (pd.Series([1.0, 2.0], index=pd.to_datetime(["2026-01-01", "2026-01-15"])), None, "month 1 appears"),
    (pd.Series([1.0], index=pd.to_datetime(["2025-03-01"])), None, "not in 2026"),
    (pd.Series([-1.0], index=[1]), None, r"monthly_co2_t\[1\]"),
    (NINE_MONTHS, LAST_YEAR.drop(12), "last_year: month 12 is missing"),
])
def test_projection_refuses_bad_series(series, last, needle):
    with pytest.raises(CarbonError, match=needle):
        project_year_end(series, 2026, last_year=last)


@pytest.mark.parametrize("change, field, value", [
    ({"instrument": "EUA"}, "instrument", "'EUA'"),
    ({"kind": "gifted"}, "kind", "'gifted'"),
    ({"instrument": "CCER", "kind": "allocated"}, "kind", "'CCER'"),
    ({"quantity_t": 0}, "quantity_t", "0"),
    ({"quantity_t": -100}, "quantity_t", "-100"),
    ({"quantity_t": math.inf}, "quantity_t", "inf"),
    ({"quantity_t": "100"}, "quantity_t", "'100'"),
    ({"quantity_t": True}, "quantity_t", "True"),
    ({"price_cny_per_t": None}, "price_cny_per_t", "None"),
    ({"price_cny_per_t": -1}, "price_cny_per_t", "-1"),
    ({"year": 1999}, "year", "1999"),
    ({"year": 2026.5}, "year", "2026.5"),
    ({"ts": dt.datetime(2026, 3, 1)}, "ts", "2026"),
    ({"market": "x" * 40}, "market", "xxxx"),
    ({"qty": 5}, "qty", "5"),
    ({"instrument": None}, "instrument", "missing"),
])
def test_validate_movement_names_field_and_value(change, field, value):
    m = {"year": 2026, "instrument": "CEA", "kind": "bought", "quantity_t": 5_000, "price_cny_per_t": 80, **change}
    with pytest.raises(CarbonError, match=f"^{field}:") as err:
        validate_movement(m)
    assert value in str(err.value)


def test_validate_movement_normalises():
    m = validate_movement({"year": 2026, "instrument": "CEA", "kind": "allocated", "quantity_t": 100_000,
                           "ts": "2026-03-01T10:00+08:00"})
    assert m == {"year": 2026, "instrument": "CEA", "kind": "allocated", "quantity_t": 100_000.0,
                 "price_cny_per_t": None, "ts": dt.datetime(2026, 3, 1, 2, tzinfo=UTC), "market": "", "note": ""}
    assert validate_movement({**MOVES[2], "market": "SEEE"})["price_cny_per_t"] == 95.0


# ------------------------------------------------------------------------------------------------ store
def _record_all(db, moves=MOVES, enterprise="E01"):
    t0 = pd.Timestamp("2026-03-01T09:00", tz=BEIJING)
    return [record_movement(db, enterprise, {**m, "ts": t0 + pd.Timedelta(days=i), "market": "SEEE",
                                             "note": f"move {i}"})
            for i, m in enumerate(moves)]


def _add_run(conn, enterprise, start, end, version, direct, computed_at):
    """A stored account whose direct (scope 1) emissions are ``direct``; its purchased electricity (scope 2, 10 %
    on top) is outside the carbon market's cap and must not count in the position."""
    run_id = conn.execute(sa.insert(TABLES["carbon_run"]).values(
        enterprise_id=enterprise, period_start=start.tz_convert("UTC").to_pydatetime(),
        period_end=end.tz_convert("UTC").to_pydatetime(), factor_version=version,
        computed_at=computed_at, total_co2_t=direct * 1.1).returning(TABLES["carbon_run"].c.id)).scalar_one()
    common = {"run_id": run_id, "activity_unit": "t", "activity_source": "test", "factor_value": 1.0,
              "factor_unit": "tCO2/t", "factor_source": "test", "formula": "test"}
    conn.execute(sa.insert(TABLES["carbon_line"]), [
        {**common, "scope": "scope1", "category": "combustion", "item": "coal", "activity_amount": direct,
         "co2_t": direct},
        {**common, "scope": "scope2_location", "category": "electricity", "item": "electricity",
         "activity_amount": direct * 0.1, "co2_t": direct * 0.1}])


def _add_monthly_runs(db, enterprise, year, values, version, computed_at):
    with db.begin() as conn:
        for i, v in enumerate(values):
            start = pd.Timestamp(f"{year}-{i + 1:02d}-01", tz=BEIJING)
            _add_run(conn, enterprise, start, start + pd.offsets.MonthBegin(1), version, v, computed_at)


def test_ledger_round_trip(db):
    ids = _record_all(db)
    assert len(set(ids)) == 4
    led = read_ledger(db, "E01", 2026)
    assert led["id"].tolist() == ids
    assert led["kind"].tolist() == ["allocated", "bought", "sold", "bought"]
    assert led["instrument"].tolist() == ["CEA", "CEA", "CEA", "CCER"]
    assert led["quantity_t"].tolist() == [100_000.0, 5_000.0, 2_000.0, 6_000.0]
    assert math.isnan(led["price_cny_per_t"].iloc[0]) and led["price_cny_per_t"].iloc[1:].tolist() == [80, 95, 60]
    assert str(led["ts"].dt.tz) == BEIJING
    assert led["ts"].iloc[0] == pd.Timestamp("2026-03-01T09:00", tz=BEIJING)
    assert led["market"].tolist() == ["SEEE"] * 4 and led["note"].iloc[3] == "move 3"
    assert read_ledger(db, "E01", 2025).empty and read_ledger(db, "E02", 2026).empty
    assert list(read_ledger(db, "E02", 2026).columns) == list(led.columns)
    # the stored ledger gives the worked example's position
    p = compliance_position(led, 104_000, 80)
    assert p["surplus_t"] == pytest.approx(4_200) and p["value_cny"] == pytest.approx(336_000)


def test_refused_movements_store_nothing(db):
    _record_all(db)
    before = count_rows(db, "carbon_ledger")
    good = {"year": 2026, "instrument": "CEA", "kind": "bought", "quantity_t": 1_000, "price_cny_per_t": 80}
    cases = [
        ("E99", good, "enterprise_id: unknown enterprise 'E99'"),
        ("E01", {**good, "quantity_t": -1_000}, "quantity_t:"),
        ("E01", {**good, "price_cny_per_t": None}, "price_cny_per_t:"),
        ("E01", {**good, "instrument": "CCER", "kind": "allocated"}, "kind:"),
        # 103,000 t CEA held: selling 200,000 t is refused
        ("E01", {**good, "kind": "sold", "quantity_t": 200_000, "price_cny_per_t": 90}, "quantity_t:.*103,000"),
        # E02 holds nothing: it cannot surrender
        ("E02", {**good, "kind": "surrendered", "price_cny_per_t": None}, "quantity_t:.*E02"),
    ]
    for enterprise, move, needle in cases:
        with pytest.raises(CarbonError, match=needle):
            record_movement(db, enterprise, move)
        assert count_rows(db, "carbon_ledger") == before
    with pytest.raises(CarbonError, match="enterprise_id: unknown enterprise 'E99'"):
        read_ledger(db, "E99", 2026)
    # the balance check can be switched off (a short position recorded on purpose)
    record_movement(db, "E02", {**good, "kind": "sold", "price_cny_per_t": 90}, check_balance=False)
    assert count_rows(db, "carbon_ledger") == before + 1


def test_position_with_given_emissions(db):
    _record_all(db)
    out = position(db, "E01", 2026, 80, verified_co2_t=104_000)
    assert out["verified_source"] == {"from": "argument"}
    assert out["position"]["surplus_t"] == pytest.approx(4_200)
    assert out["position"]["value_cny"] == pytest.approx(336_000)
    assert out["projection"] is None and out["projected_position"] is None and out["monthly_co2_t"].empty


def test_position_from_carbon_runs_newest_version(db):
    _record_all(db)
    old, new = dt.datetime(2026, 10, 2, tzinfo=UTC), dt.datetime(2026, 10, 5, tzinfo=UTC)
    # January-September 2026: 8,000 t a month under "v2" (newest), 9,000 t under the older "v1"
    _add_monthly_runs(db, "E01", 2026, [9_000.0] * 9, "v1", old)
    _add_monthly_runs(db, "E01", 2026, [8_000.0] * 9, "v2", new)
    _add_monthly_runs(db, "E01", 2025, LAST_YEAR.tolist(), "v2", new)
    # another enterprise and a run outside the year do not count
    _add_monthly_runs(db, "E02", 2026, [1_000.0] * 9, "v3", new + dt.timedelta(days=1))
    with db.begin() as conn:
        _add_run(conn, "E01", pd.Timestamp("2027-01-01", tz=BEIJING), pd.Timestamp("2027-02-01", tz=BEIJING),
                 "v9", 5.0, new + dt.timedelta(days=2))
    out = position(db, "E01", 2026, 80)
    src = out["verified_source"]
    assert src["from"] == "carbon_run" and src["factor_version"] == "v2" and src["runs"] == 9
    assert src["covered_frac"] == pytest.approx(273 / 365)    # 31+28+31+30+31+30+31+31+30 = 273 days
    assert out["verified_co2_t"] == 72_000                      # 9 x 8,000 (year to date)
    # to date: 103,000 + min(6,000, 5 % x 72,000 = 3,600) - 72,000 = 34,600 t
    assert out["position"]["surplus_t"] == pytest.approx(34_600)
    assert out["monthly_co2_t"].index.tolist() == list(range(1, 10))
    assert out["last_year_monthly_co2_t"].sum() == 81_000       # 54,000 + 27,000
    assert out["projection"]["linear"]["year_end_co2_t"] == pytest.approx(96_000)
    assert out["projection"]["seasonal"]["year_end_co2_t"] == pytest.approx(108_000)
    # year end, linear: 103,000 + min(6,000, 4,800) - 96,000 = 11,800 t -> 944,000 CNY at 80 CNY/t
    lin = out["projected_position"]["linear"]
    assert lin["surplus_t"] == pytest.approx(11_800) and lin["value_cny"] == pytest.approx(944_000)
    # year end, seasonal: 103,000 + min(6,000, 5,400) - 108,000 = 400 t
    assert out["projected_position"]["seasonal"]["surplus_t"] == pytest.approx(400)
    # the older version on request: 9 x 9,000 = 81,000 t
    assert position(db, "E01", 2026, 80, factor_version="v1")["verified_co2_t"] == 81_000


def test_position_whole_year_run_and_missing_accounts(db):
    with pytest.raises(CarbonError, match="verified_co2_t: no carbon account"):
        position(db, "E01", 2026, 80)
    _record_all(db)
    at = dt.datetime(2027, 2, 1, tzinfo=UTC)
    _add_monthly_runs(db, "E01", 2026, [8_000.0] * 12, "v2", at)
    with db.begin() as conn:   # the annual account of the same version: used alone, not added to the months
        _add_run(conn, "E01", pd.Timestamp("2026-01-01", tz=BEIJING), pd.Timestamp("2027-01-01", tz=BEIJING),
                 "v2", 95_500.0, at)
    out = position(db, "E01", 2026, 80)
    assert out["verified_co2_t"] == 95_500 and out["verified_source"]["runs"] == 1
    assert out["verified_source"]["covered_frac"] == 1
    assert out["projection"]["linear"]["year_end_co2_t"] == 96_000   # 12 months observed: the total
    with pytest.raises(CarbonError, match="enterprise_id: unknown enterprise 'E99'"):
        position(db, "E99", 2026, 80)
