"""``anning carbon`` from the command line: JSON only on stdout, one-line errors, numbers worked by hand."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest


def anning(*args, env=None):
    return subprocess.run([sys.executable, "-m", "anning_lib.cli.main", *args], capture_output=True, text=True,
                          env=env or dict(os.environ))


def test_calculator_natural_gas_json():
    out = anning("carbon", "activity", "--kind", "natural_gas", "--amount", "1000000", "--unit", "Nm3", "--json")
    assert out.returncode == 0, out.stderr
    doc = json.loads(out.stdout)                      # stdout is JSON and nothing else
    # 100 x 10^4 Nm3 x 389.31 GJ x 15.3 tC/TJ x 10^-3 x 0.99 x 44/12 = 2,162.19 tCO2 (GB/T 32150-2015 B.1)
    assert doc["co2_t"] == pytest.approx(2162.188809, abs=1e-5)
    assert "32150" in doc["lines"][0]["factor_source"]


def test_calculator_electricity_by_region_and_year():
    out = anning("carbon", "activity", "--kind", "electricity", "--amount", "10000", "--unit", "MWh",
                 "--region", "national", "--year", "2022", "--json")
    assert json.loads(out.stdout)["co2_t"] == pytest.approx(10_000 * 0.5366)   # MEE/NBS 2022 national average
    out = anning("carbon", "activity", "--kind", "electricity", "--amount", "10000", "--unit", "MWh",
                 "--region", "yunnan", "--year", "2022", "--json")
    assert json.loads(out.stdout)["co2_t"] == pytest.approx(10_000 * 0.1073)   # Yunnan provincial 2022


@pytest.mark.parametrize("args, says", [
    (("--kind", "diesel", "--amount", "-5", "--unit", "t"), "--amount"),
    (("--kind", "unobtainium", "--amount", "5", "--unit", "t"), "unobtainium"),
    (("--kind", "diesel", "--amount", "5", "--unit", "Nm3"), "does not fit diesel"),
    (("--kind", "electricity", "--amount", "5", "--unit", "MWh", "--year", "1999"), "1999"),
])
def test_calculator_bad_input_one_line(args, says):
    out = anning("carbon", "activity", *args)
    assert out.returncode == 2 and out.stdout == ""
    assert len(out.stderr.strip().splitlines()) == 1 and says in out.stderr


def test_compute_a_month_from_a_backfill(tmp_path):
    env = dict(os.environ, ANNING_VAR_DIR=str(tmp_path))
    env.pop("ANNING_DB_URL", None)
    assert anning("db", "init", env=env).returncode == 0
    assert anning("sim", "backfill", "--days", "30", "--start", "2026-11-01", env=env).returncode == 0
    out = anning("carbon", "compute", "--month", "2026-11", "--enterprise", "E02", "--json", env=env)
    assert out.returncode == 0, out.stderr
    doc = json.loads(out.stdout)
    elec = next(x for x in doc["lines"] if x["scope"] == "scope2_location" and x["item"] == "electricity")
    assert elec["activity_unit"] == "kWh" and elec["activity_amount"] > 0
    assert elec["co2_t"] == pytest.approx(elec["activity_amount"] / 1000 * 0.1073)   # Yunnan 2022, MEE/NBS
    assert doc["factor_version"] == "2026.1" and doc["enterprise_id"] == "E02" and not doc["partial"]
    none = anning("carbon", "compute", "--month", "2026-12", "--enterprise", "E02", env=env)
    assert none.returncode == 2 and "no metered data" in none.stderr
