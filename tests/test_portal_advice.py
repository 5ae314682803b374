"""The advice on the portal's enterprise page (issue 11 point 5): who may read it, the period it is valued on when
the store holds no whole month, and how its measures become the page's table (ranks, 万元, reasons)."""

from __future__ import annotations

import math
import re

import numpy as np
import pandas as pd
import pytest
from conftest import REPO, tiny_park_dict

from anning_lib.auth.access import Actor
from anning_lib.errors import AccessError, CarbonError
from anning_lib.i18n import catalogue
from anning_lib.portal import advice_view as av
from anning_lib.store import init_db, make_engine, refresh_rollups, write_measurements

TZ = "Asia/Shanghai"
ADMIN = Actor(1, "admin", username="admin")
ENT1 = Actor(3, "enterprise", "E01", "ent1")
VISITOR = Actor(4, "visitor", username="guest")


@pytest.fixture
def park():
    from anning_lib.park import parse_park

    return parse_park(tiny_park_dict(), data_dir=REPO / "data")


@pytest.fixture
def spy(monkeypatch):
    """Every read the advice could make, recorded instead of done."""
    calls: list[str] = []

    def default_period(engine, tz):
        calls.append("default_period")
        return pd.Timestamp("2026-01-01", tz=tz), pd.Timestamp("2026-04-01", tz=tz)

    def advise(engine, park, enterprise_id, start, end, **kw):
        calls.append(f"advise {enterprise_id} {kw}")
        return {"enterprise_id": enterprise_id, "start": start, "end": end, "measures": []}

    monkeypatch.setattr(av, "default_period", default_period)
    monkeypatch.setattr(av, "advise", advise)
    return calls


# ------------------------------------------------------------------------------------------------ scope
@pytest.mark.parametrize("actor", [ENT1, VISITOR], ids=["other-enterprise", "visitor"])
def test_refused_before_anything_is_read(spy, park, actor):
    with pytest.raises(AccessError, match=r"may not see the advice of enterprise E02"):
        av.enterprise_advice(None, park, actor, "E02")          # no engine: any read would fail otherwise
    assert spy == []


def test_own_enterprise_reads_without_refreshing(spy, park):
    a = av.enterprise_advice(None, park, ENT1, "E01")
    assert spy == ["default_period", "advise E01 {'refresh': False}"]   # a page does not write
    assert a["period_kind"] == "months" and a["start"] == pd.Timestamp("2026-01-01", tz=TZ)
    av.enterprise_advice(None, park, ADMIN, "E02")                      # park-wide roles: any enterprise
    assert spy[-1] == "advise E02 {'refresh': False}"


# ------------------------------------------------------------------------------------------------ the period
def ts(text: str) -> pd.Timestamp:
    return pd.Timestamp(text, tz=TZ)


def test_no_whole_month_falls_back_to_the_month_so_far():
    # three days stored (as the browser tests' portal): from the first measurement, the month's first day is earlier
    start, end, kind = av.fallback_period(ts("2026-12-01 00:00"), ts("2026-12-04 13:57"), ts("2026-12-04 14:00"), TZ)
    assert (start, end, kind) == (ts("2026-12-01"), ts("2026-12-04 14:00"), "month_so_far")
    # data since November: the month so far starts at the local month's first midnight
    start, _, kind = av.fallback_period(ts("2026-11-20 09:00"), ts("2026-12-04 13:57"), ts("2026-12-04 14:00"), TZ)
    assert (start, kind) == (ts("2026-12-01"), "month_so_far")
    # the gateway stopped yesterday: the period ends 15 minutes after the last measurement, not at the clock
    _, end, _ = av.fallback_period(ts("2026-12-01"), ts("2026-12-03 10:00"), ts("2026-12-04 14:00"), TZ)
    assert end == ts("2026-12-03 10:15")


def test_first_hours_of_a_month_use_the_last_days_and_too_little_data_none():
    start, end, kind = av.fallback_period(ts("2026-11-28 00:00"), ts("2026-12-01 02:00"), ts("2026-12-01 02:05"), TZ)
    assert (start, end, kind) == (ts("2026-11-28"), ts("2026-12-01 02:05"), "recent")
    start, _, kind = av.fallback_period(ts("2026-10-01"), ts("2026-12-01 02:00"), ts("2026-12-01 02:05"), TZ)
    assert (start, kind) == (ts("2026-11-24 02:05"), "recent")                 # RECENT_DAYS = 7
    assert av.fallback_period(ts("2026-12-04 08:00"), ts("2026-12-04 13:57"), ts("2026-12-04 14:00"), TZ) is None


def test_the_page_falls_back_when_the_store_has_no_whole_month(monkeypatch, spy, park):
    def no_month(engine, tz):
        raise CarbonError("period: the stored history 2026-12-01..2026-12-04 covers no whole month")

    monkeypatch.setattr(av, "default_period", no_month)
    monkeypatch.setattr("anning_lib.store.timeseries.data_range",
                        lambda engine, tz: (ts("2026-12-01"), ts("2026-12-04 13:57")))
    a = av.enterprise_advice(None, park, ENT1, "E01", now=ts("2026-12-04 14:00"))
    assert (a["start"], a["end"], a["period_kind"]) == (ts("2026-12-01"), ts("2026-12-04 14:00"), "month_so_far")
    monkeypatch.setattr("anning_lib.store.timeseries.data_range", lambda engine, tz: None)      # empty store
    assert av.enterprise_advice(None, park, ENT1, "E01") is None


def test_on_a_store_of_one_week(tmp_path, park):
    """End to end on a real store: a week in March, no whole month, valued over the month so far."""
    engine = make_engine(f"sqlite:///{tmp_path / 'store.sqlite'}")
    init_db(engine, park)
    q = pd.date_range(ts("2026-03-01"), ts("2026-03-08"), freq="15min", inclusive="left")
    e02 = np.where(q.hour >= 18, 3500.0, 500.0)               # 3,000 kW more in the evening peak hours
    write_measurements(engine, pd.DataFrame({"ts": q, "tag": "E02-M0.p_kw", "value": e02}))
    refresh_rollups(engine, q[0], q[-1] + pd.Timedelta("15min"))
    a = av.enterprise_advice(engine, park, ADMIN, "E02", now=ts("2026-03-08 00:00"))
    engine.dispose()
    assert a["period_kind"] == "month_so_far" and a["days"] == pytest.approx(7.0)
    table = av.advice_table(a, "zh_CN")
    shift = table.set_index("id").loc["load_shifting"]
    assert shift["recommended"] and shift["rank"] >= 1 and shift["npv_10k_cny"] > 0
    assert "峰段基荷以上负荷" in shift["why"]


# ------------------------------------------------------------------------------------------------ the table
def item(mid: str, **kw) -> dict:
    base = {"id": mid, "name": f"措施{mid}", "name_en": f"measure {mid}", "applies": True, "recommended": True,
            "reason": "", "capex_cny": 0.0, "annual_net_cny": 0.0, "co2_t_a": 0.0, "npv_cny": 0.0, "payback_a": None,
            "abatement_cost_cny_per_t": None, "rank_npv": None, "rank_macc": None, "size": {}, "basis": {},
            "sources": {}}
    return base | kw


ADVICE = {
    "enterprise_id": "E01", "start": ts("2026-09-01"), "end": ts("2026-12-01"), "days": 91.0,
    "catalogue_version": "2026.1", "discount_rate": 0.06, "period_kind": "months",
    "prices": {"peak": 0.61, "flat": 0.46, "valley": 0.31, "day": 0.385, "demand_charge": 38.0,
               "tariff": "yunnan_agent_purchase_2026"},
    "measures": [  # deliberately not in rank order
        item("pv", rank_npv=2, capex_cny=5_251_238.0, annual_net_cny=785_627.0, co2_t_a=241.5, npv_cny=4_791_714.0,
             payback_a=6.684, abatement_cost_cny_per_t=-1551.9, size={"kwp": 1750.4},
             basis={"free_roof_m2": 13062.8, "used_kwh_a": 2_251_030.5, "price_cny_per_kwh": 0.384},
             sources={"capex_cny_per_kwp": "assumption: 3.0 CNY/W"}),
        item("boiler", applies=False, recommended=False, reason="condition not met: boiler, gas_use"),
        item("motor", rank_npv=1, capex_cny=11_147_256.0, annual_net_cny=4_760_562.0, co2_t_a=1196.1,
             npv_cny=35_088_507.0, payback_a=2.342, abatement_cost_cny_per_t=-3020.5,
             basis={"motor_kwh_a": 111_472_555.0}),
        item("bess", recommended=False, capex_cny=7_777_778.0, annual_net_cny=811_268.0, co2_t_a=-132.5,
             npv_cny=-3_174_428.0, payback_a=9.587),
        item("green", rank_npv=3, annual_net_cny=-1_431_672.0, co2_t_a=29_428.8, npv_cny=-1_350_634.0,
             payback_a=0.0, abatement_cost_cny_per_t=48.6, basis={"grid_kwh_a": 274_266_671.8, "share": 1.0}),
        item("shift", recommended=False, reason="no load above the base load in peak hours"),
    ],
}


def test_recommended_first_by_rank_then_the_others_in_order():
    table = av.advice_table(ADVICE, "zh_CN")
    assert list(table.columns) == av.TABLE_COLUMNS
    assert list(table["id"]) == ["motor", "pv", "green", "boiler", "bess", "shift"]
    assert table["rank"].tolist()[:3] == [1, 2, 3] and table["rank"].iloc[3:].isna().all()
    assert table["recommended"].tolist() == [True, True, True, False, False, False]
    assert table["measure"].iloc[0] == "措施motor"
    assert av.advice_table(ADVICE, "en")["measure"].iloc[0] == "measure motor"


def test_money_in_wan_yuan_by_hand():
    t = av.advice_table(ADVICE, "zh_CN").set_index("id")
    # 35,088,507 CNY = 3,508.8507 万元; 11,147,256 CNY = 1,114.7256 万元; 4,760,562 CNY/a = 476.0562 万元/a
    assert t.loc["motor", "npv_10k_cny"] == pytest.approx(3508.8507)
    assert t.loc["motor", "capex_10k_cny"] == pytest.approx(1114.7256)
    assert t.loc["motor", "annual_net_10k_cny_a"] == pytest.approx(476.0562)
    assert t.loc["motor", "co2_t_a"] == 1196.1 and t.loc["motor", "payback_a"] == 2.342
    assert t.loc["pv", "abatement_cost_cny_per_t"] == -1551.9
    assert math.isnan(t.loc["green", "payback_a"])      # no investment but a yearly premium: never "pays back"
    assert t.loc["green", "npv_10k_cny"] == pytest.approx(-135.0634)
    assert t.loc["boiler"].drop(["rank", "measure", "why", "recommended", "sources"]).isna().all()


def test_the_reason_is_shown_for_a_measure_that_does_not_apply():
    zh, en = (av.advice_table(ADVICE, lang).set_index("id") for lang in ("zh_CN", "en"))
    assert zh.loc["boiler", "why"] == "不适用：无燃气锅炉、未使用天然气"
    assert en.loc["boiler", "why"] == "Does not apply: no gas-fired boiler, no natural gas burnt"
    assert en.loc["shift", "why"] == "no load above the base load in peak hours"
    assert zh.loc["shift", "why"] == "峰段无基荷以上的负荷"
    assert en.loc["bess", "why"].startswith("Negative NPV and no abatement")    # valued, not worth it
    assert av.reason_text("something new", "zh_CN") == "something new"          # unknown reasons as they are


def test_the_numbers_behind_a_measure():
    en = av.advice_table(ADVICE, "en").set_index("id")
    assert en.loc["pv", "why"] == ("1,750 kWp · free roof 13,063 m² · used on site 2,251 MWh/a · "
                                   "price 0.384 CNY/kWh")
    assert en.loc["green", "why"] == "bought 274,267 MWh/a"
    assert "电机用电 111,473 MWh/年" in av.advice_table(ADVICE, "zh_CN").set_index("id").loc["motor", "why"]


def test_html_and_note():
    html = av.advice_html(av.advice_table(ADVICE, "zh_CN"), "zh_CN")
    assert html.count("<tr") == 1 + 6 and html.count('class="off') == 3 and html.count("first-off") == 1
    assert "净现值（万元）" in html and "3,508.9" in html and "1,114.7" in html and "29,429" in html
    assert ">–<" in html                                        # a measure without figures
    assert 'title="数据来源:\ncapex_cny_per_kwp: assumption: 3.0 CNY/W"' in html
    assert re.search(r'<tr class="off first-off" data-id="boiler">', html)
    note = av.advice_note(ADVICE, "zh_CN")
    assert "2026-09-01 至 2026-11-30" in note and "91.0 天" in note and "yunnan_agent_purchase_2026" in note
    assert "峰 0.61 / 平 0.46 / 谷 0.31" in note and "折现率 6%" in note and "data/advice/measures.yaml" in note
    note = av.advice_note(ADVICE | {"period_kind": "month_so_far", "start": ts("2026-12-01"),
                                    "end": ts("2026-12-04 14:00"), "days": 3.58}, "en")
    assert "2026-12-01 to 2026-12-04 14:00 (the month so far, 3.6 days" in note


def test_every_message_the_view_maps_exists():
    keys = set(av.CONDITIONS.values()) | set(av.REASONS.values()) | {k for _, k, _ in av.BASIS} | \
        {k for _, k in av.SHOWN} | {f"advice_period_{k}" for k in ("months", "month_so_far", "recent")}
    assert sorted(keys - set(catalogue())) == []
