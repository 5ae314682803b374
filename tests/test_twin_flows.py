"""The energy-flow graph and its Sankey (anning_lib.twin.flows, anning_lib.twin.sankey).

Expected values are worked out by hand in the comments (energy = mean power [kW] x 0.25 h per quarter-hour), with
reference numbers read from the cited files or written from their standard, never from a run of the code.
"""

from __future__ import annotations

import csv
import datetime as dt

import numpy as np
import pandas as pd
import pytest
import yaml
from conftest import REPO

from anning_lib.auth.access import SYSTEM, Actor
from anning_lib.errors import AccessError, AnningError, StoreError
from anning_lib.i18n import catalogue as messages
from anning_lib.i18n import t
from anning_lib.park import load_park
from anning_lib.reports.balance import balance_points, electricity_balance
from anning_lib.twin.colours import load_colours
from anning_lib.twin.flows import (
    EDGE_COLUMNS,
    INTERVAL_COLUMNS,
    LINK_COLUMNS,
    LIVE_COLUMNS,
    NODE_COLUMNS,
    balance,
    edges,
    flow_tags,
    interval_flows,
    live_flows,
    nodes,
)
from anning_lib.twin.period import period_sankey, read_period
from anning_lib.twin.sankey import plot_frames, sankey_plot

TZ = "Asia/Shanghai"
START = pd.Timestamp("2026-10-01 00:00", tz=TZ)
HOUR = START + pd.Timedelta("1h")
# Natural gas NCV, GB/T 32150-2015 Appendix B Table B.1: 389.31 GJ/10^4 Nm3 = 38.931 MJ/Nm3; 1 kWh = 3.6 MJ (GB 3100).
NCV_GAS_MJ_PER_NM3 = 38.931
# Steam net heat, IAPWS-IF97: 1.0 MPa saturated steam 2,777 kJ/kg minus 20 degC feedwater 84 kJ/kg = 2.69 GJ/t
# (rounded as data/carriers.yaml states it).
STEAM_MJ_PER_T = 2690.0


@pytest.fixture(scope="module")
def park():
    return load_park()


def _links(df: pd.DataFrame, value: str) -> dict[tuple[str, str], float]:
    return {(s, d): v for s, d, v in df[["src", "dst", value]].itertuples(index=False)}


def _grid_factor_t_per_mwh() -> float:
    """The newest Yunnan location-based factor of the default factor-set version, read from grid.csv."""
    folder = REPO / "data" / "emission_factors"
    version = yaml.safe_load((folder / "manifest.yaml").read_text(encoding="utf-8"))["version"]
    with open(folder / "grid.csv", encoding="utf-8", newline="") as fh:
        rows = [r for r in csv.DictReader(fh) if (r["region"], r["basis"], r["version"]) == ("yunnan", "location",
                                                                                            version)]
    return float(max(rows, key=lambda r: int(r["data_year"]))["value"])       # 2022: 0.1073 tCO2/MWh


def _gas_row() -> dict:
    with open(REPO / "data" / "emission_factors" / "fuels.csv", encoding="utf-8", newline="") as fh:
        return next(r for r in csv.DictReader(fh) if r["key"] == "natural_gas")


# ------------------------------------------------------------------------------------------------ the graph
def test_the_graph_of_the_real_park_counted_from_the_yaml(park):
    """Counts read from data/park/anning.yaml with yaml, independently of the park loader."""
    raw = yaml.safe_load((REPO / "data" / "park" / "anning.yaml").read_text(encoding="utf-8"))
    park_types = [d["type"] for d in raw["park_devices"]]
    ents = raw["enterprises"]
    ent_devs = [d for e in ents for d in e["devices"]]
    n_main = sum(d["type"] == "main_meter" for d in ent_devs)
    n_pv, n_bess = sum(d["type"] == "pv" for d in ent_devs), sum(d["type"] == "bess" for d in ent_devs)
    n_boiler = sum(d["type"] == "boiler" for d in ent_devs)
    gas_ents = sum(any(d["type"] != "boiler" and any(p["id"] == "gas_nm3_h" for p in d["points"])
                       for d in e["devices"]) for e in ents)
    expected = {
        "grid": park_types.count("grid_meter"),                                        # 1
        "park pv and storage": park_types.count("pv") + park_types.count("bess"),     # PARK-PV, SES
        "main meters": n_main,                                                          # 13, one per enterprise
        "enterprise pv and storage": n_pv + n_bess,
        "boilers (fuel in, steam out, loss)": 3 * n_boiler,
        "process-line gas (one per enterprise)": gas_ents,
        "substation loss": 1,
    }
    e = edges(park)
    assert list(e.columns) == EDGE_COLUMNS and not e.duplicated().any()
    kinds = nodes(park).set_index("node")["kind"]
    ks, kd = e["src"].map(kinds), e["dst"].map(kinds)
    got = {
        "grid": int(((e["src"] == "GRID") & (e["dst"] == "SUBSTATION")).sum()),
        "park pv and storage": int((ks.isin(["pv", "bess"]) & (e["dst"] == "SUBSTATION")).sum()),
        "main meters": int(((e["src"] == "SUBSTATION") & (kd == "enterprise")).sum()),
        "enterprise pv and storage": int((ks.isin(["pv", "bess"]) & (kd == "enterprise")).sum()),
        "boilers (fuel in, steam out, loss)": int(((kd == "boiler") | (ks == "boiler")).sum()),
        "process-line gas (one per enterprise)": int(((e["src"] == "GAS") & (kd == "enterprise")).sum()),
        "substation loss": int(((e["src"] == "SUBSTATION") & (e["dst"] == "LOSSES")).sum()),
    }
    assert got == expected and len(e) == sum(expected.values())
    assert n_main == len(ents) == 13
    n = nodes(park)
    assert list(n.columns) == NODE_COLUMNS and n["node"].is_unique
    assert set(n["kind"]) == {"grid", "substation", "pv", "bess", "enterprise", "gas_supply", "boiler", "losses"}
    assert len(n) == 3 + park_types.count("pv") + park_types.count("bess") + len(ents) + n_pv + n_bess + n_boiler + 1
    assert set(e["src"]) | set(e["dst"]) == set(n["node"])        # every node has an edge, every edge its nodes


# ------------------------------------------------------------------------------------------------ live flows
LIVE = {"GRID.p_kw": 1000.0, "PARK-PV.p_kw": 300.0, "SES.p_kw": -200.0, "E01-MM.p_kw": 1050.0,
        "E01-PV.p_kw": 50.0}


def test_live_flows_by_hand(park):
    """GRID imports 1000 -> GRID->SUBSTATION 1000; the park PV 300 -> PARK-PV->SUBSTATION 300; SES -200 charges ->
    SUBSTATION->SES 200; E01's main meter imports 1050 -> SUBSTATION->E01 1050; its PV 50 -> E01-PV->E01 50.
    Substation: in 1000 + 300 = 1300, out 200 + 1050 = 1250, net 50 = grid + park PV + SES - mains
    = 1000 + 300 - 200 - 1050 (the balance module's residual). E01 uses 1050 + 50 = 1100. No other edge: their
    points are missing (absent, not zero)."""
    f = live_flows(park, LIVE)
    assert list(f.columns) == LIVE_COLUMNS and (f["p_kw"] >= 0).all()
    assert _links(f, "p_kw") == {("GRID", "SUBSTATION"): 1000.0, ("PARK-PV", "SUBSTATION"): 300.0,
                                 ("SUBSTATION", "SES"): 200.0, ("SUBSTATION", "E01"): 1050.0,
                                 ("E01-PV", "E01"): 50.0}
    assert set(f["carrier"]) == {"electricity"}
    b = balance(f, park).set_index("node")
    assert list(b.columns) == ["kind", "in_kw", "out_kw", "net_kw"]
    assert (b.loc["SUBSTATION", "in_kw"], b.loc["SUBSTATION", "out_kw"], b.loc["SUBSTATION", "net_kw"]) == (
        1300.0, 1250.0, 50.0)
    assert b.loc["E01", "net_kw"] == 1100.0 and b.loc["GRID", "net_kw"] == -1000.0


def test_reversed_signs_reverse_the_directions(park):
    """Export 1000 -> SUBSTATION->GRID; SES +200 discharges -> SES->SUBSTATION; E01 feeds in 1050 ->
    E01->SUBSTATION; a zero reading stays an edge (forward, 0); NaN is no reading (absent)."""
    f = live_flows(park, {**LIVE, "GRID.p_kw": -1000.0, "SES.p_kw": 200.0, "E01-MM.p_kw": -1050.0,
                          "E02-MM.p_kw": 0.0, "E03-MM.p_kw": float("nan")})
    assert _links(f, "p_kw") == {("SUBSTATION", "GRID"): 1000.0, ("PARK-PV", "SUBSTATION"): 300.0,
                                 ("SES", "SUBSTATION"): 200.0, ("E01", "SUBSTATION"): 1050.0,
                                 ("E01-PV", "E01"): 50.0, ("SUBSTATION", "E02"): 0.0}


def test_gas_and_steam_in_kw_thermal(park):
    """E04-B1 burns 1,000 Nm3/h: 1000 x 38.931 MJ/Nm3 / 3.6 MJ/kWh = 10,814.17 kW into the boiler; it raises
    10 t/h of steam: 10 x 2,690 MJ/t / 3.6 = 7,472.22 kW to E04; E01's rolling mill fires 500 Nm3/h:
    500 x 38.931 / 3.6 = 5,407.08 kW. E04-B2 has gas but no steam reading: its steam edge is absent."""
    f = live_flows(park, {"E04-B1.gas_nm3_h": 1000.0, "E04-B1.steam_t_h": 10.0, "E01-RM.gas_nm3_h": 500.0,
                          "E04-B2.gas_nm3_h": 0.0})
    got = {(s, d, c): v for s, d, c, v in f.itertuples(index=False)}
    assert got == pytest.approx({("GAS", "E04-B1", "natural_gas"): 1000 * NCV_GAS_MJ_PER_NM3 / 3.6,
                                 ("E04-B1", "E04", "steam"): 10 * STEAM_MJ_PER_T / 3.6,
                                 ("GAS", "E01", "natural_gas"): 500 * NCV_GAS_MJ_PER_NM3 / 3.6,
                                 ("GAS", "E04-B2", "natural_gas"): 0.0}, rel=1e-12)
    assert got[("GAS", "E04-B1", "natural_gas")] == pytest.approx(10814.1667, abs=1e-4)


# ------------------------------------------------------------------------------------------------ a period
def _means(park, rows: dict[str, list[float]], n: int = 4) -> pd.DataFrame:
    """n quarter-hours from START: every electricity-balance point 0 unless given (a complete balance)."""
    cols = {tag: [0.0] * n for tag in balance_points(park)["tag"]} | rows
    return pd.DataFrame(cols, index=pd.date_range(START, periods=n, freq="15min", name="ts"), dtype="float64")


@pytest.fixture
def hour(park) -> pd.DataFrame:
    """Four quarter-hours [kW]; every other main meter, PV and storage reads 0.

    q0: grid 1000 in, park PV 300, SES -200 (charging), E01-MM 1050, E01-PV 50     residual 1000+300-200-1050 = 50
    q1: grid -100 (export), park PV 400, SES +100 (discharging), E01-MM 380, E01-PV 60  residual -100+400+100-380 = 20
    q2: E02-MM has no value: the electricity balance is incomplete, so no electricity edge counts
    q3: all 0
    E04-B1: 1000 Nm3/h of gas and 10 t/h of steam in q0..q2 (its own pair is complete there); E04-B2: gas only.
    """
    nan = np.nan
    return _means(park, {"GRID.p_kw": [1000, -100, 0, 0], "PARK-PV.p_kw": [300, 400, 0, 0],
                         "SES.p_kw": [-200, 100, 0, 0], "E01-MM.p_kw": [1050, 380, 0, 0],
                         "E01-PV.p_kw": [50, 60, 0, 0], "E02-MM.p_kw": [0, 0, nan, 0],
                         "E04-B1.gas_nm3_h": [1000, 1000, 1000, nan], "E04-B1.steam_t_h": [10, 10, 10, nan],
                         "E04-B2.gas_nm3_h": [500, 500, 500, 500]})


def test_interval_flows_and_node_balance_per_quarter(park, hour):
    flows = interval_flows(hour, park, START, HOUR)
    assert list(flows.columns) == INTERVAL_COLUMNS and (flows["e_kwh"] >= 0).all()
    q = [START + pd.Timedelta(minutes=15 * i) for i in range(4)]
    grid = flows[(flows["src"] == "GRID") | (flows["dst"] == "GRID")].set_index("ts")
    assert list(grid.index) == [q[0], q[1], q[3]]                      # q2 incomplete: absent
    assert (grid.loc[q[0], "e_kwh"], grid.loc[q[1], "dst"], grid.loc[q[1], "e_kwh"]) == (250.0, "GRID", 25.0)
    assert not ((flows["ts"] == q[2]) & (flows["carrier"] == "electricity")).any()
    assert not (flows["src"].eq("E04-B2") | flows["dst"].eq("E04-B2")).any()     # no steam point value: no pair
    net = balance(flows).set_index(["ts", "node"])["net_e_kwh"]
    # substation residual per quarter: 50 x 0.25 = 12.5 kWh and 20 x 0.25 = 5 kWh, as the balance module's
    assert net[(q[0], "SUBSTATION")] == 12.5 and net[(q[1], "SUBSTATION")] == 5.0
    per_q = electricity_balance(hour, balance_points(park), START, HOUR, freq="15min")["residual_e_kwh"]
    assert [net[(t, "SUBSTATION")] for t in (q[0], q[1])] == list(per_q.iloc[:2])


def test_period_sankey_by_hand(park, hour):
    """Hour totals: grid import 1000 x 0.25 = 250 kWh, export 100 x 0.25 = 25; park PV (300 + 400) x 0.25 = 175;
    SES charge 50, discharge 25; E01 imports (1050 + 380) x 0.25 = 357.5 with its PV (50 + 60) x 0.25 = 27.5;
    substation residual (50 + 20) x 0.25 = 17.5 kWh. E04-B1 over 0.75 h: gas 750 Nm3 x 38.931 / 3.6 = 8,110.625
    kWh, steam 7.5 t x 2,690 / 3.6 = 5,604.1667 kWh, loss 2,506.4583 kWh."""
    sk = period_sankey(hour, park, START, HOUR)
    links = {(s, d, c): v for s, d, c, v in sk.energy.itertuples(index=False)}
    assert list(sk.energy.columns) == LINK_COLUMNS
    eb = electricity_balance(hour, balance_points(park), START, HOUR, freq=None).iloc[0]
    assert links[("GRID", "SUBSTATION", "electricity")] == eb["grid_import_e_kwh"] == 250.0
    assert links[("SUBSTATION", "GRID", "electricity")] == eb["grid_export_e_kwh"] == 25.0
    expected = {("PARK-PV", "SUBSTATION", "electricity"): 175.0, ("SUBSTATION", "SES", "electricity"): 50.0,
                ("SES", "SUBSTATION", "electricity"): 25.0, ("SUBSTATION", "E01", "electricity"): 357.5,
                ("E01-PV", "E01", "electricity"): 27.5, ("SUBSTATION", "LOSSES", "electricity"): 17.5,
                ("GAS", "E04-B1", "natural_gas"): 750 * NCV_GAS_MJ_PER_NM3 / 3.6,
                ("E04-B1", "E04", "steam"): 7.5 * STEAM_MJ_PER_T / 3.6,
                ("E04-B1", "LOSSES", "heat"): (750 * NCV_GAS_MJ_PER_NM3 - 7.5 * STEAM_MJ_PER_T) / 3.6}
    for key, value in expected.items():
        assert links[key] == pytest.approx(value, rel=1e-12), key
    assert eb["residual_e_kwh"] == pytest.approx(17.5)
    # every transit node closes once the loss links are in; without them the substation keeps the residual
    net = balance(sk.energy, park).set_index("node")
    assert net.loc[net["kind"].isin(["substation", "boiler"]), "net_e_kwh"].abs().max() < 1e-9
    bare = balance(period_sankey(hour, park, START, HOUR, losses=False).energy, park).set_index("node")
    assert bare.loc["SUBSTATION", "net_e_kwh"] == pytest.approx(17.5)
    assert bare.loc["E04-B1", "net_e_kwh"] == pytest.approx(expected[("E04-B1", "LOSSES", "heat")])


def test_carbon_links_by_hand(park, hour):
    """Scope 2, location-based: E01 took 357.5 kWh = 0.3575 MWh from the park network x the Yunnan factor of
    grid.csv (0.1073 tCO2/MWh for 2022) = 0.03836 tCO2, as GRID -> E01. Scope 1: E04-B1 burnt 750 Nm3 x
    NCV 0.038931 GJ/Nm3 x 15.3 tC/TJ x 0.99 x 44/12 / 1000 = 1.6216 tCO2 (fuels.csv, GB/T 32150-2015 formula (2)),
    on GAS -> E04-B1 and passed on E04-B1 -> E04."""
    sk = period_sankey(hour, park, START, HOUR)
    co2 = _links(sk.carbon, "co2_t")
    ef = _grid_factor_t_per_mwh()
    assert ef == 0.1073
    assert co2[("GRID", "E01")] == pytest.approx(357.5 / 1000 * ef, rel=1e-12)
    g = _gas_row()
    gas_t = 750 * float(g["ncv_gj_per_unit"]) * float(g["carbon_tc_per_tj"]) * float(g["oxidation_frac"]) * 44 / 12 / 1000
    assert gas_t == pytest.approx(1.6216, abs=1e-4)
    assert co2[("GAS", "E04-B1")] == pytest.approx(gas_t, rel=1e-9) and co2[("E04-B1", "E04")] == co2[("GAS", "E04-B1")]
    assert ("GRID", "SUBSTATION") not in co2 and ("GRID", "E02") in co2 and co2[("GRID", "E02")] == 0.0
    lines = sk.carbon_lines.set_index(["src", "dst"])
    assert lines.loc[("GRID", "E01"), "scope"] == "scope2_location"
    assert "生态环境部" in lines.loc[("GRID", "E01"), "factor_source"]
    assert lines.loc[("GAS", "E04-B1"), "scope"] == "scope1" and "GB/T 32150" in lines.loc[("GAS", "E04-B1"),
                                                                                              "factor_source"]


def test_a_simulated_day_closes_and_matches_the_balance(park):
    """One simulated day of the whole park: the Sankey's grid import is the balance module's, every transit node
    closes, and each enterprise's carbon (in - out) is its fuel plus net purchased electricity x factor."""
    from anning_lib.sim import ParkSimulator

    frames = ParkSimulator(park, 20261125, REPO / "data").run(dt.date(2026, 10, 1), dt.date(2026, 10, 2), "15min")
    means = pd.concat(list(frames)).tz_convert(TZ)
    end = START + pd.Timedelta("1D")
    sk = period_sankey(means, park, START, end)
    eb = electricity_balance(means, balance_points(park), START, end, freq=None).iloc[0]
    assert eb["coverage_frac"] == 1.0
    link = _links(sk.energy, "e_kwh")
    assert link[("GRID", "SUBSTATION")] == pytest.approx(eb["grid_import_e_kwh"], rel=1e-12)
    assert link[("SUBSTATION", "LOSSES")] == pytest.approx(eb["residual_e_kwh"], rel=1e-9)
    net = balance(sk.energy, park)
    transit = net[net["kind"].isin(["substation", "boiler"])]
    assert len(transit) == 1 + sum(d.type == "boiler" for _e, d in park.iter_devices())
    assert transit["net_e_kwh"].abs().max() < 1e-6 * transit["in_e_kwh"].max()
    ef, g = _grid_factor_t_per_mwh(), _gas_row()
    gas_t_per_nm3 = float(g["ncv_gj_per_unit"]) * float(g["carbon_tc_per_tj"]) * float(g["oxidation_frac"]) * 44 / 12e3
    c = balance(sk.carbon.rename(columns={"co2_t": "e_kwh"})).set_index("node")["net_e_kwh"]
    for e in park.enterprises:
        main = [f"{d.id}.p_kw" for d in e.devices if d.type == "main_meter"]
        gas = [f"{d.id}.gas_nm3_h" for d in e.devices if any(p.id == "gas_nm3_h" for p in d.points)]
        want = means[main].sum().sum() * 0.25 / 1000 * ef + means[gas].sum().sum() * 0.25 * gas_t_per_nm3
        assert c[e.id] == pytest.approx(want, rel=1e-9), e.id
    assert sankey_plot(sk.energy, park, start=START, end=end) is not None


# ------------------------------------------------------------------------------------------------ scope
@pytest.fixture
def store(engine, park):
    from anning_lib.store import init_db, refresh_rollups, write_measurements

    init_db(engine, park)
    rows = [(tag, START + pd.Timedelta(minutes=m), v, 0) for tag, v in
            (("E01-MM.p_kw", 800.0), ("E01-PV.p_kw", 40.0), ("E02-MM.p_kw", 600.0)) for m in (0, 5, 10)]
    write_measurements(engine, pd.DataFrame(rows, columns=["tag", "ts", "value", "quality"]))
    refresh_rollups(engine, START, HOUR)
    return engine


def test_read_period_is_scoped_to_the_actor(store, park):
    """E01's user reads its own flows (main meter 800 kW and PV 40 kW for one quarter-hour: 200 and 10 kWh), not
    E02's and not the park's (park-level points); a visitor nothing; the system reads the whole park."""
    ent1, visitor = Actor(3, "enterprise", "E01", "ent1"), Actor(4, "visitor", username="guest")
    own = read_period(store, park, ent1, START, HOUR, enterprise_id="E01")
    assert _links(own.energy, "e_kwh") == {("SUBSTATION", "E01"): 200.0, ("E01-PV", "E01"): 10.0}
    assert own.electricity is None and set(own.carbon["dst"]) == {"E01"}
    with pytest.raises(AccessError, match="ent1.*E02"):
        read_period(store, park, ent1, START, HOUR, enterprise_id="E02")
    with pytest.raises(AccessError, match="ent1"):
        read_period(store, park, ent1, START, HOUR)
    with pytest.raises(AccessError, match="guest"):
        read_period(store, park, visitor, START, HOUR, enterprise_id="E01")
    with pytest.raises(StoreError, match="E99"):
        read_period(store, park, SYSTEM, START, HOUR, enterprise_id="E99")
    whole = read_period(store, park, SYSTEM, START, HOUR)             # the park balance is incomplete: no electricity
    assert not (whole.energy["carrier"] == "electricity").any()
    assert set(flow_tags(park, "E01")) < set(flow_tags(park))


# ------------------------------------------------------------------------------------------------ the plot
def test_sankey_labels_colours_and_cycles(park, hour):
    import holoviews as hv

    sk = period_sankey(hour, park, START, HOUR)
    raw = yaml.safe_load((REPO / "data" / "twin" / "carrier_colours.yaml").read_text(encoding="utf-8"))
    carriers = yaml.safe_load((REPO / "data" / "carriers.yaml").read_text(encoding="utf-8"))["carriers"]
    assert set(carriers) <= set(raw["carriers"])                      # every carrier has a colour
    edges_zh, nodes_zh = plot_frames(sk.energy, park, lang="zh_CN")
    assert (edges_zh["colour"] == edges_zh["carrier"].map(raw["carriers"])).all()
    assert (edges_zh["value"] > 0).all()                               # zero links are not drawn
    # import and export, charging and discharging both happened: drawn into copies, so no cycle
    assert {("SUBSTATION", "GRID~in"), ("SUBSTATION", "SES~in"), ("SES", "SUBSTATION")} <= set(
        zip(edges_zh["src"], edges_zh["dst"]))
    assert edges_zh.loc[(edges_zh["src"] == "GRID"), "value"].iloc[0] == pytest.approx(0.25)     # 250 kWh in MWh
    label = dict(zip(nodes_zh["node"], nodes_zh["label"]))
    assert label["GRID"] == "外部电网" and label["GRID~in"] == "外部电网（上网）" and label["E01"].startswith("E01 安宁")
    _e, nodes_en = plot_frames(sk.energy, park, lang="en")
    label = dict(zip(nodes_en["node"], nodes_en["label"]))
    assert (label["GRID"], label["SES~in"], label["E04-B1"]) == ("Grid", "SES storage (charging)", "E04-B1 boiler")
    assert label["LOSSES"] == t("flows_node_losses", "en")
    fig = hv.render(sankey_plot(sk.energy, park, lang="en", start=START, end=HOUR), backend="bokeh")
    assert fig.title.text == "Energy flows 2026-10-01 00:00 to 2026-10-01 01:00 (MWh)"
    graph = next(r for r in fig.renderers if type(r).__name__ == "GraphRenderer")
    drawn = pd.DataFrame({k: list(graph.edge_renderer.data_source.data[k]) for k in ("src", "dst", "edge_color")})
    grid_in = drawn[(drawn["src"] == "Grid") & (drawn["dst"] == "Park 110 kV substation")]
    assert list(grid_in["edge_color"]) == [raw["carriers"]["electricity"]]       # drawn with labels and colours
    assert set(drawn["edge_color"]) == {raw["carriers"][c] for c in ("electricity", "natural_gas", "steam", "heat")}
    carbon_edges, _n = plot_frames(sk.carbon, park)
    assert set(carbon_edges["colour"]) == {raw["carriers"]["electricity"], raw["carriers"]["natural_gas"]}
    hv.render(sankey_plot(sk.carbon, park), backend="bokeh")
    cyclic = pd.DataFrame([("E01", "E02", "electricity", 1.0), ("E02", "E01", "electricity", 1.0)],
                          columns=LINK_COLUMNS)
    with pytest.raises(AnningError, match="cycle"):
        plot_frames(cyclic, park)
    nothing = sankey_plot(cyclic.iloc[:0], park, lang="en")               # an empty period: a note, no error
    assert isinstance(nothing, hv.Text) and nothing.text == "No flows to draw in this period"
    hv.render(nothing, backend="bokeh")


def test_every_message_key_the_sankey_builds_exists(park):
    keys = set(messages())
    kinds = set(nodes(park)["kind"]) | {"coal_supply"}
    assert {f"flows_node_{k}" for k in kinds - {"enterprise", "pv", "bess", "boiler"}} <= keys
    assert {"flows_kind_pv", "flows_kind_bess", "flows_kind_boiler", "flows_in_grid", "flows_in_bess",
            "flows_in_other", "flows_out_enterprise", "flows_out_losses", "flows_node_fuel_supply"} <= keys
    assert load_colours()["fallback"].startswith("#")
