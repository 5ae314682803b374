"""Emission-factor library and unit conversion: hand-worked checks (issue 5, part 1).

Every expected number is worked out by hand in the test, from the published figures, not from the code.
"""

from __future__ import annotations

import shutil

import pytest

from anning_lib.carbon import units
from anning_lib.carbon.factors import load_factor_set
from anning_lib.errors import AnningError, CarbonError, ProblemsError


@pytest.fixture(scope="module")
def fs():
    return load_factor_set()


# ------------------------------------------------------------------ fuel combustion, GB/T 32150-2015 formula (2)

def test_natural_gas_ef_per_10k_nm3(fs):
    # 389.31 GJ/10^4 Nm3 = 389.31e-3 TJ/10^4 Nm3; × 15.3 tC/TJ = 5.956443 tC; × 0.99 = 5.896879 tC oxidised;
    # × 44/12 = 21.6219 tCO2 per 10^4 Nm3, i.e. 2.16219e-3 tCO2/Nm3.
    f = fs.fuel("natural_gas")
    assert f.basis_unit == "Nm3"
    assert f.ncv_gj_per_unit == pytest.approx(389.31 / 1e4)
    by_hand = 389.31e-3 * 15.3 * 0.99 * 44 / 12
    assert by_hand == pytest.approx(21.62, abs=0.005)
    assert f.co2_t_per_unit * 1e4 == pytest.approx(by_hand, rel=1e-12)
    assert f.co2_t_per_unit * units.convert(1, "10^4 Nm3", "Nm3") == pytest.approx(21.62, abs=0.005)


def test_diesel_ef_per_t(fs):
    # 42.652 GJ/t × 20.2e-3 tC/GJ = 0.8615704 tC/t; × 0.98 = 0.8443390; × 44/12 = 3.09591 tCO2/t.
    assert fs.fuel("diesel").co2_t_per_unit == pytest.approx(42.652 * 20.2e-3 * 0.98 * 44 / 12, rel=1e-12)
    assert fs.fuel("diesel").co2_t_per_unit == pytest.approx(3.096, abs=0.0005)


def test_bituminous_coal_ef_per_t(fs):
    # 19.570 GJ/t × 26.1e-3 tC/GJ = 0.510777 tC/t; × 0.93 = 0.4750226; × 44/12 = 1.741750 tCO2/t.
    assert fs.fuel("bituminous_coal").co2_t_per_unit == pytest.approx(1.742, abs=0.0005)


@pytest.mark.parametrize("key, expected", [
    ("gasoline", 2.925), ("fuel_oil", 3.170), ("lpg", 3.101), ("coke", 2.860),   # per t (REFERENCE.md)
    ("blast_furnace_gas", 8.48e-4), ("converter_gas", 15.12e-4), ("coke_oven_gas", 8.86e-4),  # per Nm3
])
def test_other_fuels_match_published_ef(fs, key, expected):
    assert fs.fuel(key).co2_t_per_unit == pytest.approx(expected, rel=1.5e-3)


def test_every_required_fuel_is_cited(fs):
    required = ["natural_gas", "bituminous_coal", "anthracite", "lignite", "coke", "diesel", "gasoline", "fuel_oil",
                "lpg", "refinery_gas", "petroleum_coke", "coke_oven_gas", "blast_furnace_gas", "converter_gas",
                "kerosene"]
    for key in required:
        f = fs.fuel(key)
        assert f.source and f.clause and 1990 < f.year <= 2026 and f.version == fs.version
        assert f"factor set {fs.version}" in f.citation


def test_fuel_amount_in_basis_unit_and_refusal(fs):
    gas = fs.fuel("natural_gas")
    assert gas.to_basis(2, "10^4 Nm3") == pytest.approx(20000)
    assert gas.to_basis(389.31, "GJ") == pytest.approx(1e4)  # energy ÷ NCV 0.038931 GJ/Nm3
    with pytest.raises(CarbonError, match=r"unit 't' does not fit natural_gas \(expects a gas volume like Nm3 or "
                                          r"an energy like GJ\)"):
        gas.to_basis(1, "t")
    with pytest.raises(AnningError, match="unit 'Nm3' does not fit diesel"):
        fs.fuel("diesel").to_basis(1, "Nm3")


# ------------------------------------------------------------------ grid factors, MEE/NBS announcements

def test_grid_factors_equal_published(fs):
    assert fs.grid("national", 2022).value == 0.5366
    assert fs.grid("yunnan", 2022).value == 0.1073
    assert fs.grid("national", 2022, "residual").value == 0.5856
    assert fs.grid("national", 2022, "fossil").value == 0.8325
    assert fs.grid("national", 2021).value == 0.5568
    assert fs.grid("national", 2023).value == 0.5306
    assert fs.grid("southwest", 2022).value == 0.2268
    assert fs.grid("yunnan", 2022).unit == "tCO2/MWh"
    assert "2022年电力二氧化碳排放因子" in fs.grid("yunnan", 2022).source
    assert "secondary source" in fs.grid("yunnan", 2021).source  # Yunnan 2021 is from a secondary source


def test_latest_grid_year(fs):
    assert fs.latest_grid_year("national") == 2023
    assert fs.latest_grid_year("yunnan") == 2022  # Yunnan 2023 not found yet
    assert fs.latest_grid_year("national", "residual") == 2023


def test_unknown_keys_name_the_key_and_the_known_ones(fs):
    with pytest.raises(CarbonError, match=r"unknown fuel 'natgas' \(known: .*natural_gas"):
        fs.fuel("natgas")
    with pytest.raises(CarbonError, match=r"'yunnan 2023 location' \(known: .*yunnan 2022 location"):
        fs.grid("yunnan", 2023)
    with pytest.raises(CarbonError, match="limestone"):
        fs.process("chalk")


def test_heat_process_scope3(fs):
    assert fs.heat().value == 0.11 and fs.heat().per_unit == "GJ"
    lime = fs.process("limestone")
    assert lime.value == 0.440
    assert lime.stoich_value == pytest.approx(44.009 / 100.086, abs=5e-5)  # 0.43971: CO2 / CaCO3
    assert fs.process("dolomite").stoich_value == pytest.approx(2 * 44.009 / 184.399, abs=5e-5)  # 0.47732
    assert fs.process("electrode").stoich_value == pytest.approx(44.009 / 12.011, abs=5e-5)  # 3.66406
    assert fs.process("soda_ash").value == pytest.approx(44.009 / 105.988, abs=5e-5)  # 0.41523
    rail = fs.scope3("freight_rail")
    assert rail.per_unit == "t*km" and rail.value == pytest.approx(0.02779e-3)  # 0.02779 kg CO2e/(t·km)


def test_rows_table_for_the_emission_factor_table(fs):
    df = fs.rows()
    assert list(df.columns[:6]) == ["key", "region", "value", "unit", "version", "source"]
    assert not df.duplicated(["key", "region", "version"]).any()
    yunnan = df[(df.key == "electricity:location:2022") & (df.region == "yunnan")]
    assert yunnan.value.item() == 0.1073
    assert df[df.key == "fuel:diesel"].value.item() == pytest.approx(3.0959, abs=1e-4)
    assert df.source.str.len().min() > 3


# ------------------------------------------------------------------ units

def test_unit_conversions():
    assert units.convert(1, "MWh", "kWh") == pytest.approx(1000)
    assert units.convert(1, "MWh", "GJ") == pytest.approx(3.6)  # 1000 kWh × 3.6 MJ/kWh
    assert units.convert(1, "GWh", "TJ") == pytest.approx(3.6)
    assert units.convert(1, "t", "kg") == 1000
    assert units.convert(1, "TJ", "GJ") == pytest.approx(1000)
    # m3 of gas at 20 °C, 101.325 kPa: at equal pressure V ∝ T, so 1 m3 → 273.15 / 293.15 = 0.931776 Nm3.
    assert units.convert(1, "m3", "Nm3") == pytest.approx(0.93178, abs=5e-6)
    assert units.convert(1, "m³", "Nm3") == pytest.approx(273.15 / 293.15)
    for spelling in ("10^4 Nm3", "10⁴Nm³", "1e4 Nm3", "万Nm3"):
        assert units.convert(1, spelling, "Nm3") == pytest.approx(10_000)
    assert units.convert(1, "tCO2", "kgCO2") == 1000
    assert units.convert(5, "t*km", "tkm") == pytest.approx(5)


def test_unit_refusals():
    with pytest.raises(CarbonError, match=r"unit 'kg' does not fit 'kWh' \(expects an energy like GJ\)"):
        units.convert(1, "kg", "kWh")
    with pytest.raises(CarbonError, match="expects a gas volume like Nm3"):
        units.convert(1, "m**3", "Nm3")  # a geometric volume is not an amount of gas
    with pytest.raises(CarbonError, match=r"unit 't' does not fit tCO2 \(expects a CO2 mass like tCO2\)"):
        units.convert(1, "t", "tCO2", fits="tCO2")  # fuel tonnes are not CO2 tonnes
    with pytest.raises(CarbonError, match="unknown unit 'kwhh'"):
        units.parse_unit("kwhh")


# ------------------------------------------------------------------ file validation and versions

def test_malformed_row_named_by_file_line_column_value(tmp_path):
    src = load_factor_set().folder
    folder = tmp_path / "emission_factors"
    shutil.copytree(src, folder)
    fuels = folder / "fuels.csv"
    lines = fuels.read_text(encoding="utf-8").splitlines()
    assert lines[2].startswith("bituminous_coal,")  # line 3 of the file
    lines[2] = lines[2].replace(",19.570,", ",abc,")
    fuels.write_text("\n".join(lines) + "\n", encoding="utf-8")
    with pytest.raises(ProblemsError) as info:
        load_factor_set(folder)
    msg = str(info.value)
    assert "fuels.csv" in msg and "line 3" in msg and "ncv_gj_per_unit" in msg and "'abc'" in msg


def test_bad_unit_and_unknown_version(tmp_path):
    folder = tmp_path / "ef"
    shutil.copytree(load_factor_set().folder, folder)
    heat = folder / "heat.csv"
    heat.write_text(heat.read_text(encoding="utf-8").replace("tCO2/GJ", "t/GJ"), encoding="utf-8")
    with pytest.raises(ProblemsError, match=r"heat.csv: line 2, column unit: value 't/GJ'"):
        load_factor_set(folder)
    with pytest.raises(CarbonError, match=r"no rows of factor-set version '1999.1'"):
        load_factor_set(None, version="1999.1")
