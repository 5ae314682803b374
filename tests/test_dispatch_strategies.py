"""Tariffs, the rule fallback, the peak guard's arithmetic, the backtest's bills and the CLI's JSON, each checked
against numbers worked by hand here."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
from conftest import REPO

from anning_lib.dispatch.backtest import run_backtest
from anning_lib.dispatch.case import parse_case
from anning_lib.dispatch.guard import guard_setpoints
from anning_lib.dispatch.rule import rule_schedule
from anning_lib.dispatch.sites import sites_from_park
from anning_lib.dispatch.tariff import prices, tariff_for
from anning_lib.errors import CaseFileError
from anning_lib.park import load_park

PARK = load_park()


def band_by_hand(hour: int) -> str:
    """云发改价格〔2026〕51号 (../shared/REFERENCE.md): peak 07-09, 18-24; valley 02-06, 12-16; flat otherwise."""
    if 7 <= hour < 9 or 18 <= hour < 24:
        return "peak"
    if 2 <= hour < 6 or 12 <= hour < 16:
        return "valley"
    return "flat"


def test_agent_purchase_prices_by_hand():
    # energy 0.30 CNY/kWh floating x1.5 / x1.0 / x0.5, plus 0.16 non-floating: 0.61 / 0.46 / 0.31
    tariff, bands, mult = tariff_for("E03", REPO / "data")
    idx = pd.date_range("2026-07-01", periods=24, freq="1h", tz="Asia/Shanghai")
    p = prices(tariff, bands, mult, idx)
    expected = [{"peak": 0.61, "flat": 0.46, "valley": 0.31}[band_by_hand(h)] for h in range(24)]
    assert p["import_price_cny_per_kwh"].to_numpy() == pytest.approx(expected)
    assert list(p["band"]) == [band_by_hand(h) for h in range(24)]


def test_enterprise_on_a_market_contract_pays_its_contract():
    # E01 trades directly (data/tariffs/assignments.yaml): 0.28 x 1.3 + 0.16 = 0.524 in the peak band
    tariff, bands, mult = tariff_for("E01", REPO / "data")
    p = prices(tariff, bands, mult, pd.DatetimeIndex([pd.Timestamp("2026-07-01 19:00", tz="Asia/Shanghai")]))
    assert tariff.id == "yunnan_market_contract_example"
    assert p["import_price_cny_per_kwh"].iloc[0] == pytest.approx(0.524)


def test_rule_charges_low_and_discharges_high_by_hand():
    # prices 0.3, 0.3, 0.6, 0.6 (low <= 0.375, high >= 0.525); 100 kWh / 50 kW lossless at half charge.
    # h0: charge 50 kW -> 100 kWh (full); h1: full, idle; h2, h3: discharge 50 kW -> 50, 0 kWh.
    # imports 150, 100, 50, 50: cost 0.3 * 250 + 0.6 * 100 = 135; baseline 0.3 * 200 + 0.6 * 200 = 180
    case = parse_case({"timestep_minutes": 60, "start": "2026-07-01T00:00:00+08:00", "load_kw": [100.0] * 4,
                       "tariff": {"import_price_cny_per_kwh": [0.3, 0.3, 0.6, 0.6]},
                       "storage": [{"id": "b", "energy_kwh": 100, "power_kw": 50, "eta_charge": 1.0,
                                    "eta_discharge": 1.0, "soc_min_frac": 0.0, "soc_max_frac": 1.0,
                                    "soc_initial_frac": 0.5, "soc_final_frac": None}]})
    s = rule_schedule(case)
    assert s.frame["grid_import_kw"].to_numpy() == pytest.approx([150, 100, 50, 50])
    assert s.cost_cny["total"] == pytest.approx(135.0)
    assert s.baseline_cost_cny["total"] == pytest.approx(180.0)


def test_rule_discharges_to_keep_the_import_limit():
    # a flat price (no low or high steps) and 130 kW of load behind a 100 kW limit: discharge 30 kW
    case = parse_case({"timestep_minutes": 60, "start": "2026-07-01T00:00:00+08:00", "load_kw": [130.0],
                       "tariff": {"import_price_cny_per_kwh": 0.5}, "grid": {"import_limit_kw": 100.0},
                       "storage": [{"id": "b", "energy_kwh": 100, "power_kw": 50, "soc_final_frac": None}]})
    assert rule_schedule(case).frame["b.discharge_kw"].iloc[0] == pytest.approx(30.0)


def test_guard_arithmetic_by_hand():
    ses, e10 = PARK.device("SES"), PARK.device("E10-BESS")
    # the meter reads 203,000 kW against a 200,000 kW threshold while SES charges 10 MW (193,000 kW without it):
    # SES charges 3,000 kW less, 7 MW
    out = guard_setpoints({"SES": -10_000.0}, 193_000.0, 200_000.0, [ses], {"SES": 0.5}, 0.25)
    assert out["SES"] == pytest.approx(-7_000.0)
    # E10 nearly empty: from 0.12 it can give (0.12 - 0.10) * 8,000 * 0.95 / 0.25 = 608 kW; SES takes the rest
    out = guard_setpoints({"E10-BESS": 0.0, "SES": 0.0}, 1_000.0, 0.0, [e10, ses], {"E10-BESS": 0.12, "SES": 0.5},
                          0.25)
    assert out["E10-BESS"] == pytest.approx(608.0)
    assert out["SES"] == pytest.approx(392.0)
    # below the threshold: the plan stands
    assert guard_setpoints({"SES": -5.0}, 10.0, 100.0, [ses], {"SES": 0.5}, 0.25) == {"SES": -5.0}


def test_backtest_bills_by_hand_and_orders_the_strategies():
    # E10's site (4 MW / 8 MWh, agent-purchase tariff) on a load that repeats every day: 3 MW at night, 6 MW by day
    site = next(s for s in sites_from_park(PARK, REPO / "data") if s.connection == "E10")
    idx = pd.date_range("2026-06-10", "2026-07-01", freq="15min", tz="Asia/Shanghai", inclusive="left")
    gross = pd.Series(np.where((idx.hour >= 8) & (idx.hour < 20), 6_000.0, 3_000.0), index=idx)
    pv = gross * 0.0
    r = run_backtest(site, gross, pv, pd.Timestamp("2026-06-25", tz="Asia/Shanghai"))
    # baseline bill of 25-30 June (6 days), by hand: per day 12 h at 3 MW and 12 h at 6 MW, priced by band;
    # demand charge 38 CNY/kW on the 6,000 kW peak
    per_day = sum((6_000.0 if 8 <= h < 20 else 3_000.0) * {"peak": 0.61, "flat": 0.46, "valley": 0.31}[
        band_by_hand(h)] for h in range(24))
    assert r.monthly[("baseline", "energy")].iloc[0] == pytest.approx(6 * per_day)
    assert r.monthly[("baseline", "demand")].iloc[0] == pytest.approx(38.0 * 6_000.0)
    s = r.savings()
    assert 0 < s["mpc"] <= s["perfect"] * 1.001 and 0 < s["rule"] <= s["perfect"]
    # the load repeats exactly, so the forecasts are right; what the MPC misses is what a one-day horizon with a
    # terminal SOC cannot see of the six-day peak (it shaves the day's peak to about 5.7 MW, the month LP to 5.5)
    assert r.capture_ratio > 0.7
    assert r.n_fallbacks == 0


def test_optimize_cli_prints_only_json(tmp_path):
    case = {"timestep_minutes": 60, "start": "2026-07-01T00:00:00+08:00", "load_kw": [100, 100, 100],
            "tariff": {"import_price_cny_per_kwh": [0.2, 0.5, 1.0]},
            "storage": [{"id": "b", "energy_kwh": 100, "power_kw": 50, "eta_charge": 0.9, "eta_discharge": 0.9,
                         "soc_min_frac": 0, "soc_max_frac": 1, "soc_initial_frac": 0, "soc_final_frac": 0}]}
    path = tmp_path / "case.json"
    path.write_text(json.dumps(case), encoding="utf-8")
    run = subprocess.run([sys.executable, "-m", "anning_lib.cli.main", "dispatch", "optimize", "--case", str(path),
                          "--json"], capture_output=True, text=True, check=True)
    out = json.loads(run.stdout)         # the HiGHS banner went to standard error
    assert out["total_cost_cny"] == pytest.approx(135.86, abs=0.01)      # worked in test_dispatch_optimize
    assert out["baseline_cost_cny"] == pytest.approx(170.0)
    assert [s["storage"]["b"]["discharge_kw"] for s in out["schedule"]] == pytest.approx([0, 0, 50], abs=1e-3)
    case["load_kw"] = [500, 100, 100]
    case["grid"] = {"import_limit_kw": 300}
    path.write_text(json.dumps(case), encoding="utf-8")
    run = subprocess.run([sys.executable, "-m", "anning_lib.cli.main", "dispatch", "optimize", "--case", str(path),
                          "--json"], capture_output=True, text=True)
    assert run.returncode == 1 and json.loads(run.stdout)["status"] == "infeasible"
    case["storage"][0]["energy_kwh"] = -1
    path.write_text(json.dumps(case), encoding="utf-8")
    run = subprocess.run([sys.executable, "-m", "anning_lib.cli.main", "dispatch", "optimize", "--case", str(path)],
                         capture_output=True, text=True)
    assert run.returncode == 2 and "storage[0].energy_kwh" in run.stderr


def test_case_errors_name_every_field():
    with pytest.raises(CaseFileError) as err:
        parse_case({"timestep_minutes": -15, "start": "2026-07-01T00:00:00+08:00", "load_kw": [1.0],
                    "tariff": {"import_price_cny_per_kwh": 0.5, "demand_charge_cny_per_kw": -1}})
    paths = [p for p, _v, _m in err.value.problems]
    assert "timestep_minutes" in paths and "tariff.demand_charge_cny_per_kw" in paths
