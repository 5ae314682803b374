"""The advice engine on hand-checkable enterprises (issue 11's acceptance): a flat load has nothing to shift; a
large peak-hour purchase without storage gets a battery and a shifting measure valued by hand from the tariff."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import yaml
from conftest import REPO, tiny_park_dict

from anning_lib.advice.engine import advise, macc
from anning_lib.park import parse_park
from anning_lib.store import init_db, make_engine, refresh_rollups, write_measurements

TZ = "Asia/Shanghai"
START, DAYS = pd.Timestamp("2026-03-02", tz=TZ), 7
END = START + pd.Timedelta(days=DAYS)


def tariff_price(band: str) -> float:
    """The agent-purchase tariff's import price in a band, from its files: flat energy x multiplier + non-floating."""
    t = yaml.safe_load((REPO / "data" / "tariffs" / "yunnan_agent_purchase_2026.yaml").read_text(encoding="utf-8"))
    b = yaml.safe_load((REPO / "data" / "tariffs" / t["bands_file"]).read_text(encoding="utf-8"))
    mult = t.get("multiplier") or b["multiplier"]
    return t["energy_price_flat_cny_per_kwh"] * mult[band] + t["non_floating_cny_per_kwh"]


def catalogue(measure: str) -> dict:
    raw = yaml.safe_load((REPO / "data" / "advice" / "measures.yaml").read_text(encoding="utf-8"))
    m = next(x for x in raw["measures"] if x["id"] == measure)
    out = {"lifetime_a": m["lifetime_a"]["value"]}
    for block in ("capex", "opex", "params"):
        out |= {k: v["value"] for k, v in (m.get(block) or {}).items()}
    return out


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    """E01 draws a flat 1,000 kW; E02 500 kW plus 3,000 kW every evening 18:00-24:00 (peak hours in Yunnan)."""
    park = parse_park(tiny_park_dict(), data_dir=REPO / "data")
    engine = make_engine(f"sqlite:///{tmp_path_factory.mktemp('advice') / 'store.sqlite'}")
    init_db(engine, park)
    q = pd.date_range(START, END, freq="15min", inclusive="left")
    e02 = np.where(q.hour >= 18, 3500.0, 500.0)
    frames = [pd.DataFrame({"ts": q, "tag": tag, "value": v})
              for tag, v in (("E01-M0.p_kw", np.full(len(q), 1000.0)), ("E02-M0.p_kw", e02))]
    write_measurements(engine, pd.concat(frames, ignore_index=True))
    refresh_rollups(engine, START, END)
    yield engine, park
    engine.dispose()


def by_id(advice: dict) -> dict:
    return {it["id"]: it for it in advice["measures"]}


def test_a_flat_load_has_nothing_to_shift(store):
    engine, park = store
    a = by_id(advise(engine, park, "E01", START, END))
    shift = a["load_shifting"]
    assert shift["annual_net_cny"] == 0.0 and not shift["recommended"]
    assert "flexible_load" in shift["reason"]                     # no load above the base in peak hours


def test_peak_hour_buyer_without_storage_gets_a_battery_valued_by_hand(store):
    engine, park = store
    adv = advise(engine, park, "E02", START, END)
    a = by_id(adv)
    assert adv["days"] == pytest.approx(DAYS)
    p_peak, p_valley = tariff_price("peak"), tariff_price("valley")       # 0.61 and 0.31 CNY/kWh
    c = catalogue("battery_storage")
    # peak hours 07-09 and 18-24: 500 kW x 8 h + 3,000 kW x 6 h = 22,000 kWh bought in peak hours a day
    peak_kwh_a = 22_000 * 365
    usable = min(peak_kwh_a / c["days_a"] / c["cycles_per_day"], c["max_kwh"])
    discharged = usable * c["cycles_per_day"] * c["days_a"]
    charged = discharged / c["rte_frac"]
    capex = usable / c["dod_frac"] * c["capex_cny_per_kwh"]
    net = discharged * p_peak - charged * p_valley - capex * c["opex_frac_a"]
    bat = a["battery_storage"]
    assert bat["applies"] and bat["capex_cny"] == pytest.approx(capex, rel=1e-9)
    assert bat["annual_net_cny"] == pytest.approx(net, rel=1e-6)
    life = min(c["lifetime_a"], c["cycle_life"] / (c["cycles_per_day"] * c["days_a"]))
    r = adv["discount_rate"]
    assert bat["npv_cny"] == pytest.approx(-capex + net * (1 - (1 + r) ** -life) / r, rel=1e-6)
    assert bat["co2_t_a"] < 0                                            # its losses are bought from the grid
    # shifting: 30 % of the 3,000 kW x 6 h above the night base moved from peak to valley prices
    s = catalogue("load_shifting")
    shift = a["load_shifting"]
    assert shift["annual_net_cny"] == pytest.approx(s["shift_frac"] * 18_000 * 365 * (p_peak - p_valley), rel=1e-6)
    assert shift["recommended"] and shift["rank_npv"] is not None
    # no roof in the model, no boiler: those measures do not apply, and say why
    assert not a["rooftop_pv"]["applies"] and "roof_area_m2" in a["rooftop_pv"]["reason"]
    assert not a["boiler_electrification"]["applies"]
    # every applying measure names the sources of its catalogue values
    assert bat["sources"]["rte_frac"] and bat["sources"]["capex_cny_per_kwh"].startswith("assumption")


def test_macc_orders_measures_by_abatement_cost(store):
    engine, park = store
    advice = [advise(engine, park, e, START, END) for e in ("E01", "E02")]
    curve = macc(advice)
    assert list(curve["abatement_cost_cny_per_t"]) == sorted(curve["abatement_cost_cny_per_t"])
    assert curve["cum_co2_t_a"].iloc[-1] == pytest.approx(curve["co2_t_a"].sum())
    assert (curve["co2_t_a"] > 0).all()                                 # a battery adds CO2: not on the curve
    # green electricity abates each kWh bought by the grid factor, at its premium: cost = premium / factor
    g = curve[(curve["enterprise_id"] == "E02") & (curve["id"] == "green_electricity")].iloc[0]
    premium = catalogue("green_electricity")["premium_cny_per_kwh"]
    assert g["abatement_cost_cny_per_t"] == pytest.approx(premium / 0.0001073, rel=1e-6)
    kwh_a = (500 * 18 + 3500 * 6) * 365                                  # E02's purchase in a year
    assert g["co2_t_a"] == pytest.approx(kwh_a * 0.0001073, rel=1e-6)


def test_recommended_means_it_pays_or_abates_below_the_carbon_price():
    from anning_lib.advice.engine import rank

    def item(i, npv, mac, applies=True):
        return {"id": i, "name": i, "applies": applies, "npv_cny": npv, "abatement_cost_cny_per_t": mac, "co2_t_a": 1.0}

    items = rank([item("pays", 1e6, None), item("cheap_carbon", -1e5, 49.0), item("dear_carbon", -1e8, 1260.0),
                  item("not_here", 5e6, -10.0, applies=False)], carbon_price_cny_per_t=80.0)
    rec = {it["id"]: it["recommended"] for it in items}
    assert rec == {"pays": True, "cheap_carbon": True, "dear_carbon": False, "not_here": False}
    assert [it["id"] for it in items if it["rank_npv"]] == ["pays", "cheap_carbon"]
    curve = macc([{"enterprise_id": "E", "measures": items}])
    assert list(curve["id"]) == ["cheap_carbon", "dear_carbon"]          # the curve shows the dear one too
