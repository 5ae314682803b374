"""Investment figures and measure effects worked by hand (every expected number is computed in the test)."""

from __future__ import annotations

import pytest

from anning_lib.advice import effects as fx
from anning_lib.advice.finance import (
    abatement_cost_cny_per_t,
    annuity_factor,
    npv_cny,
    payback_a,
)


def test_annuity_npv_payback_and_abatement_cost():
    # 1.06^10 = 1.790848; (1 - 1/1.790848) / 0.06 = 7.360087
    assert annuity_factor(0.06, 10) == pytest.approx(7.360087, rel=1e-6)
    assert annuity_factor(0.0, 10) == 10
    assert npv_cny(1000.0, 200.0, 0.06, 10) == pytest.approx(-1000 + 200 * 7.360087, rel=1e-6)
    assert payback_a(1000.0, 200.0) == 5.0 and payback_a(1000.0, -5.0) is None and payback_a(0.0, 1.0) == 0.0
    # (1000 / 7.360087 - 100) / 10 = (135.8680 - 100) / 10
    assert abatement_cost_cny_per_t(1000.0, 100.0, 10.0, 0.06, 10) == pytest.approx(3.58680, rel=1e-5)
    # a measure that saves more than it costs has a negative abatement cost
    assert abatement_cost_cny_per_t(0.0, 500.0, 10.0, 0.06, 10) == pytest.approx(-50.0)
    assert abatement_cost_cny_per_t(1000.0, 100.0, 0.0, 0.06, 10) is None        # no abatement: not on a MACC
    with pytest.raises(ValueError, match="years"):
        annuity_factor(0.06, 0)


def test_battery_two_cycles_a_day_by_hand():
    # 10,000 kWh bought in peak hours every day of 365: 5,000 kWh usable at 2 cycles a day
    e = fx.battery(peak_kwh_a=3_650_000.0, days_a=365, cycles_per_day=2, dod_frac=0.9, rte_frac=0.9,
                   max_kwh=1e9, capex_cny_per_kwh=1000.0, opex_frac_a=0.01, p_peak=0.8, p_valley=0.3,
                   grid_t_per_kwh=0.1)
    nameplate = 5000 / 0.9                                   # 5,555.6 kWh
    discharged, charged = 5000 * 2 * 365, 5000 * 2 * 365 / 0.9
    assert e.size["usable_kwh"] == pytest.approx(5000.0)
    assert e.capex_cny == pytest.approx(nameplate * 1000)
    assert e.annual_net_cny == pytest.approx(discharged * 0.8 - charged * 0.3 - nameplate * 1000 * 0.01)
    assert e.co2_t_a == pytest.approx(-(charged - discharged) * 0.1)     # its losses are bought: adds CO2
    capped = fx.battery(3_650_000.0, 365, 2, 0.9, 0.9, 1000.0, 1000.0, 0.01, 0.8, 0.3, 0.1)
    assert capped.size["usable_kwh"] == 1000.0


def test_load_shifting_needs_load_above_the_base():
    assert fx.load_shifting(0.0, 0.3, 50_000.0, 0.8, 0.3).annual_net_cny == 0.0     # a flat load: nothing moves
    e = fx.load_shifting(1_000_000.0, 0.3, 50_000.0, 0.8, 0.3)
    assert e.annual_net_cny == pytest.approx(300_000 * 0.5) and e.co2_t_a == 0.0


def test_boiler_electrification_by_hand():
    # 1,000,000 Nm3 of gas at NCV 389.31 GJ/10^4 Nm3 in a 0.90 boiler = 35,037.9 GJ of heat
    e = fx.boiler_electrification(gas_nm3_a=1e6, boiler_kw=5000, ncv_gj_per_nm3=0.038931,
                                  gas_t_per_nm3=0.0021622, eff_gas=0.90, eff_elec=0.97,
                                  gas_price_cny_per_nm3=3.5, elec_price_cny_per_kwh=0.45, capex_cny_per_kw=300,
                                  grid_t_per_kwh=0.0001073)
    heat_gj = 1e6 * 0.038931 * 0.90
    elec = heat_gj * 1e6 / 3600 / 0.97                      # 10,033,762 kWh
    assert e.grid_kwh_a == pytest.approx(elec)
    assert e.annual_net_cny == pytest.approx(3.5e6 - elec * 0.45)
    assert e.co2_t_a == pytest.approx(2162.2 - elec * 0.0001073)
    assert e.capex_cny == 1_500_000


def test_pv_counts_only_what_the_site_uses_and_green_power_costs_its_premium():
    # 10,000 m2 at 0.2 kWp/m2 = 2,000 kWp x 1,400 kWh/kWp = 2.8 GWh, but only 2.0 GWh used by day
    e = fx.rooftop_pv(10_000, 0.2, 1400, 3000, 0.01, 2_000_000, 0.5, 0.0001)
    assert e.size["kwp"] == pytest.approx(2000.0)
    assert e.annual_net_cny == pytest.approx(2_000_000 * 0.5 - 6_000_000 * 0.01)
    assert e.co2_t_a == pytest.approx(200.0)
    assert fx.rooftop_pv(0, 0.2, 1400, 3000, 0.01, 2e6, 0.5, 0.1).capex_cny == 0.0
    g = fx.green_electricity(1_000_000, 0.5, 0.03, 0.0001073)
    assert g.annual_net_cny == pytest.approx(-15_000) and g.co2_t_a == pytest.approx(53.65)
    # the abatement cost of green electricity is its premium over the factor: 0.03 / 0.0001073 = 279.6 CNY/t
    assert abatement_cost_cny_per_t(g.capex_cny, g.annual_net_cny, g.co2_t_a, 0.06, 1) == pytest.approx(279.59, 1e-3)
