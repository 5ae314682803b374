"""Specific energy of a process against the national limits, worked by hand."""

from __future__ import annotations

import pandas as pd
import pytest
from conftest import REPO

from anning_lib.advice.benchmark import (
    enterprise_benchmarks,
    grades,
    position,
    specific_energy,
)
from anning_lib.park import load_park
from anning_lib.store import init_db, make_engine, refresh_rollups, write_measurements


def test_specific_energy_and_grades_by_hand():
    # 1,000,000 kWh and 10,000 Nm3 of gas for 1,000 t: 1,000 kWh/t; in standard coal
    # 1e6 x 0.1229 + 1e4 x 1.3284 = 122,900 + 13,284 = 136,184 kgce -> 136.184 kgce/t
    assert specific_energy(1e6, 1e4, 1000, "kWh/t", kgce_per_kwh=0.1229, kgce_per_nm3=1.3284) == 1000.0
    assert specific_energy(1e6, 1e4, 1000, "kgce/t", kgce_per_kwh=0.1229, kgce_per_nm3=1.3284) == pytest.approx(136.184)
    assert specific_energy(1e6, 0, 0, "kgce/t", kgce_per_kwh=0.1229, kgce_per_nm3=1.3284) is None
    g = grades("GB grades: 1级=8050; 2级=8300; 3级 (limit)=8400; the transcript")
    assert g == {"grade1": 8050.0, "grade2": 8300.0, "grade3": 8400.0}
    levels = {**g, "limit": 8400.0}
    assert [position(v, levels) for v in (8000, 8300, 8350, 8401, None)] == [
        "grade1", "grade2", "within_limit", "above_limit", None]


def test_ferrosilicon_furnace_against_gb_21341(tmp_path):
    """E03's furnace draws 25,000 kW and makes 3 t/h for a day: 8,333.3 kWh/t, between grade 2 (8,300) and the
    limit (8,400) of GB 21341 as data/advice/benchmarks.csv carries it."""
    park = load_park()
    engine = make_engine(f"sqlite:///{tmp_path / 's.sqlite'}")
    init_db(engine, park)
    start = pd.Timestamp("2026-10-05", tz="Asia/Shanghai")
    q = pd.date_range(start, start + pd.Timedelta("1D"), freq="15min", inclusive="left")
    write_measurements(engine, pd.concat([pd.DataFrame({"ts": q, "tag": "E03-SAF.p_kw", "value": 25_000.0}),
                                          pd.DataFrame({"ts": q, "tag": "E03-SAF.production_t_h", "value": 3.0})]))
    refresh_rollups(engine, start, start + pd.Timedelta("1D"))
    b = enterprise_benchmarks(engine, park, "E03", start, start + pd.Timedelta("1D"), gas_kgce_per_nm3=1.3284)
    assert b["electricity_kwh"] == pytest.approx(600_000.0) and b["production_t"] == pytest.approx(72.0)
    assert b["value"] == pytest.approx(600_000 / 72) and b["unit"] == "kWh/t"
    assert b["levels"]["limit"] == 8400.0 and b["position"] == "within_limit"
    assert any("GB 21341" in s for s in b["sources"])
    assert enterprise_benchmarks(engine, park, "E13", start, start + pd.Timedelta("1D"), gas_kgce_per_nm3=1.3) is None
    engine.dispose()
    assert (REPO / "data" / "advice" / "benchmarks.md").is_file()
