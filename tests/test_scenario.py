"""Scenario simulation (anning_lib.scenario) on hand-made histories whose answers are worked out in the comments,
and on the simulator's history where the expected value follows from the grid factor.

Reference numbers written here, not read from the code:
- Yunnan grid factor 2022, location-based: 0.1073 tCO2/MWh (MEE/NBS announcement of 2024-12-20).
- Natural gas (GB/T 32150-2015 Appendix B): NCV 389.31 GJ/10^4 Nm3, carbon content 15.3 tC/TJ, oxidation 99 %:
  EF = 0.038931 GJ/Nm3 x 15.3e-3 tC/GJ x 0.99 x 44/12 = 0.0021622 tCO2/Nm3.
- Steam 2.69 GJ/t (IAPWS-IF97, 1.0 MPa saturated minus 20 degC feed water); electric boiler efficiency 0.97
  (GB 24500-2020 clause 5.2 floor); 1 GJ/h = 277.78 kW.
- Park model: the 110 kV network's loss_frac 0.008; E04's main meter loss_frac (read from the YAML below).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from anning_lib.park import load_park
from anning_lib.scenario.changes import shift_energy, water_fill
from anning_lib.scenario.engine import (
    list_runs,
    run_id,
    run_scenario,
    save_run,
    to_record,
)
from anning_lib.scenario.history import HistoryError, regular, simulated_history
from anning_lib.scenario.spec import ScenarioFileError, parse_scenario, read_scenario

REPO = Path(__file__).resolve().parent.parent
DATA = REPO / "data"
TZ = "Asia/Shanghai"
GRID_T_PER_KWH = 0.1073e-3
GAS_T_PER_NM3 = 0.038931 * 15.3e-3 * 0.99 * 44 / 12
LOSS_110KV = 0.008


@pytest.fixture(scope="module")
def park():
    return load_park()


def flat_history(park, main_kw: float = 10_000.0, days: int = 3) -> tuple[pd.DataFrame, pd.Timestamp]:
    """Every enterprise's main meter at ``main_kw``; the park PV a triangle from 06:00 to 18:00 peaking at
    10,000 kW at noon; no other PV, no storage power, E04-B1 raising 50 t/h of steam on 3,840 Nm3/h of gas.
    The first day is warm-up."""
    idx = pd.date_range(pd.Timestamp("2025-06-01", tz=TZ), periods=96 * days, freq="15min")
    cols = {f"{e.id}-MM.p_kw": np.full(len(idx), main_kw) for e in park.enterprises}
    hour = idx.hour + idx.minute / 60
    cols["PARK-PV.p_kw"] = np.clip(10_000.0 * (1 - np.abs(hour - 12) / 6), 0, None)
    cols["E04-B1.steam_t_h"] = np.full(len(idx), 50.0)
    cols["E04-B1.gas_nm3_h"] = np.full(len(idx), 3_840.0)
    return pd.DataFrame(cols, index=idx), idx[96]


def scenario(park, changes, mode="none", **history):
    return parse_scenario({"name": "test", "history": {"days": 2, **history}, "dispatch": {"mode": mode},
                           "changes": changes}, park, DATA)


# ------------------------------------------------------------------------------------------------ the file
def test_scenario_file_errors_name_field_and_value(park, tmp_path):
    with pytest.raises(ScenarioFileError, match=r"changes\[0\]\.site: unknown site 'E99'"):
        scenario(park, [{"type": "add_pv", "site": "E99", "dc_kwp": 100}])
    with pytest.raises(ScenarioFileError, match=r"changes\[1\]\.device.*'E01-MM' is not a boiler"):
        scenario(park, [{"type": "add_pv", "site": "park", "dc_kwp": 1},
                        {"type": "electrify_boiler", "device": "E01-MM"}])
    with pytest.raises(ScenarioFileError, match=r"changes\[0\]\.tariff.*no tariff file"):
        scenario(park, [{"type": "tariff", "connection": "E02", "tariff": "cheap"}])
    with pytest.raises(ScenarioFileError, match=r"dc_kwp"):
        scenario(park, [{"type": "add_pv", "site": "park", "dc_kwp": -5}])
    with pytest.raises(ScenarioFileError, match=r"replan_h: 0.3 is not a multiple of 0.25"):
        parse_scenario({"name": "x", "dispatch": {"replan_h": 0.3}}, park, DATA)
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: [unclosed\n", encoding="utf-8")
    with pytest.raises(ScenarioFileError, match="not valid YAML"):
        read_scenario(bad, park, DATA)


def test_example_scenarios_are_valid(park):
    files = sorted((DATA / "scenarios").glob("*.yaml"))
    assert len(files) >= 3
    for f in files:
        assert read_scenario(f, park, DATA).changes


# ------------------------------------------------------------------------------------------------ pure parts
def test_water_fill_by_hand():
    # 60 over rooms (10, 50, 50): the first takes its 10, the other two 25 each
    assert water_fill(np.array([10.0, 50.0, 50.0]), 60.0).tolist() == [10.0, 25.0, 25.0]
    assert water_fill(np.array([40.0, 40.0]), 30.0).tolist() == [15.0, 15.0]


def test_shift_energy_by_hand():
    # one day on the Yunnan bands: 07:00-09:00 peak (8 quarter-hours) at 100 kW, 12:00-16:00 valley (16) at 50 kW
    idx = pd.date_range(pd.Timestamp("2025-06-02", tz=TZ), periods=96, freq="15min")
    band = np.array(["flat"] * 96, dtype=object)
    band[28:36], band[48:64] = "peak", "valley"
    p = pd.Series(np.where(band == "peak", 100.0, np.where(band == "valley", 50.0, 0.0)), index=idx)
    # half the peak energy (8 x 100 kW x 0.25 h = 200 kWh -> 100 kWh) over 16 valley steps: +25 kW each
    out = shift_energy(p, band, 0.5, "peak", "valley", rated_kw=120.0)
    assert np.allclose(out[band == "valley"], 75.0) and np.allclose(out[band == "peak"], 50.0)
    assert out.sum() == pytest.approx(p.sum())
    # rated 60 kW leaves 10 kW of room per valley step: 16 x 10 x 0.25 = 40 kWh moved, peak 100 - 40/2 = 80 kW
    capped = shift_energy(p, band, 0.5, "peak", "valley", rated_kw=60.0)
    assert np.allclose(capped[band == "valley"], 60.0) and np.allclose(capped[band == "peak"], 80.0)


def test_regular_history_interpolates_an_hour_and_names_a_longer_gap():
    idx = pd.date_range(pd.Timestamp("2025-06-01", tz=TZ), periods=16, freq="15min")
    wide = pd.DataFrame({"A.p_kw": np.arange(16.0), "B.p_kw": 1.0}, index=idx)
    filled = regular(wide.drop(idx[4:8]), idx[0], idx[-1] + pd.Timedelta("15min"))
    assert filled["A.p_kw"].tolist() == list(np.arange(16.0))
    with pytest.raises(HistoryError, match=r"B.p_kw has no value at 2025-06-01 01:00 \(6 quarter-hours"):
        regular(wide.assign(**{"B.p_kw": wide["B.p_kw"].where((idx < idx[4]) | (idx >= idx[10]))}),
                idx[0], idx[-1] + pd.Timedelta("15min"))


# ------------------------------------------------------------------------------------------------ cases by hand
def test_a_scenario_that_adds_nothing_changes_nothing(park):
    wide, start = flat_history(park)
    r = to_record(run_scenario(scenario(park, []), park, wide, start, DATA))
    assert r["base"] == r["scenario_case"]
    c = r["comparison"]
    assert all(v == 0 for v in c["delta"].values()) and all(v == 0 for v in c["delta_co2_t"].values())
    assert c["capex_cny"] == 0 and c["saving_cny_a"] == 0


def test_added_pv_lowers_scope2_by_its_energy_times_the_grid_factor(park):
    wide, start = flat_history(park)
    # PARK-PV is 20,000 kWp; 20,000 kWp more doubles the triangle: +10,000 kW peak, 12 h x 10,000 / 2 = 60 MWh a
    # day, 120 MWh over the two days. The net park load stays positive (13 x 10 MW - 20 MW), so all of it is used
    # and the grid meter (net + 0.8 % losses) imports 120 MWh x 1.008 = 120.96 MWh less.
    r = to_record(run_scenario(scenario(park, [{"type": "add_pv", "site": "park", "dc_kwp": 20_000}]),
                               park, wide, start, DATA))
    d = r["comparison"]["delta"]
    assert d["pv_used_e_kwh"] == pytest.approx(120_000, rel=1e-6)
    assert d["grid_import_e_kwh"] == pytest.approx(-120_000 * (1 + LOSS_110KV), rel=1e-6)
    assert r["comparison"]["delta_co2_t"]["scope2_location"] == pytest.approx(
        -120_000 * (1 + LOSS_110KV) * GRID_T_PER_KWH, rel=1e-6)                         # -12.979 tCO2
    assert r["comparison"]["delta_co2_t"]["scope1"] == 0
    # self-sufficiency: (120 + 120) MWh of PV in the two days over 13 x 10 MW x 48 h = 6,240 MWh of consumption
    assert r["scenario_case"]["self_sufficiency_frac"] == pytest.approx(240 / 6240, abs=1e-6)
    # capex 20,000 kWp x 3,000 CNY/kWp (catalogue rooftop_pv, an assumption stated there)
    assert r["comparison"]["capex_cny"] == pytest.approx(60_000_000)


def test_electrified_boiler_swaps_gas_for_electricity(park):
    wide, start = flat_history(park)
    loss_e04 = yaml.safe_load((DATA / "park" / "anning.yaml").read_text(encoding="utf-8"))
    main = next(d for e in loss_e04["enterprises"] if e["id"] == "E04" for d in e["devices"] if d["type"] == "main_meter")
    loss = main["params"]["loss_frac"]
    r = to_record(run_scenario(scenario(park, [{"type": "electrify_boiler", "device": "E04-B1"}]),
                               park, wide, start, DATA))
    c = r["comparison"]
    # 50 t/h x 2.69 GJ/t / 0.97 = 138.66 GJ/h = 38,516 kW, through E04's network: x (1 + loss), over 48 h
    e_kwh = 50 * 2.69 / 0.97 * 1e6 / 3600 * (1 + loss) * 48
    assert c["delta"]["consumption_e_kwh"] == pytest.approx(e_kwh, rel=1e-6)
    assert c["delta"]["gas_nm3"] == pytest.approx(-3_840 * 48, rel=1e-9)
    assert c["delta_co2_t"]["scope1"] == pytest.approx(-3_840 * 48 * GAS_T_PER_NM3, rel=1e-4)
    # the grid meter carries it with the 110 kV losses (the park stays a net importer)
    assert c["delta_co2_t"]["scope2_location"] == pytest.approx(e_kwh * (1 + LOSS_110KV) * GRID_T_PER_KWH, rel=1e-6)


def test_green_certificates_lower_market_based_scope2_only(park):
    wide, start = flat_history(park)
    r = to_record(run_scenario(scenario(park, [{"type": "green_electricity", "enterprise": "E02", "share_frac": 0.5,
                                                "premium_cny_per_kwh": 0.01}]), park, wide, start, DATA))
    # E02 buys 10 MW x 48 h = 480 MWh; half is covered: 240 MWh at 0 instead of 0.1073 t/MWh
    e02 = {row["enterprise_id"]: row for row in r["enterprises"]["scenario"]}["E02"]
    assert e02["green_e_kwh"] == pytest.approx(240_000)
    assert e02["green_cny"] == pytest.approx(2_400.0)
    d = r["comparison"]["delta_co2_t"]
    assert d["scope2_location"] == 0
    assert d["scope2_market"] == pytest.approx(-240 * 0.1073, rel=1e-9)
    assert r["comparison"]["delta_cost_cny"]["green_cny"] == pytest.approx(2_400.0)


def test_tariff_change_moves_only_that_enterprises_bill(park):
    wide, start = flat_history(park)
    r = to_record(run_scenario(scenario(park, [{"type": "tariff", "connection": "E02",
                                                "tariff": "yunnan_market_contract_example"}]), park, wide, start, DATA))
    base = {row["enterprise_id"]: row for row in r["enterprises"]["base"]}
    new = {row["enterprise_id"]: row for row in r["enterprises"]["scenario"]}
    assert new["E02"]["electricity_cny"] != base["E02"]["electricity_cny"]
    assert all(new[e]["electricity_cny"] == base[e]["electricity_cny"] for e in base if e != "E02")
    assert r["comparison"]["delta_co2_t"]["total"] == 0


def test_perfect_dispatch_of_new_storage_never_raises_the_bill(park):
    wide, start = flat_history(park)
    h = wide.index.hour
    wide["E02-MM.p_kw"] = np.where(((h >= 7) & (h < 9)) | (h >= 18), 12_000.0, 10_000.0)   # 2 MW more at peak
    sc = scenario(park, [{"type": "add_storage", "site": "E02", "energy_kwh": 4_000, "p_max_kw": 2_000}], mode="perfect")
    r = to_record(run_scenario(sc, park, wide, start, DATA))
    base = {row["enterprise_id"]: row for row in r["enterprises"]["base"]}["E02"]
    new = {row["enterprise_id"]: row for row in r["enterprises"]["scenario"]}["E02"]
    # idle storage is a feasible plan, so the optimum costs at most the base bill; with 2 MW more in the peak
    # bands it shaves that peak (demand charge) and moves energy from the valley to the peak band
    assert new["electricity_cny"] < base["electricity_cny"]
    cyc = {s["storage"]: s["cycles"] for s in r["scenario_case"]["storage"]}["E02-new-bess1"]
    assert 0.5 < cyc <= 2 * 2 + 1e-6       # at most two full cycles a day (two valley bands)


# ------------------------------------------------------------------------------------------------ stored history
def test_stored_history_equals_the_simulated_one_it_was_made_from(park, tmp_path):
    from datetime import date

    from conftest import simulated_store

    from anning_lib.scenario.history import stored_history
    from anning_lib.scenario.spec import History

    engine, _ = simulated_store(tmp_path / "s.sqlite", date(2025, 6, 1), date(2025, 6, 4), rollups=True)
    h = History(source="store", start=date(2025, 6, 2), days=2, warmup_days=1)
    wide, start = stored_history(engine, park, h)
    assert start == pd.Timestamp("2025-06-02", tz=TZ) and len(wide) == 3 * 96
    # the store holds the simulator's 15-minute means (seed 20261125): the same numbers come back
    sim, _ = simulated_history(park, h.model_copy(update={"source": "simulated", "seed": 20261125}), DATA)
    assert np.allclose(wide[sim.columns].to_numpy(), sim.to_numpy(), rtol=1e-9, atol=1e-9)
    with pytest.raises(HistoryError, match="has no value at 2025-06-04 00:00"):
        stored_history(engine, park, h.model_copy(update={"days": 3}))


# ------------------------------------------------------------------------------------------------ simulated year
def test_pv_on_simulated_history_with_forecast_dispatch(park):
    sc = scenario(park, [{"type": "add_pv", "site": "park", "dc_kwp": 10_000}], mode="forecast",
                  source="simulated", start="2025-03-01", days=7, warmup_days=3)
    wide, start = simulated_history(park, sc.history, DATA)
    r = to_record(run_scenario(sc, park, wide, start, DATA))
    d = r["comparison"]["delta"]
    assert d["pv_e_kwh"] > 0 and d["consumption_e_kwh"] == 0
    # the storages are re-planned around the new PV, so scope 2 moves by the used PV energy x the grid factor
    # x the 110 kV losses within 2 % (the storages' own losses shift a little)
    expect = -d["pv_used_e_kwh"] * (1 + LOSS_110KV) * GRID_T_PER_KWH
    assert r["comparison"]["delta_co2_t"]["scope2_location"] == pytest.approx(expect, rel=0.02)


def test_runs_are_reproducible_and_saved(park, tmp_path):
    wide, start = flat_history(park)
    sc = scenario(park, [{"type": "add_pv", "site": "E05", "dc_kwp": 1_000}])
    a = to_record(run_scenario(sc, park, wide, start, DATA))
    b = to_record(run_scenario(sc, park, wide, start, DATA))
    assert json.dumps(a, sort_keys=True) == json.dumps(b, sort_keys=True)
    path = save_run(a, tmp_path, user="analyst")
    assert path.stem == run_id(a) and json.loads(path.read_text())["saved_by"] == "analyst"
    runs = list_runs(tmp_path)
    assert runs["id"].tolist() == [run_id(a)] and runs["name"].tolist() == ["test"]


def test_cli_prints_only_json_and_refuses_bad_files(tmp_path):
    good = tmp_path / "s.yaml"
    good.write_text(yaml.safe_dump({"name": "cli", "history": {"start": "2025-05-01", "days": 2, "warmup_days": 1},
                                    "dispatch": {"mode": "forecast"},
                                    "changes": [{"type": "add_pv", "site": "park", "dc_kwp": 5000}]}), encoding="utf-8")
    env = {"ANNING_VAR_DIR": str(tmp_path / "var"), "PATH": "/usr/bin:/bin"}
    cmd = [sys.executable, "-m", "anning_lib.cli.main", "scenario", "run", str(good), "--json"]
    out = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=REPO, timeout=600)
    assert out.returncode == 0, out.stderr
    rec = json.loads(out.stdout)
    assert rec["comparison"]["delta"]["pv_e_kwh"] > 0
    assert (tmp_path / "var" / "scenarios" / f"{run_id(rec)}.json").is_file()
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: x\nchanges: [{type: electrify_boiler, device: E77-B9}]\n", encoding="utf-8")
    out = subprocess.run(cmd[:5] + [str(bad)], capture_output=True, text=True, env=env, cwd=REPO, timeout=120)
    assert out.returncode == 2 and out.stdout == ""
    assert "changes[0].device: 'E77-B9' is not a boiler" in out.stderr
