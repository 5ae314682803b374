"""The monthly dispatch and demand-response settlement report: hand-worked storage settlements against the
tariff file's own prices, the plan in force, and the template end to end (papermill -> PDF) on a simulated month
whose park total is recomputed here from the rollups with pandas alone."""

from __future__ import annotations

import datetime as dt
import math
import re
import subprocess
from datetime import date
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import sqlalchemy as sa
import yaml
from conftest import REPO, simulated_store

from anning_lib.auth.access import SYSTEM, Actor
from anning_lib.auth.users import add_user
from anning_lib.config import Settings
from anning_lib.dispatch.tariff import prices, tariff_for
from anning_lib.errors import ReportError
from anning_lib.portal.energy import approve_schedule
from anning_lib.reports import runner
from anning_lib.reports import settlement_html as sections
from anning_lib.reports.settlement import (
    park_totals,
    plan_in_force,
    plan_vs_measured,
    round_trip_efficiency,
    settle_storage,
    settlement_data,
)
from anning_lib.store.schema import TABLES

MONTH = "2026-10"
TZ = "Asia/Shanghai"
KIND = "dispatch-settlement"
TARIFFS = REPO / "data" / "tariffs"


@pytest.fixture
def kind(monkeypatch):
    """The report kind, registered as runner.KINDS will register it."""
    monkeypatch.setitem(runner.KINDS, KIND, runner.ReportKind(KIND, "dispatch_settlement.ipynb", False,
                                                              "reports_kind_dispatch-settlement"))
    return KIND


# ------------------------------------------------------------------------------------ the tariff file, by hand
def file_prices(tariff_id: str) -> tuple[dict[str, float], list[tuple[float, float, str]]]:
    """Import price per band [CNY/kWh] and the bands, read from the YAML files here (not through the library)."""
    tariff = yaml.safe_load((TARIFFS / f"{tariff_id}.yaml").read_text(encoding="utf-8"))
    tou = yaml.safe_load((TARIFFS / tariff["bands_file"]).read_text(encoding="utf-8"))
    assert not tariff.get("seasons"), "the hand calculation below knows no seasons"
    mult = tariff.get("multiplier") or tou["multiplier"]
    price = {b: tariff["energy_price_flat_cny_per_kwh"] * m + tariff["non_floating_cny_per_kwh"]
             for b, m in mult.items()}
    bands = []
    for b in tou["bands"]:
        (h0, m0), (h1, m1) = (map(int, str(b[k]).split(":")) for k in ("start", "end"))
        bands.append((h0 + m0 / 60, h1 + m1 / 60, b["band"]))
    return price, bands


def tariff_of(connection: str) -> str:
    assign = yaml.safe_load((TARIFFS / "assignments.yaml").read_text(encoding="utf-8"))
    if connection == "park":
        return assign["park"]
    return (assign.get("enterprises") or {}).get(connection, assign["default"])


def hand_price(local: pd.DatetimeIndex, tariff_id: str) -> np.ndarray:
    price, bands = file_prices(tariff_id)
    hours = local.hour + local.minute / 60
    out = np.full(len(local), np.nan)
    for lo, hi, band in bands:
        out[(hours >= lo) & (hours < hi)] = price[band]
    assert not np.isnan(out).any()
    return out


# ------------------------------------------------------------------------------------------ pure calculations
def day_case() -> tuple[pd.Series, pd.DataFrame]:
    """A storage charging 100 kW for the 4 valley hours 02:00-06:00 and discharging 80 kW for 4 peak hours
    18:00-22:00 of one day; the site's prices through the library (the test checks them against the file)."""
    index = pd.date_range("2026-10-15", periods=96, freq="15min", tz=TZ)
    hours = index.hour
    p = pd.Series(np.where((hours >= 2) & (hours < 6), -100.0, np.where((hours >= 18) & (hours < 22), 80.0, 0.0)),
                  index=index)
    return p, prices(*tariff_for("park", REPO / "data"), index)


def test_valley_charge_peak_discharge_by_hand():
    p, price = day_case()
    file, _bands = file_prices(tariff_of("park"))
    valley, peak = file["valley"], file["peak"]            # 0.30 x 0.5 + 0.16 and 0.30 x 1.5 + 0.16 CNY/kWh
    assert set(price["band"][p < 0]) == {"valley"} and set(price["band"][p > 0]) == {"peak"}
    assert price["import_price_cny_per_kwh"][p < 0].to_numpy() == pytest.approx(valley)
    assert price["import_price_cny_per_kwh"][p > 0].to_numpy() == pytest.approx(peak)

    r = settle_storage(p, price, usable_kwh=1000.0)
    charged, discharged = 100.0 * 4, 80.0 * 4                 # kWh
    assert r["charged_kwh_valley"] == pytest.approx(charged) and r["charged_kwh"] == pytest.approx(charged)
    assert r["discharged_kwh_peak"] == pytest.approx(discharged) and r["discharged_kwh"] == pytest.approx(discharged)
    assert r["charged_kwh_peak"] == r["charged_kwh_flat"] == r["discharged_kwh_valley"] == 0.0
    assert r["value_cny"] == pytest.approx(discharged * peak - charged * valley)     # 195.20 - 124.00 = 71.20
    assert r["value_cny"] == pytest.approx(71.2)
    assert r["efficiency_frac"] == pytest.approx(discharged / charged) == 0.8         # no SOC: D / C
    assert r["cycles"] == pytest.approx(discharged / 1000.0)                          # 0.32
    assert r["delta_stored_kwh"] is None and r["quarters"] == 96


def test_efficiency_counts_the_energy_still_stored():
    """eta_c = eta_d = 0.9: 400 kWh in stores 360 kWh, 320 kWh out takes 355.6 kWh, so 4.4 kWh stay; the
    round trip is 0.81, not 320 / 400 = 0.8."""
    p, price = day_case()
    stored = 0.9 * 400.0 - 320.0 / 0.9
    r = settle_storage(p, price, 1000.0, soc_start_frac=0.5, soc_end_frac=0.5 + stored / 1000.0)
    assert r["delta_stored_kwh"] == pytest.approx(stored)
    assert r["efficiency_frac"] == pytest.approx(0.81)
    assert round_trip_efficiency(400.0, 320.0, 0.0) == pytest.approx(0.8)
    assert math.isnan(round_trip_efficiency(0.0, 0.0))


def test_missing_quarter_hours_count_nothing_and_no_data_is_unknown():
    p, price = day_case()
    gap = p.copy()
    gap[(gap.index.hour == 18)] = np.nan                      # one peak hour unread: 80 kWh and its value gone
    r = settle_storage(gap, price, 1000.0)
    assert r["discharged_kwh"] == pytest.approx(240.0) and r["quarters"] == 92
    none = settle_storage(p * np.nan, price, 1000.0)
    assert none["quarters"] == 0 and math.isnan(none["value_cny"]) and math.isnan(none["discharged_kwh"])


def test_park_totals_treat_the_fleet_as_one_storage():
    rows = pd.DataFrame({"usable_kwh": [1000.0, 3000.0], "charged_kwh": [400.0, 1000.0],
                         "discharged_kwh": [320.0, 900.0], "value_cny": [71.2, 10.0],
                         "delta_stored_kwh": [0.0, None], "coverage_frac": [1.0, 0.5]})
    tot = park_totals(rows)
    assert tot["value_cny"] == pytest.approx(81.2) and tot["discharged_kwh"] == pytest.approx(1220.0)
    assert tot["cycles"] == pytest.approx(1220.0 / 4000.0)
    assert tot["efficiency_frac"] == pytest.approx(1220.0 / 1400.0)     # one SOC unknown: no correction
    assert tot["delta_stored_kwh"] is None and tot["coverage_frac"] == 0.5


def plan(start: str, n: int, p_kw: float, dev: str = "SES", *, horizon_end: str | None = None) -> dict:
    idx = pd.date_range(start, periods=n, freq="15min", tz=TZ)
    end = pd.Timestamp(horizon_end, tz=TZ) if horizon_end else idx[-1] + pd.Timedelta("15min")
    return {"site": "park", "horizon_start": idx[0].to_pydatetime(), "horizon_end": end.to_pydatetime(),
            "schedule": [{"start": ts.isoformat(), "storage": {dev: {"charge_kw": max(-p_kw, 0.0),
                                                                     "discharge_kw": max(p_kw, 0.0),
                                                                     "soc_frac": 0.5}}} for ts in idx]}


def test_the_newest_plan_covering_a_quarter_hour_is_in_force():
    older = plan("2026-10-15 00:00", 16, 100.0)                         # 00:00-04:00 discharge 100 kW
    newer = plan("2026-10-15 01:00", 4, -50.0)                          # 01:00-02:00 charge 50 kW
    cut = plan("2026-10-15 03:00", 8, 7.0, horizon_end="2026-10-15 03:30")   # steps past its horizon ignored
    start, end = pd.Timestamp("2026-10-15", tz=TZ), pd.Timestamp("2026-10-15 03:45", tz=TZ)
    got = plan_in_force([older, newer, cut], start, end, TZ)["SES"]
    hours = got.index.hour + got.index.minute / 60
    assert len(got) == 15                                               # clipped to [start, end)
    assert (got[hours < 1] == 100.0).all() and (got[(hours >= 1) & (hours < 2)] == -50.0).all()
    assert (got[(hours >= 2) & (hours < 3)] == 100.0).all()             # the older plan again after the newer
    assert (got[(hours >= 3) & (hours < 3.5)] == 7.0).all() and (got[hours >= 3.5] == 100.0).all()

    measured = pd.DataFrame({"SES": 90.0}, index=got.index)
    pv = plan_vs_measured(got.to_frame(), measured).iloc[0]
    planned_dis = 0.25 * (100.0 * 9 + 7.0 * 2)                           # 9 quarters at 100, 2 at 7 kW
    assert pv["quarters"] == 15 and pv["planned_discharged_kwh"] == pytest.approx(planned_dis)
    assert pv["planned_charged_kwh"] == pytest.approx(0.25 * 50.0 * 4)
    assert pv["measured_discharged_kwh"] == pytest.approx(0.25 * 90.0 * 15)
    assert pv["discharge_deviation_frac"] == pytest.approx(0.25 * 90.0 * 15 / planned_dis - 1.0)


# ------------------------------------------------------------------------------------------------ end to end
@pytest.fixture(scope="module")
def store(tmp_path_factory):
    """SQLite store with October 2026 of the simulated park (15-minute rollups refreshed), two plans of the
    shared station on 15 October (the newer approved by an operator), a draft that must not count, and a few
    setpoint commands."""
    engine, park = simulated_store(tmp_path_factory.mktemp("settlement") / "store.sqlite", date(2026, 10, 1),
                                   date(2026, 11, 1), rollups=True)

    uid = add_user(engine, SYSTEM, "op_li", "Settle-Report-2026!", "operator", display_name="李工")
    s, c = TABLES["dispatch_schedule"], TABLES["dispatch_command"]
    day = {"executed": plan("2026-10-15 00:00", 96, 0.0), "advisory": plan("2026-10-15 18:00", 8, 10_000.0),
           "draft": plan("2026-10-15 00:00", 96, -99_999.0)}
    ids = {}
    with engine.begin() as conn:
        for status, pl in day.items():
            body = {k: v for k, v in pl.items() if k not in ("horizon_start", "horizon_end")}
            ids[status] = conn.execute(sa.insert(s).values(
                created_at=pl["horizon_start"], strategy="optimal", horizon_start=pl["horizon_start"],
                horizon_end=pl["horizon_end"], status=status, objective_cny=0.0, plan=body)
                .returning(s.c.id)).scalar_one()
        due = pd.Timestamp("2026-10-15 18:00", tz=TZ).to_pydatetime()
        conn.execute(sa.insert(c), [
            *[{"schedule_id": ids["executed"], "device_id": "SES", "due_at": due, "setpoint_p_kw": 0.0,
               "mode": "auto", "status": "verified"} for _ in range(3)],
            {"schedule_id": ids["executed"], "device_id": "SES", "due_at": due, "setpoint_p_kw": 0.0, "mode": "auto",
             "status": "failed"},
            {"schedule_id": None, "device_id": "E05-BESS", "due_at": due, "setpoint_p_kw": 500.0, "mode": "advisory",
             "status": "proposed"},
            {"schedule_id": None, "device_id": "SES", "due_at": due + dt.timedelta(days=31), "setpoint_p_kw": 0.0,
             "mode": "auto", "status": "verified"}])                      # November: not this month's
    approve_schedule(engine, Actor(uid, "operator", None, "op_li"), ids["advisory"])
    yield engine, park
    engine.dispose()


def rollup_value_by_hand(engine, park) -> tuple[float, float]:
    """The park's arbitrage value [CNY] and energy discharged [kWh] of MONTH, straight from ``rollup_15min`` with
    pandas: Σ mean x price x 0.25 h per storage at its site's price from the tariff files."""
    owner = {d.id: ("park" if eid is None else eid) for eid, d in park.iter_devices() if d.type == "bess"}
    devices = ", ".join(f"'{d}'" for d in owner)
    q = ("SELECT p.tag, r.ts_start, r.mean FROM rollup_15min r JOIN point p ON p.id = r.point_id "
         f"WHERE p.code = 'p_kw' AND p.device_id IN ({devices})")
    with engine.connect() as conn:
        df = pd.read_sql(sa.text(q), conn)
    df["ts"] = pd.to_datetime(df["ts_start"], unit="ms", utc=True).dt.tz_convert(TZ)
    df = df[(df["ts"] >= pd.Timestamp(f"{MONTH}-01", tz=TZ)) & (df["ts"] < pd.Timestamp("2026-11-01", tz=TZ))]
    value = 0.0
    for tag, g in df.groupby("tag"):
        assert len(g) == 31 * 96
        price = hand_price(pd.DatetimeIndex(g["ts"]), tariff_of(owner[tag.split(".")[0]]))
        value += float((g["mean"].to_numpy() * price).sum() * 0.25)
    return value, float(df["mean"].clip(lower=0).sum() * 0.25)


def pdftext(path: Path) -> str:
    return subprocess.run(["pdftotext", "-layout", str(path), "-"], check=True, capture_output=True,
                          text=True).stdout


def numbers(line: str) -> list[float]:
    return [float(x.replace(",", "")) for x in re.findall(r"-?\d[\d,]*\.\d+|-?\d[\d,]*", line)]


def test_report_pdf_park_total_is_the_rollups_by_hand(store, tmp_path, kind):
    engine, park = store
    expected_value, expected_discharged = rollup_value_by_hand(engine, park)
    d = settlement_data(engine, park, MONTH, tz=TZ)
    assert d["totals"]["value_cny"] == pytest.approx(expected_value, rel=1e-12)
    assert d["totals"]["discharged_kwh"] == pytest.approx(expected_discharged, rel=1e-12)
    assert list(d["storages"]["storage_id"]) == ["SES", "E05-BESS", "E10-BESS", "E12-BESS"]   # park first
    assert (d["storages"]["coverage_frac"] == 1.0).all()
    # the simulated storages run at 0.95 x 0.95; the meters' small errors aside, the round trip reads back
    assert d["totals"]["efficiency_frac"] == pytest.approx(0.95 * 0.95, abs=0.01)

    row = runner.run_report(engine, kind, MONTH, None, settings=Settings(var_dir=tmp_path / "var", report_retry_s=0))
    assert row["status"] == "done", row["error"]
    text = pdftext(Path(row["output_path"]))
    assert "储能调度与需求响应结算报告" in text and MONTH in text
    total = next(ln for ln in text.splitlines() if ln.strip().startswith("园区合计"))   # the settlement table's
    assert numbers(total)[-1] == pytest.approx(expected_value, abs=0.005)            # value to the fen
    assert f"{expected_value:,.2f}" in text and f"{expected_discharged / 1000:,.3f}" in text     # the KPIs
    assert "需求响应事件目前不存入数据库" in text
    # plans and commands of the month: counts, the approver, the November command left out
    assert "op_li" in text and "李工" in text
    cmd = d["commands"].set_index(["mode", "status"])["n"].to_dict()
    assert cmd == {("auto", "failed"): 1, ("auto", "verified"): 3, ("advisory", "proposed"): 1}
    html = Path(row["output_path"]).with_suffix(".html").read_text(encoding="utf-8")
    for cls in ("settlement", "bands", "tariffs", "schedules", "approvals", "commands", "plan"):
        assert f'<table class="{cls}">' in html, cls


def test_planned_against_measured_uses_the_plan_in_force(store):
    """On 15 October the executed plan says 0 kW all day and the approved one 10 MW discharge 18:00-20:00; the
    draft (-100 MW) counts for nothing. Measured: the rollups of those 96 quarter-hours."""
    engine, park = store
    d = settlement_data(engine, park, MONTH, tz=TZ, refresh=False)
    counts = d["schedule_counts"].set_index(["site", "status"])["n"].to_dict()
    assert counts == {("park", "approved"): 1, ("park", "draft"): 1, ("park", "executed"): 1}
    assert d["approvals"].to_dict("records") == [{"approved_by": "op_li", "approved_by_name": "李工", "n": 1}]
    with engine.connect() as conn:
        meas = pd.read_sql(sa.text(
            "SELECT r.mean FROM rollup_15min r JOIN point p ON p.id = r.point_id WHERE p.tag = 'SES.p_kw' "
            "AND r.ts_start >= :s AND r.ts_start < :e ORDER BY r.ts_start"), conn,
            params={"s": int(pd.Timestamp("2026-10-15", tz=TZ).timestamp() * 1000),
                    "e": int(pd.Timestamp("2026-10-16", tz=TZ).timestamp() * 1000)})["mean"]
    row = d["plan"].set_index("storage_id").loc["SES"]
    assert row["quarters"] == 96 and len(meas) == 96
    assert row["planned_discharged_kwh"] == pytest.approx(8 * 10_000.0 * 0.25)
    assert row["planned_charged_kwh"] == 0.0
    assert row["measured_discharged_kwh"] == pytest.approx(float(meas.clip(lower=0).sum() * 0.25))
    assert list(d["plan"]["storage_id"]) == ["SES"]


def test_english_sections_render(store):
    engine, park = store
    d = settlement_data(engine, park, MONTH, tz=TZ, refresh=False)
    body = "".join(f(d, "en") for f in sections.SECTIONS if f is not sections.daily)
    assert "Dispatch and demand-response settlement for 2026-10" in body and "Park total" in body
    assert "Demand-response events are not stored in the database" in body


def test_park_level_kind_refuses_an_enterprise(store, tmp_path, kind):
    engine, _park = store
    with pytest.raises(ReportError, match="enterprise: the dispatch-settlement report is park-level"):
        runner.run_report(engine, kind, MONTH, "E05", settings=Settings(var_dir=tmp_path / "var"))
