"""The accounting engine, with every expected value worked by hand from the published figures.

Published figures used (data/emission_factors, which cites them):
  GB/T 32150-2015 Table B.1: natural gas NCV 389.31 GJ/10^4 Nm3, 15.3 tC/TJ, oxidation 0.99;
  bituminous coal 19.570 GJ/t, 26.1 tC/TJ, 0.93; diesel 42.652 GJ/t, 20.2 tC/TJ, 0.98.
  Steel guideline (NDRC 2013): limestone 0.440 tCO2/t, electrodes 3.663 tCO2/t. Purchased heat 0.11 tCO2/GJ.
  MEE/NBS 2022 grid factors: national 0.5366, Yunnan 0.1073 tCO2/MWh; national excl. market-traded
  non-fossil 0.5856.
"""

from __future__ import annotations

import pytest

from anning_lib.carbon.accounting import Activity, account, totals
from anning_lib.carbon.factors import load_factor_set
from anning_lib.errors import CarbonError

FS = load_factor_set()


def one(kind, item, amount, unit, **kw):
    lines = account([Activity(kind, item, amount, unit)], FS, **kw)
    return lines


def co2(lines, scope):
    return sum(x.co2_t for x in lines if x.scope == scope)


def test_natural_gas_combustion():
    # 1,000,000 Nm3 = 100 x 10^4 Nm3; 100 x 389.31 GJ = 38,931 GJ = 38.931 TJ
    # 38.931 TJ x 15.3 tC/TJ = 595.6443 tC; x 0.99 = 589.687857 tC; x 44/12 = 2,162.188809 tCO2
    assert co2(one("fuel", "natural_gas", 1_000_000, "Nm3"), "scope1") == pytest.approx(2162.188809, abs=1e-5)
    # the same gas metered in standard m3 at 20 degC: 1,000,000 x 273.15/293.15 = 931,775.54 Nm3
    assert co2(one("fuel", "natural_gas", 1_000_000, "m3"), "scope1") == pytest.approx(
        2162.188809 * 273.15 / 293.15, rel=1e-9)
    # ... or as heat: 38,931 GJ gives the same tonnes
    assert co2(one("fuel", "natural_gas", 38_931, "GJ"), "scope1") == pytest.approx(2162.188809, abs=1e-5)


def test_coal_and_diesel_combustion():
    # coal 1,000 t x 19.570 GJ/t = 19,570 GJ = 19.57 TJ; x 26.1 = 510.777 tC; x 0.93 = 475.02261 tC
    # x 44/12 = 1,741.74957 tCO2
    assert co2(one("fuel", "bituminous_coal", 1_000, "t"), "scope1") == pytest.approx(1741.74957, abs=1e-4)
    # diesel 100 t x 42.652 = 4,265.2 GJ = 4.2652 TJ; x 20.2 = 86.15704 tC; x 0.98 = 84.4338992 tC
    # x 44/12 = 309.590964 tCO2; 100,000 kg is the same 100 t
    assert co2(one("fuel", "diesel", 100, "t"), "scope1") == pytest.approx(309.590964, abs=1e-5)
    assert co2(one("fuel", "diesel", 100_000, "kg"), "scope1") == pytest.approx(309.590964, abs=1e-5)


def test_process_emissions():
    # limestone 100 t x 0.440 = 44.0 tCO2; electrodes 2.5 t x 3.663 = 9.1575 tCO2
    lines = account([Activity("process", "limestone", 100, "t"), Activity("process", "electrode", 2_500, "kg")], FS)
    assert [round(x.co2_t, 6) for x in lines] == [44.0, 9.1575]
    assert all(x.scope == "scope1" and x.category == "process" for x in lines)


def test_purchased_electricity_with_mee_factors():
    # 10 GWh = 10,000 MWh; Yunnan 2022: 10,000 x 0.1073 = 1,073 t; national 2022: 10,000 x 0.5366 = 5,366 t
    assert co2(one("electricity", "electricity", 10, "GWh", data_year=2022), "scope2_location") == pytest.approx(1073)
    assert co2(one("electricity", "electricity", 10_000_000, "kWh", region="national", data_year=2022),
               "scope2_location") == pytest.approx(5366)


def test_market_based_scope2_with_certificates():
    acts = [Activity("electricity", "electricity", 10_000, "MWh"),
            Activity("green_certificate", "green_certificate", 2_000, "MWh"),
            Activity("green_contract", "green_contract", 1_000, "MWh")]
    lines = account(acts, FS, data_year=2022)
    # location: 10,000 x 0.1073 = 1,073 t; market: (10,000 - 3,000) x 0.1073 = 751.1 t
    assert co2(lines, "scope2_location") == pytest.approx(1073)
    assert co2(lines, "scope2_market") == pytest.approx(751.1)
    # with MEE's national residual factor instead: 7,000 x 0.5856 = 4,099.2 t (documented: can exceed location)
    res = account(acts, FS, data_year=2022, residual="national_residual")
    assert co2(res, "scope2_market") == pytest.approx(4099.2)
    # certificates beyond consumption cover at most the consumption: market-based never below zero
    over = account([acts[0], Activity("green_certificate", "green_certificate", 50_000, "MWh")], FS, data_year=2022)
    assert co2(over, "scope2_market") == 0.0 and co2(over, "scope2_location") == pytest.approx(1073)


def test_purchased_heat():
    # 1,000 GJ x 0.11 = 110 tCO2; 1 MWh of heat = 3.6 GJ -> 500 MWh = 1,800 GJ -> 198 tCO2
    assert co2(one("heat", "purchased_heat", 1_000, "GJ"), "scope2_location") == pytest.approx(110)
    assert co2(one("heat", "purchased_heat", 500, "MWh"), "scope2_location") == pytest.approx(198)


def test_totals_and_traceability():
    lines = account([Activity("fuel", "diesel", 100, "t", "entered: fleet log"),
                     Activity("electricity", "electricity", 1_000, "MWh", "metered: E01-MM.p_kw")], FS, data_year=2022)
    t = totals(lines)
    assert t["total"] == pytest.approx(309.590964 + 107.3, abs=1e-5)   # scope 1 + location-based scope 2
    diesel = lines[0]
    assert diesel.activity_source == "entered: fleet log"
    assert "42.652" in diesel.formula and "20.2" in diesel.formula and "0.98" in diesel.formula
    assert "32150" in diesel.factor_source and FS.version in diesel.factor_source


@pytest.mark.parametrize("activity, field", [
    (Activity("fuel", "diesel", -5, "t"), "amount"),
    (Activity("fuel", "unobtainium", 5, "t"), "unobtainium"),
    (Activity("fuel", "natural_gas", 5, "t*km"), "natural_gas"),  # a transport unit is no fuel amount
    (Activity("fuel", "diesel", 5, "Nm3"), "Nm3"),            # diesel is a liquid fuel in t
    (Activity("process", "limestone", 5, "GJ"), "GJ"),
    (Activity("electricity", "electricity", 5, "t"), "electricity"),
    (Activity("fuel", "diesel", float("nan"), "t"), "amount"),
    (Activity("smoke", "x", 1, "t"), "kind"),
])
def test_bad_activity_is_refused_naming_it(activity, field):
    with pytest.raises(CarbonError, match=field):
        account([activity], FS)


def test_reductant_carbon_balance():
    # coke charged as a reductant, 100 t: 100 x 28.435 GJ/t = 2,843.5 GJ = 2.8435 TJ; x 29.5 tC/TJ = 83.88325 tC
    # all of it leaves as CO2: x 44/12 = 307.571917 tCO2 (burnt as fuel it would be x 0.93 = 286.041882)
    lines = account([Activity("reductant", "coke", 100, "t")], FS)
    assert lines[0].scope == "scope1" and lines[0].category == "process"
    assert lines[0].co2_t == pytest.approx(307.571917, abs=1e-5)
    assert co2(one("fuel", "coke", 100, "t"), "scope1") == pytest.approx(286.041882, abs=1e-5)


def test_residual_must_be_named_correctly():
    with pytest.raises(CarbonError, match="residual: must be one of location, national_residual, got 'locaton'"):
        account([Activity("electricity", "electricity", 1, "MWh")], FS, residual="locaton")


def test_no_grid_lookup_without_electricity():
    # a region is only needed for electricity: a process-only account does not depend on it
    lines = account([Activity("process", "limestone", 1, "t")], FS, region="atlantis")
    assert lines[0].co2_t == pytest.approx(0.44)
