"""The dispatch optimiser: optima worked by hand, every constraint checked at every step, a cross-check against
scipy's linprog on an independently written formulation, and bad case files."""

from __future__ import annotations

import json

import numpy as np
import pytest
from scipy.optimize import linprog

from anning_lib.dispatch.case import parse_case, read_case
from anning_lib.dispatch.optimize import (
    DispatchModel,
    add_storage_energy_constraints,
    optimize,
)
from anning_lib.errors import CaseFileError, InfeasibleError


def case(load, prices, storage=(), dt_min=60, **extra):
    raw = {"timestep_minutes": dt_min, "start": "2026-07-01T00:00:00+08:00", "load_kw": list(load), "pv_kw": 0.0,
           "tariff": {"import_price_cny_per_kwh": list(prices)}, "storage": list(storage)}
    for k, v in extra.items():
        if isinstance(v, dict) and isinstance(raw.get(k), dict):
            raw[k] = raw[k] | v
        else:
            raw[k] = v
    return parse_case(raw)


def bess(**kw):
    base = {"id": "b", "energy_kwh": 100.0, "power_kw": 50.0, "eta_charge": 0.9, "eta_discharge": 0.9,
            "soc_min_frac": 0.0, "soc_max_frac": 1.0, "soc_initial_frac": 0.0, "soc_final_frac": 0.0}
    return base | kw


# ------------------------------------------------------------------------------------------ worked by hand
def test_three_period_arbitrage_by_hand():
    # prices 0.2, 0.5, 1.0 CNY/kWh; load 100 kW; storage 100 kWh, 50 kW, eta 0.9 each way, empty at both ends.
    # Discharging 50 kW for the last hour needs 50 / 0.9 = 55.556 kWh stored. Hour 1 at 50 kW stores 45 kWh;
    # the other 10.556 kWh come from hour 2 (0.5 / 0.81 = 0.617 < 1.0, so it pays): 10.556 / 0.9 = 11.728 kW.
    # cost = 150 * 0.2 + 111.728 * 0.5 + 50 * 1.0 = 135.864; baseline = 100 * (0.2 + 0.5 + 1.0) = 170.
    s = optimize(case([100, 100, 100], [0.2, 0.5, 1.0], [bess()]))
    f = s.frame
    assert f["b.charge_kw"].to_numpy() == pytest.approx([50.0, 11.7284, 0.0], abs=1e-3)
    assert f["b.discharge_kw"].to_numpy() == pytest.approx([0.0, 0.0, 50.0], abs=1e-3)
    assert s.cost_cny["total"] == pytest.approx(135.864, abs=1e-3)
    assert s.baseline_cost_cny["total"] == pytest.approx(170.0)
    assert s.savings_cny == pytest.approx(34.136, abs=1e-3)
    assert f["b.soc_frac"].iloc[-1] == pytest.approx(0.0, abs=1e-6)


def test_arbitrage_that_does_not_pay_is_not_done():
    # round trip 0.81: buying at 0.5 to avoid 0.55 costs 0.5 / 0.81 = 0.617 per kWh delivered > 0.55
    s = optimize(case([100, 100], [0.5, 0.55], [bess()]))
    assert s.frame[["b.charge_kw", "b.discharge_kw"]].to_numpy() == pytest.approx(np.zeros((2, 2)), abs=1e-6)
    assert s.cost_cny["total"] == pytest.approx(100 * 0.5 + 100 * 0.55)


def test_demand_charge_lowers_the_peak_by_hand():
    # load 100 then 300 kW, flat 1 CNY/kWh, 10 CNY/kW demand charge; storage 200 kWh / 200 kW, lossless, holding
    # 50 kWh, end free. Charging c in hour 1 (50 + c <= 200 kWh) and discharging 50 + c in hour 2:
    # peak = max(100 + c, 250 - c) -> c = 75, peak 175 kW. Energy = 100 + 75 + 300 - 125 = 350 kWh.
    # cost = 350 + 10 * 175 = 2100; baseline 400 + 10 * 300 = 3400.
    st = bess(energy_kwh=200.0, power_kw=200.0, eta_charge=1.0, eta_discharge=1.0, soc_initial_frac=0.25,
              soc_final_frac=None)
    s = optimize(case([100, 300], [1.0, 1.0], [st], tariff={"demand_charge_cny_per_kw": 10.0}))
    assert s.frame["grid_import_kw"].max() == pytest.approx(175.0, abs=1e-4)
    assert s.cost_cny["demand"] == pytest.approx(1750.0, abs=1e-3)
    assert s.cost_cny["total"] == pytest.approx(2100.0, abs=1e-3)
    assert s.baseline_cost_cny["total"] == pytest.approx(3400.0)


@pytest.mark.parametrize("charge, peak", [(0.2, 300.0), (0.3, 210.497)])
def test_demand_charge_cuts_the_peak_only_when_that_pays(charge, peak):
    # eta 0.9 each way, end SOC = start SOC: discharging d in hour 2 needs c = d / 0.81 charged in hour 1, costing
    # 0.19 c = 0.2346 d kWh extra at 1 CNY/kWh against charge * d saved: pays only for a charge above 0.2346.
    # At 0.3: 100 + c = 300 - 0.81 c -> c = 110.497, peak 210.497 kW.
    st = bess(energy_kwh=1000.0, power_kw=500.0, soc_initial_frac=0.5, soc_final_frac=0.5)
    s = optimize(case([100, 300], [1.0, 1.0], [st], tariff={"demand_charge_cny_per_kw": charge}))
    assert s.frame["grid_import_kw"].max() == pytest.approx(peak, abs=1e-3)


def test_peak_so_far_is_carried():
    # the billing period's peak is already 280 kW: shaving hour 2 below it earns nothing, so a lossy storage
    # shaves exactly down to 280 and no further (cost of shaving 20 kW: 20 / 0.81 - 20 = 4.69 CNY < 10 * 20)
    st = bess(energy_kwh=1000.0, power_kw=500.0, soc_initial_frac=0.5, soc_final_frac=0.5)
    s = optimize(case([100, 300], [1.0, 1.0], [st],
                      tariff={"demand_charge_cny_per_kw": 10.0, "demand_peak_so_far_kw": 280.0}))
    assert s.frame["grid_import_kw"].iloc[1] == pytest.approx(280.0, abs=1e-3)
    assert s.cost_cny["demand"] == pytest.approx(2800.0, abs=1e-2)


def test_negative_price_would_pay_for_simultaneous_charge_and_discharge_but_the_milp_forbids_it():
    # a full storage at -0.1 CNY/kWh: the LP could burn energy by charging 100 kW while discharging 81 kW
    # (0.9 * 100 = 81 / 0.9), importing 19 kW more. With one binary per step it cannot: import stays 100 kW.
    st = bess(energy_kwh=100.0, power_kw=100.0, soc_max_frac=1.0, soc_initial_frac=1.0, soc_final_frac=None)
    s = optimize(case([100], [-0.1], [st], grid={"import_limit_kw": 500.0}))
    assert s.detail["exclusive"] == "milp"
    assert min(s.frame["b.charge_kw"].iloc[0], s.frame["b.discharge_kw"].iloc[0]) == pytest.approx(0.0, abs=1e-6)
    assert s.frame["grid_import_kw"].iloc[0] == pytest.approx(100.0, abs=1e-4)


def test_surplus_pv_is_exported_up_to_the_limit_when_export_pays():
    # PV 300 kW, load 100 kW, export limit 150 kW at 0.1 CNY/kWh, no storage: export 150, curtail 50
    c = case([100], [0.5], [], grid={"export_limit_kw": 150.0},
             tariff={"export_price_cny_per_kwh": 0.1}, pv_kw=[300.0])
    s = optimize(c)
    assert s.frame["grid_export_kw"].iloc[0] == pytest.approx(150.0)
    assert s.frame["pv_curtailed_kw"].iloc[0] == pytest.approx(50.0)
    assert s.cost_cny["total"] == pytest.approx(-15.0)
    assert s.baseline_cost_cny["total"] == pytest.approx(-15.0)


def test_carbon_shadow_price_is_charged_on_imports():
    # 100 kW for 2 h at 0.4 CNY/kWh with 100 CNY/t and 0.5 kgCO2/kWh: carbon 200 kWh * 0.0005 t * 100 = 10 CNY
    s = optimize(case([100, 100], [0.4, 0.4], [],
                      tariff={"carbon_price_cny_per_t": 100.0, "grid_factor_t_per_kwh": 0.0005}))
    assert s.cost_cny["carbon"] == pytest.approx(10.0)
    assert s.cost_cny["energy"] == pytest.approx(80.0)


# ------------------------------------------------------------------------------------------ every constraint
def realistic_case(n_storages=3):
    rng = np.random.default_rng(7)
    t = np.arange(96) / 4.0
    load = 8000 + 3000 * np.sin((t - 6) / 24 * 2 * np.pi) + rng.normal(0, 300, 96)
    pv = np.clip(6000 * np.sin((t - 7) / 12 * np.pi), 0, None)
    price = np.where((t >= 18) | ((t >= 7) & (t < 9)), 0.61, np.where(((t >= 2) & (t < 6)) | ((t >= 12) & (t < 16)),
                                                                        0.31, 0.46))
    storages = [bess(id=f"s{k}", energy_kwh=2000.0 * (k + 1), power_kw=1000.0 * (k + 1), eta_charge=0.95,
                     eta_discharge=0.95, soc_min_frac=0.1, soc_max_frac=0.95, soc_initial_frac=0.5,
                     soc_final_frac=0.5, degradation_cny_per_kwh=0.02) for k in range(n_storages)]
    return parse_case({"timestep_minutes": 15, "start": "2026-07-01T00:00:00+08:00", "load_kw": load.tolist(),
                       "pv_kw": pv.tolist(), "tariff": {"import_price_cny_per_kwh": price.tolist(),
                                                        "demand_charge_cny_per_kw": 1.2},
                       "grid": {"import_limit_kw": 12000.0, "export_limit_kw": 0.0}, "storage": storages})


def test_every_constraint_holds_at_every_step():
    c = realistic_case()
    s = optimize(c)
    f, dt = s.frame, 0.25
    load, pv = np.array(c.load_kw), np.array(c.pv_kw)
    net_storage = sum(f[f"{x.id}.charge_kw"] - f[f"{x.id}.discharge_kw"] for x in c.storage)
    balance = f["grid_import_kw"] - f["grid_export_kw"] - (load - pv + f["pv_curtailed_kw"] + net_storage)
    assert np.abs(balance).max() < 1e-3
    assert (f["grid_import_kw"] <= 12000.0 + 1e-6).all() and (f["grid_export_kw"] <= 1e-6).all()
    assert ((f["pv_curtailed_kw"] >= -1e-9) & (f["pv_curtailed_kw"] <= pv + 1e-6)).all()
    for x in c.storage:
        ch, dis, soc = f[f"{x.id}.charge_kw"], f[f"{x.id}.discharge_kw"], f[f"{x.id}.soc_frac"]
        assert (ch >= -1e-9).all() and (ch <= x.power_kw + 1e-6).all()
        assert (dis >= -1e-9).all() and (dis <= x.power_kw + 1e-6).all()
        assert (np.minimum(ch, dis) < 1e-3).all()
        # energy conservation written out again here, step by step
        e = x.soc_initial_frac * x.energy_kwh
        for i in range(c.n_steps):
            e += dt * (0.95 * ch.iloc[i] - dis.iloc[i] / 0.95)
            assert soc.iloc[i] * x.energy_kwh == pytest.approx(e, abs=1e-3)
            assert 0.1 - 1e-7 <= e / x.energy_kwh <= 0.95 + 1e-7
        assert soc.iloc[-1] >= 0.5 - 1e-7
    assert s.cost_cny["total"] < s.baseline_cost_cny["total"]


def test_cross_check_against_scipy_linprog():
    # the same one-storage day written independently as a dense LP for scipy's linprog
    c = realistic_case(n_storages=1)
    x = c.storage[0]
    n, dt = c.n_steps, c.dt_h
    load, pv, price = np.array(c.load_kw), np.array(c.pv_kw), np.array(c.tariff.import_price_cny_per_kwh)
    # variables (4 n + 1): imp[n], curt[n], ch[n], dis[n], peak

    cost = np.concatenate([price * dt, np.zeros(n), np.full(n, 0.02 * dt), np.full(n, 0.02 * dt), [1.2]])
    eye = np.eye(n)
    a_eq = np.hstack([eye, -eye, -eye, eye, np.zeros((n, 1))])     # imp - curt - ch + dis = load - pv
    b_eq = load - pv
    low = np.tril(np.ones((n, n)))                                   # cumulative energy
    e0 = x.soc_initial_frac * x.energy_kwh
    e_flow = np.hstack([np.zeros((n, 2 * n)), dt * 0.95 * low, -dt / 0.95 * low, np.zeros((n, 1))])
    a_ub = np.vstack([e_flow, -e_flow, np.hstack([eye, np.zeros((n, 3 * n)), -np.ones((n, 1))]),
                      -e_flow[-1:]])
    b_ub = np.concatenate([np.full(n, 0.95 * x.energy_kwh - e0), np.full(n, e0 - 0.1 * x.energy_kwh),
                           np.zeros(n), [e0 - 0.5 * x.energy_kwh]])
    bounds = ([(0, 12000.0)] * n + [(0, p) for p in pv] + [(0, x.power_kw)] * (2 * n) + [(0, None)])
    ref = linprog(cost, A_ub=a_ub, b_ub=b_ub, A_eq=a_eq, b_eq=b_eq, bounds=bounds, method="highs")
    assert ref.status == 0
    s = optimize(c)
    assert s.cost_cny["total"] == pytest.approx(ref.fun, rel=1e-7, abs=1e-4)


def test_storage_energy_constraints_alone():
    # one family of constraints on its own: a 2-step lossless storage that must end full from empty
    import cvxpy as cp
    m = DispatchModel(2, 1, 1.0)
    add_storage_energy_constraints(m)
    m.eta_c.value = np.ones((1, 2))
    m.inv_eta_d.value = np.ones((1, 2))
    m.e0.value, m.e_final.value = np.array([0.0]), np.array([10.0])
    m.e_min.value, m.e_max.value = np.zeros((1, 2)), np.full((1, 2), 10.0)
    prob = cp.Problem(cp.Minimize(cp.sum(m.c)), m.constraints)
    prob.solve(solver=cp.HIGHS)
    assert float(np.sum(m.c.value)) == pytest.approx(10.0)


# ------------------------------------------------------------------------------------------ bad input
def test_lengths_that_differ_name_the_field():
    with pytest.raises(CaseFileError, match=r"pv_kw: 2 values but load_kw has 3"):
        case([1, 2, 3], [0.1, 0.1, 0.1], pv_kw=[0.0, 0.0])
    with pytest.raises(CaseFileError, match=r"tariff.import_price_cny_per_kwh: 2 values but load_kw has 3"):
        case([1, 2, 3], [0.1, 0.1])


def test_negative_capacity_names_the_field():
    with pytest.raises(CaseFileError, match=r"storage\[0\]\.energy_kwh.*-5"):
        case([1], [0.1], [bess(energy_kwh=-5.0)])


def test_unreachable_terminal_soc_names_the_field():
    # 100 kWh, 10 kW, 2 h, eta 0.9: at most 18 kWh can be added to 0 -> 0.9 is out of reach
    with pytest.raises(CaseFileError, match=r"storage\[0\]\.soc_final_frac: 0.9 cannot be reached"):
        case([1, 1], [0.1, 0.1], [bess(power_kw=10.0, soc_final_frac=0.9)])


def test_infeasible_problem_is_reported_not_crashed():
    # 500 kW of load behind a 300 kW connection with a 100 kW storage: no schedule exists
    with pytest.raises(InfeasibleError, match=r"load_kw\[0\] - pv_kw\[0\] = 500 kW exceeds grid.import_limit_kw"):
        optimize(case([500], [0.5], [bess(power_kw=100.0, soc_initial_frac=1.0, soc_final_frac=None)],
                      grid={"import_limit_kw": 300.0}))


def test_case_file_errors(tmp_path):
    p = tmp_path / "case.json"
    p.write_text("{not json", encoding="utf-8")
    with pytest.raises(CaseFileError, match="not valid JSON"):
        read_case(p)
    p.write_text(json.dumps({"timestep_minutes": 15, "start": "2026-07-01T00:00:00", "load_kw": [1.0],
                             "tariff": {"import_price_cny_per_kwh": 0.5}}), encoding="utf-8")
    with pytest.raises(CaseFileError, match="start: .* has no UTC offset"):
        read_case(p)


def test_no_import_and_export_in_the_same_step():
    # export at 0.8 above import at 0.5: an LP could buy 200 kW more and sell it back, earning 0.3 * 200 = 60 CNY.
    # One meter cannot do both: the MILP exports the 50 kW PV surplus... there is none (load 100, PV 50), so it
    # imports 50 kW and exports nothing: cost 0.5 * 50 = 25 CNY, the same as the baseline.
    c = case([100], [0.5], [], grid={"export_limit_kw": 200.0},
             tariff={"export_price_cny_per_kwh": 0.8}, pv_kw=[50.0])
    s = optimize(c)
    assert s.detail["exclusive"] == "milp"
    assert s.frame["grid_import_kw"].iloc[0] == pytest.approx(50.0, abs=1e-4)
    assert s.frame["grid_export_kw"].iloc[0] == pytest.approx(0.0, abs=1e-4)
    assert s.cost_cny["total"] == pytest.approx(25.0, abs=1e-3)


def test_demand_threshold_term_keeps_charging_under_the_threshold():
    # flat price 0.3 then 0.9; load 80 kW then 80 kW; threshold 100 kW, demand charge 10 CNY/kW, peak so far 200 kW
    # (so the billed peak is sunk). Lossless 200 kWh / 100 kW storage, empty, end free. Without the threshold term
    # it charges 100 kW in hour 1 (import 180 kW <= 200 kW, no demand cost) to discharge 80 kW in hour 2... with it,
    # every kW above 100 kW in hour 1 costs 10 CNY, more than the 0.6 CNY/kWh spread: it charges only 20 kW.
    st = bess(energy_kwh=200.0, power_kw=100.0, eta_charge=1.0, eta_discharge=1.0, soc_final_frac=None)
    base = {"demand_charge_cny_per_kw": 10.0, "demand_peak_so_far_kw": 200.0}
    free = optimize(case([80, 80], [0.3, 0.9], [st], tariff=base))
    held = optimize(case([80, 80], [0.3, 0.9], [st], tariff=base | {"demand_threshold_kw": 100.0}))
    assert free.frame["b.charge_kw"].iloc[0] == pytest.approx(80.0, abs=1e-4)   # what hour 2 can use
    assert held.frame["b.charge_kw"].iloc[0] == pytest.approx(20.0, abs=1e-4)
    assert held.frame["grid_import_kw"].iloc[0] == pytest.approx(100.0, abs=1e-4)
