"""Demand response / virtual power plant (anning_lib.dispatch.vpp, .drbaseline); expected values worked by hand."""

from __future__ import annotations

import math
from datetime import date
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from anning_lib.dispatch.drbaseline import (
    customer_baseline,
    delivered_reduction,
    settle,
)
from anning_lib.dispatch.vpp import (
    DrEvent,
    FlexResource,
    allocate,
    flexibility,
    resources_from_park,
)
from anning_lib.errors import DispatchError, InfeasibleError, ParkModelError
from anning_lib.park import load_park, parse_park

ROOT = Path(__file__).resolve().parent.parent
DATA = ROOT / "data"
PARK_FILE = DATA / "park" / "anning.yaml"
TZ = "Asia/Shanghai"


def event(**kw) -> DrEvent:
    raw = dict(event_id="DR-1", window_start="2026-07-01T14:00+08:00", window_end="2026-07-01T15:00+08:00",
               target_kw=3000.0, price_cny_per_kwh=3.0, notice_min=120)
    return DrEvent.from_dict(raw | kw)


def curtail(id_, ent, up_kw, cost, duration_h=4.0, **kw) -> FlexResource:
    return FlexResource(id_, ent, "curtailable", up_kw=up_kw, max_duration_h=duration_h, cost_cny_per_kwh=cost, **kw)


def storage(id_="S", ent="E9", **kw) -> FlexResource:
    args = dict(up_kw=1000.0, down_kw=1000.0, cost_cny_per_kwh=0.1, energy_kwh=1000.0, soc_frac=0.5,
                soc_min_frac=0.1, soc_max_frac=0.9, eta_charge=0.95, eta_discharge=0.9)
    return FlexResource(id_, ent, "storage", **(args | kw))


# ---------------------------------------------------------------------------------------------- allocation
def test_cheaper_resource_is_used_fully_first():
    # target 3000 kW for 1 h (4 x 15 min); A: 2000 kW at 0.5 CNY/kWh, B: 2000 kW at 2.0 CNY/kWh
    # -> A 2000 kW and B 1000 kW in every interval
    # cost = 0.5 * 2000 kWh + 2.0 * 1000 kWh = 1000 + 2000 = 3000 CNY; revenue = 3.0 * 3000 kWh = 9000 CNY
    a = allocate(event(), [curtail("A", "E1", 2000, 0.5), curtail("B", "E2", 2000, 2.0)])
    assert len(a.kw) == 4 and a.dt_h == 0.25
    np.testing.assert_allclose(a.kw["A"], 2000.0, atol=1e-6)
    np.testing.assert_allclose(a.kw["B"], 1000.0, atol=1e-6)
    assert a.cost_cny == pytest.approx(3000.0)
    assert a.revenue_cny == pytest.approx(9000.0)
    assert a.margin_cny == pytest.approx(6000.0)
    assert a.by_enterprise.loc["E1", "energy_kwh"] == pytest.approx(2000.0)
    assert a.by_enterprise.loc["E2", "energy_kwh"] == pytest.approx(1000.0)
    assert a.by_enterprise.loc["E2", "cost_cny"] == pytest.approx(2000.0)
    assert list(a.enterprise_kw().columns) == ["E1", "E2"]


@pytest.mark.parametrize("value, s_kwh, c_kwh, cost", [
    # storage can deliver (0.5 - 0.1) * 1000 kWh * eta_d 0.9 = 360 kWh; the curtailable load C covers the rest
    # of 600 kW x 1 h = 600 kWh: 240 kWh. cost = 0.1 * 360 + 1.0 * 240 = 36 + 240 = 276 CNY
    (0.0, 360.0, 240.0, 276.0),
    # stored energy valued 0.45 CNY/kWh: storage costs 0.1 + 0.45 / 0.9 = 0.6 < 1.0, still first:
    # 0.6 * 360 + 1.0 * 240 = 216 + 240 = 456 CNY
    (0.45, 360.0, 240.0, 456.0),
    # valued 1.8: storage costs 0.1 + 1.8 / 0.9 = 2.1 > 1.0 -> C alone, 600 kWh * 1.0 = 600 CNY
    (1.8, 0.0, 600.0, 600.0),
])
def test_storage_runs_out_of_energy_and_the_curtailable_covers_the_rest(value, s_kwh, c_kwh, cost):
    res = [storage(), curtail("C", "E1", 1000, 1.0, duration_h=2.0)]
    a = allocate(event(target_kw=600.0), res, storage_energy_value_cny_per_kwh=value)
    np.testing.assert_allclose(a.kw.sum(axis=1), 600.0, atol=1e-6)
    assert a.resources.loc["S", "energy_kwh"] == pytest.approx(s_kwh, abs=1e-6)
    assert a.resources.loc["C", "energy_kwh"] == pytest.approx(c_kwh, abs=1e-6)
    assert a.cost_cny == pytest.approx(cost, abs=1e-6)
    # equal-cost spreads are broken towards a steady schedule: 360 kWh / 1 h = 360 kW in each interval
    np.testing.assert_allclose(a.kw["S"], s_kwh, atol=1e-6)


def test_duration_limit_is_an_energy_limit_and_is_reported():
    # L: 1000 kW for at most 0.5 h -> at most 500 kWh in the 1 h window; X (expensive) covers 600 - 500 kWh
    res = [curtail("L", "E1", 1000, 0.2, duration_h=0.5), curtail("X", "E2", 1000, 5.0)]
    a = allocate(event(target_kw=600.0), res)
    assert a.resources.loc["L", "energy_kwh"] == pytest.approx(500.0)
    assert a.resources.loc["X", "energy_kwh"] == pytest.approx(100.0)
    assert a.cost_cny == pytest.approx(0.2 * 500 + 5.0 * 100)        # 100 + 500 = 600 CNY
    assert any(n.startswith("L: reduces over 1 h") for n in a.notes)


def test_baseline_bounds_a_loads_reduction_and_notice_excludes():
    idx = pd.date_range("2026-07-01 14:00", periods=4, freq="15min", tz=TZ)
    slow = curtail("SLOW", "E3", 5000, 0.01, notice_min=240)     # needs 240 min, the event gives 120
    a = allocate(event(), [curtail("A", "E1", 2000, 0.5), curtail("B", "E2", 4000, 2.0), slow],
                 baseline_kw={"A": pd.Series(1500.0, index=idx)})
    # A can shed at most its baseline 1500 kW; B covers 3000 - 1500 = 1500 kW
    np.testing.assert_allclose(a.kw["A"], 1500.0, atol=1e-6)
    np.testing.assert_allclose(a.kw["B"], 1500.0, atol=1e-6)
    assert "SLOW" not in a.kw.columns and "240 min" in a.excluded["SLOW"]


def test_unreachable_target_names_the_field_and_the_interval():
    # 2000 + 2000 = 4000 kW at most in any interval, 5000 asked
    with pytest.raises(DispatchError) as info:
        allocate(event(target_kw=5000.0), [curtail("A", "E1", 2000, 0.5), curtail("B", "E2", 2000, 2.0)])
    assert str(info.value) == ("event.target_kw: 5000 kW asked, at most 4000 kW available in interval "
                               "2026-07-01T14:00:00+08:00")
    # storage alone: 1000 kW per interval but 360 kWh in all -> 360 kW held through the 1 h window
    with pytest.raises(InfeasibleError) as info:
        allocate(event(target_kw=600.0), [storage()])
    assert str(info.value).startswith("event.target_kw: 600 kW asked, at most 360 kW can be held")


def test_window_off_the_index_grid_is_refused():
    idx = pd.date_range("2026-07-01 13:00", periods=12, freq="15min", tz=TZ)
    with pytest.raises(DispatchError, match=r"^event.window_start: 2026-07-01T14:10:00\+08:00"):
        allocate(event(window_start="2026-07-01T14:10+08:00"), [curtail("A", "E1", 5000, 0.5)], idx)


def test_flexibility_per_interval():
    idx = pd.date_range("2026-07-01 14:00", periods=2, freq="15min", tz=TZ)
    s = storage(soc_frac=0.2, eta_discharge=1.0)
    shift = FlexResource("SH", "E2", "shiftable", up_kw=2000.0, down_kw=1000.0, max_duration_h=3.0,
                         rebound_frac=1.0, rated_kw=5000.0)
    f = flexibility([s, curtail("C", "E1", 1000, 1.0), shift], idx,
                    baseline_kw={"C": pd.Series(300.0, index=idx), "SH": pd.Series(4500.0, index=idx)})
    # storage: (0.2 - 0.1) * 1000 kWh * 1.0 = 100 kWh -> 100 / 0.25 h = 400 kW for a whole interval,
    # 100 kWh / 1000 kW = 0.1 h at full power; charging room (0.9 - 0.2) * 1000 / 0.95 = 736.8 kWh
    # -> 2947 kW per interval, capped by the 1000 kW inverter
    assert f["S.up_kw"].tolist() == pytest.approx([400.0, 400.0])
    assert f["S.up_h"].iloc[0] == pytest.approx(0.1)
    assert f["S.down_kw"].iloc[0] == pytest.approx(1000.0)
    assert f["C.up_kw"].iloc[0] == pytest.approx(300.0) and f["C.down_kw"].iloc[0] == 0.0   # its baseline
    assert f["SH.down_kw"].iloc[0] == pytest.approx(500.0)     # rated 5000 - baseline 4500
    assert f["total.up_kw"].iloc[0] == pytest.approx(400 + 300 + 2000)
    assert f["total.down_kw"].iloc[0] == pytest.approx(1000 + 0 + 500)
    with pytest.raises(DispatchError, match="resources: duplicate id 'C'"):
        flexibility([curtail("C", "E1", 1, 1), curtail("C", "E2", 1, 1)], idx)


# ---------------------------------------------------------------------------------------------- events
@pytest.mark.parametrize("change, message", [
    ({"window_end": "2026-07-01T10:00+08:00"},
     "event.window_end: 2026-07-01T10:00:00+08:00 is not after window_start 2026-07-01T14:00:00+08:00"),
    ({"window_start": "2026-07-01T14:00"}, "event.window_start: 2026-07-01T14:00 has no time zone"),
    ({"window_start": "tomorrow-ish"}, "event.window_start: 'tomorrow-ish' is not a date-time"),
    ({"target_kw": -5}, "event.target_kw: -5 must be > 0"),
    ({"target_kw": "lots"}, "event.target_kw: 'lots' is not a finite number"),
    ({"price_cny_per_kwh": float("nan")}, "event.price_cny_per_kwh: nan is not a finite number"),
    ({"notice_min": -1}, "event.notice_min: -1 must be >= 0"),
    ({"event_id": ""}, "event.event_id: '' must be a non-empty text"),
    ({"colour": "red"}, "event.colour: unknown field"),
])
def test_bad_event_fields_are_named(change, message):
    with pytest.raises(DispatchError) as info:
        event(**change)
    assert str(info.value).startswith(message)


def test_event_missing_field_and_round_trip():
    raw = event().to_dict()
    assert raw["window_start"] == "2026-07-01T14:00:00+08:00"
    assert DrEvent.from_dict(raw) == event()
    del raw["notice_min"]
    with pytest.raises(DispatchError, match="^event.notice_min: missing"):
        DrEvent.from_dict(raw)


# ---------------------------------------------------------------------------------------------- baseline
def _history(event_day_bump_kw: float = 0.0) -> pd.Series:
    """15-min demand 2026-09-01 .. 2026-10-12: on day k (k = 0 on 1 Sep) at local hour h, 1000 + k + h kW;
    the event day 12 Oct gets ``event_day_bump_kw`` more."""
    idx = pd.date_range("2026-09-01", "2026-10-13", freq="15min", tz=TZ, inclusive="left")
    k = np.asarray((idx.normalize() - pd.Timestamp("2026-09-01", tz=TZ)).days, dtype=float)
    h = np.asarray(idx.hour + idx.minute / 60.0)
    bump = np.where(idx.date == date(2026, 10, 12), event_day_bump_kw, 0.0)
    return pd.Series(1000.0 + k + h + bump, index=idx)


WINDOW_H = 14.0 + np.arange(8) / 4.0      # 14:00 .. 15:45


def test_baseline_mean_of_ten_like_working_days():
    # event day Mon 2026-10-12 (a working day). Going back, the working days in China's 2026 calendar:
    # Sat 10-10 (worked in lieu of National Day, k=39), Fri 10-09 (38), Thu 10-08 (37); 10-01..10-07 National
    # Day holiday and 10-04 Sunday are skipped; Wed 09-30 (29), 09-29 (28), 09-28 (27); 09-26/27 weekend and
    # Fri 09-25 Mid-Autumn are skipped; 09-24 (23), 09-23 (22), 09-22 (21), 09-21 (20).
    # mean k = (39+38+37 + 29+28+27 + 23+22+21+20) / 10 = 284 / 10 = 28.4
    b = customer_baseline(_history(), date(2026, 10, 12), ("14:00", "16:00"))
    assert b.index[0] == pd.Timestamp("2026-10-12 14:00", tz=TZ) and len(b) == 8
    np.testing.assert_allclose(b.to_numpy(), 1028.4 + WINDOW_H)
    # 10-09 was an earlier event day: replaced by Sun 09-20 (worked in lieu, k=19): (284 - 38 + 19) / 10 = 26.5
    b = customer_baseline(_history(), date(2026, 10, 12), ("14:00", "16:00"), exclude={date(2026, 10, 9)})
    np.testing.assert_allclose(b.to_numpy(), 1026.5 + WINDOW_H)


def test_baseline_non_working_day_and_incomplete_days():
    # Sun 2026-10-11: the 3 most recent non-working days are the holidays 10-07, 10-06, 10-05 (k 36, 35, 34)
    # -> mean 35 (10-10 and 10-09, 10-08 are working days)
    b = customer_baseline(_history(), date(2026, 10, 11), ("14:00", "16:00"), n_days=3)
    np.testing.assert_allclose(b.to_numpy(), 1035.0 + WINDOW_H)
    # select="all": 10-11, 10-10, 10-09 -> (40 + 39 + 38) / 3 = 39
    b = customer_baseline(_history(), date(2026, 10, 12), ("14:00", "16:00"), n_days=3, select="all")
    np.testing.assert_allclose(b.to_numpy(), 1039.0 + WINDOW_H)
    # a gap in 10-08's window drops that day: 10-10, 10-09, 09-30 -> (39 + 38 + 29) / 3 = 35.333...
    hist = _history().drop(pd.Timestamp("2026-10-08 15:00", tz=TZ))
    b = customer_baseline(hist, date(2026, 10, 12), ("14:00", "16:00"), n_days=3)
    np.testing.assert_allclose(b.to_numpy(), 1000.0 + 106.0 / 3.0 + WINDOW_H)
    # Mon 09-07: only Tue 09-01 .. Fri 09-04 are in the history, 4 of the 10 working days asked
    with pytest.raises(DispatchError, match="^history_kw: only 4 complete working days"):
        customer_baseline(_history(), date(2026, 9, 7), ("14:00", "16:00"))


def test_baseline_additive_adjustment():
    # the event day runs 20 kW above its usual level (1000 + 41 + h). Adjustment period: the 2 h ending 1 h
    # before 14:00, i.e. 11:00..13:00; there the event day averages 1061 + mean(h) and the ten like days
    # 1028.4 + mean(h) -> shift +32.6 kW, adjusted baseline 1028.4 + 32.6 + h = 1061 + h
    hist = _history(event_day_bump_kw=20.0)
    b = customer_baseline(hist, date(2026, 10, 12), ("14:00", "16:00"), adjustment="additive")
    np.testing.assert_allclose(b.to_numpy(), 1061.0 + WINDOW_H)
    # capped at 1 % of the mean unadjusted baseline: 0.01 * (1028.4 + mean(14 .. 15.75) = 14.875) = 10.43275
    b = customer_baseline(hist, date(2026, 10, 12), ("14:00", "16:00"), adjustment="additive",
                          adjustment_cap_frac=0.01)
    np.testing.assert_allclose(b.to_numpy(), 1028.4 + 10.43275 + WINDOW_H)


def test_baseline_refuses_bad_arguments():
    with pytest.raises(DispatchError, match="^window\\[1\\]: 13:00:00 is not after window\\[0\\] 14:00:00"):
        customer_baseline(_history(), date(2026, 10, 12), ("14:00", "13:00"))
    with pytest.raises(DispatchError, match="^select: 'best'"):
        customer_baseline(_history(), date(2026, 10, 12), ("14:00", "16:00"), select="best")
    with pytest.raises(DispatchError, match="^history_kw: expected a Series on a tz-aware DatetimeIndex"):
        customer_baseline(_history().tz_localize(None), date(2026, 10, 12), ("14:00", "16:00"))


def test_delivered_reduction():
    idx = pd.date_range("2026-07-01 14:00", periods=3, freq="15min", tz=TZ)
    r = delivered_reduction(pd.Series([100.0, 100.0, 100.0], idx), pd.Series([60.0, 100.0, 130.0], idx))
    assert r.tolist() == [40.0, 0.0, -30.0]
    with pytest.raises(DispatchError, match="^measured_kw: no value at 2026-07-01T14:30:00\\+08:00"):
        delivered_reduction(pd.Series([100.0] * 3, idx), pd.Series([60.0, 100.0], idx[:2]))


# ---------------------------------------------------------------------------------------------- settlement
def test_settlement_by_hand():
    # 3500 kW for 1 h: A (E1, 0.5) 2000 kW, B (E2, 1.0) 1000 kW, C (E3, 2.0) 500 kW -> 2000, 1000, 500 kWh
    ev = event(target_kw=3500.0)
    res = [curtail("A", "E1", 2000, 0.5), curtail("B", "E2", 1000, 1.0), curtail("C", "E3", 1000, 2.0)]
    a = allocate(ev, res)
    idx = a.kw.index
    base = {"E1": pd.Series(10000.0, idx), "E2": pd.Series(5000.0, idx), "E3": pd.Series(3000.0, idx)}
    meas = {"E1": pd.Series([6000.0, 7000.0, 7000.0, 8000.0], idx),      # mean 7000
            "E2": pd.Series(4700.0, idx), "E3": pd.Series(2600.0, idx)}
    s = settle(ev, a, base, meas)
    # E1: delivered (10000 - 7000) kW x 1 h = 3000 kWh, performance 1.5, paid up to 1.2 x 2000 = 2400 kWh
    #     -> 3.0 x 2400 = 7200 CNY
    # E2: delivered 300 kWh, performance 0.3 < 0.5 -> no payment, penalty 0.5 x 3.0 x (1000 - 300) = 1050 CNY
    # E3: delivered 400 kWh, performance 0.8 -> paid 400 kWh, 1200 CNY
    assert s.loc["E1", "delivered_kwh"] == pytest.approx(3000.0)
    assert s.loc["E1", "performance_frac"] == pytest.approx(1.5)
    assert s.loc["E1", "payment_cny"] == pytest.approx(7200.0) and s.loc["E1", "penalty_cny"] == 0.0
    assert s.loc["E2", "payment_cny"] == 0.0 and s.loc["E2", "penalty_cny"] == pytest.approx(1050.0)
    assert s.loc["E2", "net_cny"] == pytest.approx(-1050.0)
    assert s.loc["E3", "paid_kwh"] == pytest.approx(400.0) and s.loc["E3", "payment_cny"] == pytest.approx(1200.0)
    # TOTAL: allocated 3500, baseline 18000, measured 14300, delivered 3700 kWh (3700 / 3500 = 1.0571),
    # paid 2400 + 0 + 400 = 2800 kWh, payment 8400, penalty 1050, net 7350 CNY
    t = s.loc["TOTAL"]
    assert (t["allocated_kwh"], t["baseline_kwh"], t["measured_kwh"]) == pytest.approx((3500, 18000, 14300))
    assert t["performance_frac"] == pytest.approx(3700 / 3500)
    assert (t["paid_kwh"], t["payment_cny"], t["penalty_cny"], t["net_cny"]) == pytest.approx((2800, 8400, 1050, 7350))
    del meas["E2"]
    with pytest.raises(DispatchError, match=r"^measured_by_enterprise\[E2\]: missing"):
        settle(ev, a, base, meas)


# ---------------------------------------------------------------------------------------------- the park
def test_resources_from_the_park_model():
    park = load_park(PARK_FILE, DATA)
    res = {r.id: r for r in resources_from_park(park, soc_frac={"SES": 0.8}, degradation_cny_per_kwh=0.12)}
    assert {k for k, r in res.items() if r.kind == "storage"} == {"SES", "E05-BESS", "E10-BESS", "E12-BESS"}
    assert {k for k, r in res.items() if r.kind != "storage"} == {"E01-EAF", "E07-F1", "E10-MILL", "E12-GRAPH",
                                                                 "E13-WTP"}
    ses = res["SES"]      # data/park/anning.yaml: 50,000 kWh, 25,000 kW, soc 0.1..0.95, eta 0.95/0.95
    assert (ses.enterprise_id, ses.energy_kwh, ses.up_kw, ses.soc_frac) == ("park", 50000.0, 25000.0, 0.8)
    assert (ses.soc_min_frac, ses.eta_discharge, ses.cost_cny_per_kwh) == (0.1, 0.95, 0.12)
    assert res["E05-BESS"].soc_frac == 0.5 and res["E05-BESS"].enterprise_id == "E05"    # its soc_init_frac
    eaf = res["E01-EAF"]
    assert (eaf.kind, eaf.up_kw, eaf.down_kw, eaf.max_duration_h, eaf.cost_cny_per_kwh, eaf.notice_min) == \
        ("curtailable", 18000.0, 0.0, 2.0, 1.2, 60.0)
    # graphitisation: shiftable, down = min(8000, 24000 x (1 - 0.8) = 4800) = 4800 kW
    assert (res["E12-GRAPH"].kind, res["E12-GRAPH"].down_kw) == ("shiftable", pytest.approx(4800.0))
    with pytest.raises(DispatchError, match=r"^soc_frac\[NOPE\]"):
        resources_from_park(park, soc_frac={"NOPE": 0.5})
    # a 40 MW, 2 h call with 60 min notice: the phosphorus furnace (120 min) sits out, the rest delivers
    ev = event(window_end="2026-07-01T16:00+08:00", target_kw=40000.0, notice_min=60)
    a = allocate(ev, list(res.values()))
    assert set(a.excluded) == {"E07-F1"}
    np.testing.assert_allclose(a.kw.sum(axis=1), 40000.0, rtol=1e-9)
    assert a.resources.loc["E13-WTP", "energy_kwh"] == pytest.approx(800 * 2)    # cheapest: fully used
    assert math.isfinite(a.margin_cny)


def test_flex_larger_than_the_rating_is_refused():
    with open(PARK_FILE, encoding="utf-8") as fh:
        raw = yaml.safe_load(fh)
    dev = raw["enterprises"][0]["devices"][1]
    assert dev["id"] == "E01-EAF"
    dev["params"]["flex"]["max_reduction_kw"] = 40000
    with pytest.raises(ParkModelError) as info:
        parse_park(raw, DATA)
    assert "enterprises[0].devices[1].params: flex.max_reduction_kw 40000 must not exceed rated_kw 36000" \
        in str(info.value)

