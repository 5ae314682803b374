"""The dispatch and carbon pages' data access (anning_lib.portal.energy): approval of a schedule, scoping by actor,
and the stored figures read back.

Every expected value is worked by hand from rows inserted here (the tiny park of conftest: enterprises E01 and
E02), with explicit times so nothing depends on the clock. Runs on SQLite and PostgreSQL (``db`` fixture).
"""

from __future__ import annotations

import datetime as dt

import pandas as pd
import pytest
import sqlalchemy as sa

from anning_lib.auth.access import SYSTEM, Actor
from anning_lib.auth.audit import read_audit
from anning_lib.auth.users import add_user
from anning_lib.errors import AccessError, DispatchError
from anning_lib.portal import energy
from anning_lib.store.schema import TABLES

T0 = dt.datetime(2026, 11, 25, 8, 0, tzinfo=dt.UTC)
ENT_E01 = Actor(901, "enterprise", "E01", "ent1")      # never written: refused before any write
ENT_E02 = Actor(902, "enterprise", "E02", "ent2")
VISITOR = Actor(903, "visitor", None, "vis")


@pytest.fixture
def operator(db) -> Actor:
    uid = add_user(db, SYSTEM, "op1", "operator-pass-1", "operator", now=T0)
    return Actor(uid, "operator", None, "op1")


def plan(site: str, savings: float = 12.5) -> dict:
    """Two 15-minute steps of one storage B1: charge 100 kW, then discharge 40 kW (p_kw -100, +40)."""
    return {"site": site, "strategy": "optimal", "savings_cny": savings, "schedule": [
        {"start": "2026-11-25T16:00:00+08:00", "grid_import_kw": 900.0, "grid_export_kw": 0.0,
         "pv_curtailed_kw": 0.0, "storage": {"B1": {"charge_kw": 100.0, "discharge_kw": 0.0, "soc_frac": 0.6}}},
        {"start": "2026-11-25T16:15:00+08:00", "grid_import_kw": 760.0, "grid_export_kw": 0.0,
         "pv_curtailed_kw": 0.0, "storage": {"B1": {"charge_kw": 0.0, "discharge_kw": 40.0, "soc_frac": 0.55}}}]}


def add_schedule(db, site: str, status: str, created: dt.datetime = T0, savings: float = 12.5) -> int:
    s = TABLES["dispatch_schedule"]
    with db.begin() as conn:
        return conn.execute(sa.insert(s).values(
            created_at=created, strategy="optimal", horizon_start=created, horizon_end=created + dt.timedelta(days=1),
            status=status, objective_cny=1000.0, plan=plan(site, savings)).returning(s.c.id)).scalar_one()


def schedule_row(db, sid: int):
    s = TABLES["dispatch_schedule"]
    with db.connect() as conn:
        return conn.execute(sa.select(s.c.status, s.c.approved_by, s.c.approved_at).where(s.c.id == sid)).one()


# ---------------------------------------------------------------------------------------------- approval
def test_operator_approves_an_advisory_schedule_with_audit(db, operator):
    sid = add_schedule(db, "E01", "advisory")
    at = T0 + dt.timedelta(minutes=5)
    done = energy.approve_schedule(db, operator, sid, now=at)
    assert done == {"id": sid, "site": "E01", "previous_status": "advisory", "status": "approved",
                    "approved_by": operator.user_id, "approved_at": at}
    row = schedule_row(db, sid)
    assert (row.status, row.approved_by, row.approved_at) == ("approved", operator.user_id, at)
    [entry] = read_audit(db, action_prefix="dispatch_")
    assert entry["action"] == "dispatch_approved" and entry["target"] == f"dispatch_schedule:{sid}"
    assert entry["user_id"] == operator.user_id
    assert entry["detail"] == {"site": "E01", "previous_status": "advisory"}


def test_draft_is_approvable_too(db, operator):
    sid = add_schedule(db, "park", "draft")
    assert energy.approve_schedule(db, operator, sid, now=T0)["previous_status"] == "draft"
    assert schedule_row(db, sid).status == "approved"


@pytest.mark.parametrize("who", [ENT_E01, VISITOR], ids=["enterprise", "visitor"])
def test_enterprise_user_and_visitor_may_not_approve(db, who):
    sid = add_schedule(db, "E01", "advisory")
    with pytest.raises(AccessError, match=rf"{who.username}.*dispatch\.approve"):
        energy.approve_schedule(db, who, sid, now=T0)
    row = schedule_row(db, sid)
    assert (row.status, row.approved_by, row.approved_at) == ("advisory", None, None)
    assert read_audit(db, action_prefix="dispatch_") == []


def test_unknown_or_not_approvable_schedule_is_refused_naming_id_and_status(db, operator):
    executed = add_schedule(db, "E01", "executed")
    with pytest.raises(DispatchError, match=r"no dispatch schedule 999"):
        energy.approve_schedule(db, operator, 999, now=T0)
    with pytest.raises(DispatchError, match=rf"schedule {executed}: status 'executed' cannot be approved"):
        energy.approve_schedule(db, operator, executed, now=T0)
    assert schedule_row(db, executed).status == "executed"
    sid = add_schedule(db, "E02", "advisory")
    energy.approve_schedule(db, operator, sid, now=T0)
    with pytest.raises(DispatchError, match=rf"schedule {sid}: status 'approved'"):
        energy.approve_schedule(db, operator, sid, now=T0 + dt.timedelta(minutes=1))
    assert schedule_row(db, sid).approved_at == T0                 # the first approval stands
    assert len(read_audit(db, action_prefix="dispatch_")) == 1


# ---------------------------------------------------------------------------------------------- dispatch reads
def test_latest_schedule_per_site_park_first(db, operator):
    old = add_schedule(db, "E01", "advisory", T0 - dt.timedelta(minutes=15), savings=1.0)
    new = add_schedule(db, "E01", "executed", T0, savings=2.5)
    park = add_schedule(db, "park", "executed", T0, savings=7.0)
    add_schedule(db, "E02", "executed", T0 - dt.timedelta(days=8))            # older than 7 days: not shown
    df = energy.latest_schedules(db, operator, now=T0 + dt.timedelta(minutes=1))
    assert list(df["site"]) == ["park", "E01"] and list(df["id"]) == [park, new]
    assert old not in set(df["id"])
    assert list(df["savings_cny"]) == [7.0, 2.5]
    assert df["created_at"].iloc[1] == pd.Timestamp("2026-11-25 16:00", tz="Asia/Shanghai")
    with pytest.raises(AccessError):
        energy.latest_schedules(db, ENT_E01, now=T0)


def test_plan_frame_signs_and_soc():
    f = energy.plan_frame(plan("E01"))
    assert list(f["B1.p_kw"]) == [-100.0, 40.0]           # p_kw = discharge - charge: > 0 discharges
    assert list(f["B1.soc_frac"]) == [0.6, 0.55]
    assert f.index[0] == pd.Timestamp("2026-11-25 16:00", tz="Asia/Shanghai")
    assert energy.plan_storages(plan("E01")) == ["B1"]


def test_recent_commands_newest_first(db, operator):
    sid = add_schedule(db, "E01", "executed")
    c = TABLES["dispatch_command"]
    with db.begin() as conn:
        conn.execute(sa.insert(c), [
            {"schedule_id": sid, "device_id": "E01-L1", "due_at": T0, "setpoint_p_kw": -100.0, "mode": "auto",
             "status": "verified", "issued_at": T0, "result": "read back -100 kW"},
            {"schedule_id": sid, "device_id": "E02-M0", "due_at": T0, "setpoint_p_kw": 40.0, "mode": "advisory",
             "status": "proposed", "issued_at": T0, "result": ""}])
    df = energy.recent_commands(db, operator)
    assert list(df["device_id"]) == ["E02-M0", "E01-L1"]
    assert list(df["setpoint_p_kw"]) == [40.0, -100.0]
    assert list(energy.recent_commands(db, operator, devices=["E01-L1"])["status"]) == ["verified"]
    with pytest.raises(AccessError):
        energy.recent_commands(db, VISITOR)


def test_flex_resources_of_the_shipped_park_at_a_given_soc():
    from anning_lib.park import load_park

    f = energy.flex_resources(load_park(), {"SES": 0.6}, now=pd.Timestamp("2026-07-01T14:10", tz="Asia/Shanghai"))
    ses = f.set_index("id").loc["SES"]
    # SES 50,000 kWh, 25,000 kW, soc limits 0.1..0.95, eta 0.95, one hour:
    # up = (0.6 - 0.1) * 50,000 * 0.95 = 23,750 kW; down = min(25,000, (0.95 - 0.6) * 50,000 / 0.95 = 18,421.05)
    assert ses["up_kw_held"] == pytest.approx(23750.0)
    assert ses["down_kw_held"] == pytest.approx(18421.0526, abs=1e-3)
    assert bool(ses["soc_measured"]) and not bool(f.set_index("id").loc["E05-BESS", "soc_measured"])
    eaf = f.set_index("id").loc["E01-EAF"]                 # declared flex: curtailable 18 MW for 2 h
    assert (eaf["kind"], eaf["up_kw_held"], eaf["down_kw_held"], eaf["notice_min"]) == ("curtailable", 18000.0,
                                                                                        0.0, 60.0)


# ---------------------------------------------------------------------------------------------- carbon
def line(scope: str, co2_t: float, item: str = "natural_gas") -> dict:
    return {"scope": scope, "category": "combustion", "item": item, "activity_amount": 1000.0,
            "activity_unit": "Nm3", "activity_source": "entered", "factor_value": 0.002, "factor_unit": "tCO2/Nm3",
            "factor_source": "GB/T 32150-2015, 表B.1 (2015); factor set 2026.1", "formula": "E = AD × EF",
            "co2_t": co2_t}


def add_run(db, enterprise_id: str, month: str, version: str, lines: list[dict]) -> int:
    from anning_lib.carbon.records import month_bounds

    start, end = month_bounds(month)
    run, ln = TABLES["carbon_run"], TABLES["carbon_line"]
    with db.begin() as conn:
        rid = conn.execute(sa.insert(run).values(
            enterprise_id=enterprise_id, period_start=start.to_pydatetime(), period_end=end.to_pydatetime(),
            factor_version=version, computed_at=T0, total_co2_t=0.0).returning(run.c.id)).scalar_one()
        conn.execute(sa.insert(ln), [{"run_id": rid, **x} for x in lines])
    return rid


@pytest.fixture
def accounts(db):
    """E01 2026-10: scope 1 100 + 20.5, scope 2 location 50, market 30, scope 3 7, memo 99 (not added);
    E02 2026-10: scope 1 10, scope 2 location 5."""
    add_run(db, "E01", "2026-10", "2026.1", [line("scope1", 100.0), line("scope1", 20.5, "diesel"),
                                            line("scope2_location", 50.0, "electricity"),
                                            line("scope2_market", 30.0, "electricity"), line("scope3", 7.0, "freight"),
                                            line("memo", 99.0, "co2")])
    add_run(db, "E02", "2026-10", "2026.1", [line("scope1", 10.0), line("scope2_location", 5.0, "electricity")])
    return db


def test_carbon_choices_by_role(tiny_park, operator):
    assert energy.carbon_choices(operator, tiny_park) == [None, "E01", "E02"]
    assert energy.carbon_choices(ENT_E01, tiny_park) == ["E01"]
    assert energy.carbon_choices(VISITOR, tiny_park) == []


def test_enterprise_user_reads_its_own_stored_totals_and_lines(accounts):
    acc = energy.carbon_month(accounts, ENT_E01, "E01", "2026-10")
    # total = scope 1 (100 + 20.5) + scope 2 location 50 = 170.5; memo 99 left out
    assert acc["totals"] == {"scope1": 120.5, "scope2_location": 50.0, "scope2_market": 30.0, "scope3": 7.0,
                             "total": 170.5}
    assert acc["factor_version"] == "2026.1" and acc["enterprises"] == ["E01"]
    lines = acc["lines"]
    assert list(lines["item"]) == ["natural_gas", "diesel", "electricity", "electricity", "freight", "co2"]
    assert list(lines["scope"])[-1] == "memo"
    first = lines.iloc[0]
    assert (first["activity_amount"], first["activity_unit"], first["factor_value"], first["factor_unit"],
            first["factor_version"]) == (1000.0, "Nm3", 0.002, "tCO2/Nm3", "2026.1")
    assert first["factor_source"].startswith("GB/T 32150-2015")
    months = energy.carbon_months(accounts, ENT_E01, "E01")
    assert list(months["month"]) == ["2026-10"] and list(months["versions"]) == [["2026.1"]]


@pytest.mark.parametrize("call", [
    lambda db: energy.carbon_month(db, ENT_E01, "E02", "2026-10"),
    lambda db: energy.carbon_month(db, ENT_E01, None, "2026-10"),
    lambda db: energy.carbon_months(db, ENT_E01, "E02"),
    lambda db: energy.trade_price(db, ENT_E01, "E02"),
    lambda db: energy.allowance_position(db, ENT_E01, "E02", 2026, 80.0),
    lambda db: energy.park_positions(db, ENT_E01, 2026, 80.0),
], ids=["month", "park month", "months", "price", "position", "park positions"])
def test_enterprise_user_is_refused_another_enterprise_or_the_park(accounts, call):
    with pytest.raises(AccessError, match=r"ent1.*enterprise E01.*may not see"):
        call(accounts)


def test_park_totals_are_the_sum_of_the_enterprises(accounts, operator):
    acc = energy.carbon_month(accounts, operator, None, "2026-10")
    # scope 1 120.5 + 10; scope 2 location 50 + 5; total 130.5 + 55 = 185.5
    assert acc["totals"] == {"scope1": 130.5, "scope2_location": 55.0, "scope2_market": 30.0, "scope3": 7.0,
                             "total": 185.5}
    assert acc["enterprises"] == ["E01", "E02"]
    by = energy.totals_by_enterprise(acc["lines"])
    assert list(by.index) == ["E01", "E02"] and list(by["total"]) == [170.5, 15.0]
    months = energy.carbon_months(accounts, operator, None)
    assert months.iloc[0].to_dict() == {"month": "2026-10", "versions": ["2026.1"], "enterprises": 2}


def test_newest_factor_version_by_default_older_on_request(accounts, operator):
    add_run(accounts, "E01", "2026-10", "2026.2", [line("scope1", 90.0)])
    assert energy.carbon_month(accounts, operator, "E01", "2026-10")["totals"]["scope1"] == 90.0
    assert energy.carbon_month(accounts, operator, "E01", "2026-10", version="2026.1")["totals"]["scope1"] == 120.5
    assert list(energy.carbon_months(accounts, operator, "E01")["versions"]) == [["2026.2", "2026.1"]]


def test_a_month_without_account_is_an_error_naming_it(accounts, operator):
    from anning_lib.errors import CarbonError

    with pytest.raises(CarbonError, match=r"no stored carbon account of E02 for 2026-09"):
        energy.carbon_month(accounts, operator, "E02", "2026-09")


def test_allowance_position_and_price_from_the_ledger(accounts, operator):
    from anning_lib.carbon.ledger import record_movement

    ts = dt.datetime(2026, 6, 1, tzinfo=dt.UTC)
    record_movement(accounts, "E01", {"year": 2026, "instrument": "CEA", "kind": "allocated", "quantity_t": 1000.0,
                                      "ts": ts})
    record_movement(accounts, "E01", {"year": 2026, "instrument": "CEA", "kind": "bought", "quantity_t": 100.0,
                                      "price_cny_per_t": 80.0, "ts": ts + dt.timedelta(days=1), "market": "CEEX"})
    record_movement(accounts, "E01", {"year": 2026, "instrument": "CCER", "kind": "bought", "quantity_t": 50.0,
                                      "price_cny_per_t": 60.0, "ts": ts + dt.timedelta(days=2)})
    # the newest CEA trade (the later CCER trade is another instrument)
    price = energy.trade_price(accounts, ENT_E01, "E01")
    assert (price["price_cny_per_t"], price["kind"], price["market"]) == (80.0, "bought", "CEEX")
    assert energy.trade_price(accounts, operator, None)["enterprise_id"] == "E01"
    assert energy.trade_price(accounts, ENT_E02, "E02") is None

    p = energy.allowance_position(accounts, ENT_E01, "E01", 2026, 80.0)
    pos = p["position"]
    # emissions: scope 1 of October 120.5 t; CCER usable min(50, 5 % x 120.5 = 6.025);
    # surplus = 1,100 + 6.025 - 120.5 = 985.525 t, at 80 CNY/t = 78,842 CNY
    assert p["verified_co2_t"] == pytest.approx(120.5)
    assert pos["cea_balance_t"] == 1100.0 and pos["ccer_usable_t"] == pytest.approx(6.025)
    assert pos["surplus_t"] == pytest.approx(985.525) and pos["value_cny"] == pytest.approx(78842.0)
    # year end, linear: 120.5 x 12 = 1,446 t; CCER usable min(50, 72.3) = 50; 1,100 + 50 - 1,446 = -296 t
    assert p["projection"]["linear"]["year_end_co2_t"] == pytest.approx(1446.0)
    assert p["projected_position"]["linear"]["surplus_t"] == pytest.approx(-296.0)

    park = energy.park_positions(accounts, operator, 2026, 80.0)
    assert list(park["enterprise_id"]) == ["E01"]          # E02 has no ledger movement in 2026
    assert park["surplus_t"].iloc[0] == pytest.approx(985.525)
    assert park["projected_surplus_t"].iloc[0] == pytest.approx(-296.0)
