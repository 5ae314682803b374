"""Carbon accounts from the store for a simulated month of the whole park.

Cross-checks against an independent path: the simulator's own 15-minute frames, summed here (mean × 0.25 h),
must give the activity the accounting read back from the store's rollups. The park total is the sum of its
enterprises; results computed with an older factor set stay retrievable after a new one is used.
"""

from __future__ import annotations

import shutil
from datetime import date
from functools import lru_cache

import pandas as pd
import pytest
import yaml
from conftest import REPO

from anning_lib.carbon.compute import compare, compute_enterprise, compute_park
from anning_lib.carbon.factors import load_factor_set
from anning_lib.carbon.records import (
    load_run,
    month_bounds,
    run_versions,
    save_activities,
)
from anning_lib.errors import CarbonError
from anning_lib.park import load_park
from anning_lib.sim import ParkSimulator, to_long
from anning_lib.store import init_db, write_measurements

PARK = load_park()
FS = load_factor_set()
MONTH = "2026-10"


@lru_cache(maxsize=1)
def october_frames() -> pd.DataFrame:
    """15-minute means of every point, 2026-10-01 .. 2026-10-31 local (the simulator, not the store)."""
    sim = ParkSimulator(PARK, 20261125, REPO / "data")
    return pd.concat(list(sim.run(date(2026, 10, 1), date(2026, 11, 1), "15min")))


@pytest.fixture
def october(engine):
    init_db(engine, PARK)
    write_measurements(engine, to_long(october_frames()))
    return engine


def test_park_month_from_the_store(october):
    result = compute_park(october, PARK, FS, MONTH)
    frames = october_frames()
    for r in result["enterprises"]:
        ent = PARK.enterprise(r["enterprise_id"])
        main = next(d for d in ent.devices if d.type == "main_meter")
        expected_kwh = frames[f"{main.id}.p_kw"].sum() * 0.25            # independent: simulator output
        elec = next(x for x in r["lines"] if x["scope"] == "scope2_location" and x["item"] == "electricity")
        assert elec["activity_amount"] == pytest.approx(expected_kwh, rel=1e-9)
        assert "2,976/2,976 quarter-hours" in elec["activity_source"]    # 31 days x 96
        # Yunnan: the latest data year the factor set holds for the province is 2022 -> 0.1073 t/MWh
        assert elec["co2_t"] == pytest.approx(expected_kwh / 1000 * 0.1073, rel=1e-9)
    for key in ("scope1", "scope2_location", "scope2_market", "scope3", "total"):
        assert result["totals"][key] == pytest.approx(sum(r["totals"][key] for r in result["enterprises"]))
    gas = [x for r in result["enterprises"] if r["enterprise_id"] == "E04" for x in r["lines"]
           if x["item"] == "natural_gas"]
    gas_nm3 = sum(frames[f"{d}.gas_nm3_h"].sum() * 0.25 for d in ("E04-CDU", "E04-B1", "E04-B2"))
    assert sum(x["activity_amount"] for x in gas) == pytest.approx(gas_nm3, rel=1e-9)


def test_entered_activity_and_intensity(october):
    start, end = month_bounds(MONTH)
    save_activities(october, [
        {"enterprise_id": "E01", "kind": "process", "item": "electrode", "amount": 150.0, "unit": "t",
         "period_start": start, "period_end": end, "source": "stores ledger"},
        {"enterprise_id": "E01", "kind": "output_value", "item": "output_value", "amount": 12_000.0,
         "unit": "10^4 CNY", "period_start": start, "period_end": end}])
    r = compute_enterprise(october, PARK, FS, "E01", MONTH)
    electrode = next(x for x in r["lines"] if x["item"] == "electrode")
    assert electrode["co2_t"] == pytest.approx(150 * 3.663)            # 549.45 tCO2
    frames = october_frames()
    product_t = frames["E01-RM.production_t_h"].sum() * 0.25             # the rolled product, not the billets
    assert r["intensity"]["production_t"] == pytest.approx(product_t, rel=1e-9)
    assert r["intensity"]["co2_t_per_t"] == pytest.approx(r["totals"]["total"] / product_t)
    assert r["intensity"]["co2_t_per_10k_cny"] == pytest.approx(r["totals"]["total"] / 12_000)


def test_older_factor_set_results_stay_retrievable(october, tmp_path):
    first = compute_enterprise(october, PARK, FS, "E02", MONTH)
    newer = tmp_path / "emission_factors"
    shutil.copytree(REPO / "data" / "emission_factors", newer)
    grid = (newer / "grid.csv").read_text(encoding="utf-8")
    assert "electricity,yunnan,2022,location,0.1073," in grid
    grid = grid.replace("electricity,yunnan,2022,location,0.1073,", "electricity,yunnan,2022,location,0.2146,")
    (newer / "grid.csv").write_text(grid.replace(",2026.1,", ",2026.2,"), encoding="utf-8")   # a revised factor
    for f in ("fuels.csv", "heat.csv", "process.csv", "scope3.csv"):
        (newer / f).write_text((newer / f).read_text(encoding="utf-8").replace(",2026.1,", ",2026.2,"),
                               encoding="utf-8")
    manifest = yaml.safe_load((newer / "manifest.yaml").read_text(encoding="utf-8"))
    manifest["version"] = "2026.2"
    (newer / "manifest.yaml").write_text(yaml.safe_dump(manifest, allow_unicode=True), encoding="utf-8")
    fs2 = load_factor_set(newer)
    assert fs2.version == "2026.2"
    second = compute_enterprise(october, PARK, fs2, "E02", MONTH)
    start, end = month_bounds(MONTH)
    old_run, old_lines = load_run(october, "E02", start, end, "2026.1")
    assert old_run["total_co2_t"] == pytest.approx(first["totals"]["total"])
    cited = old_lines[old_lines["scope"] != "memo"]["factor_source"]
    assert cited.str.contains("factor set 2026.1").all()
    assert load_run(october, "E02", start, end)[0]["factor_version"] == "2026.2"   # newest by default
    assert len(run_versions(october, "E02")) == 2
    # the revised Yunnan factor is twice the old one: location-based electricity doubles, the rest is unchanged
    s2_old, s2_new = first["totals"]["scope2_location"], second["totals"]["scope2_location"]
    assert s2_new == pytest.approx(2 * s2_old)
    assert second["totals"]["scope1"] == pytest.approx(first["totals"]["scope1"])


def test_month_on_month_needs_the_previous_month(october):  # noqa: D103
    compute_enterprise(october, PARK, FS, "E03", MONTH)
    assert compare(october, "E03", MONTH, FS.version) == {"mom": None, "yoy": None}


def test_a_month_without_data_is_refused(october):
    with pytest.raises(CarbonError, match="no metered data for enterprise E01"):
        compute_enterprise(october, PARK, FS, "E01", "2025-10")
    with pytest.raises(CarbonError, match="month: expected YYYY-MM"):
        compute_enterprise(october, PARK, FS, "E01", "2026-13")


def test_year_summary_by_enterprise_sector_and_park(october):
    from anning_lib.carbon.compute import summary
    from anning_lib.carbon.records import year_lines

    result = compute_park(october, PARK, FS, MONTH)
    tables = summary(year_lines(october, 2026), PARK)
    park_row = tables["park"].iloc[0]
    for key in ("scope1", "scope2_location", "scope2_market", "scope3", "total"):
        assert park_row[key] == pytest.approx(result["totals"][key])
        assert tables["sectors"][key].sum() == pytest.approx(result["totals"][key])   # sectors partition the park
    steel = [e.id for e in PARK.enterprises if e.sector == "steel"]
    assert tables["sectors"].loc["steel", "total"] == pytest.approx(
        sum(r["totals"]["total"] for r in result["enterprises"] if r["enterprise_id"] in steel))
    assert set(tables["enterprises"]["months"]) == {1}
    with pytest.raises(CarbonError, match="no stored carbon accounts in 2025"):
        year_lines(october, 2025)


def test_entered_record_of_a_metered_quantity_is_refused_and_nothing_stored(october):
    from anning_lib.store import count_rows

    start, end = month_bounds(MONTH)
    import sqlalchemy as sa

    from anning_lib.store.schema import TABLES
    with october.begin() as conn:   # an old record slipped in beside E04's gas meters (bypassing import checks)
        conn.execute(sa.insert(TABLES["activity_data"]).values(
            enterprise_id="E04", kind="fuel", item="natural_gas", amount=1e6, unit="Nm3", source="ledger",
            period_start=start.to_pydatetime(), period_end=end.to_pydatetime()))
    before = count_rows(october, "carbon_run")
    with pytest.raises(CarbonError, match="E04's fuel natural_gas is metered"):
        compute_park(october, PARK, FS, MONTH)
    assert count_rows(october, "carbon_run") == before     # no enterprise half-stored
    with pytest.raises(CarbonError, match="measured by its meters"):
        save_activities(october, [{"enterprise_id": "E01", "kind": "electricity", "item": "electricity",
                                   "amount": 5.0, "unit": "MWh", "period_start": start, "period_end": end}])
    with pytest.raises(CarbonError, match="does not fit diesel"):
        save_activities(october, [{"enterprise_id": "E01", "kind": "fuel", "item": "diesel", "amount": 5.0,
                                   "unit": "Nm3", "period_start": start, "period_end": end}], FS)


def test_partial_month_is_flagged(engine):
    init_db(engine, PARK)
    frames = october_frames()
    write_measurements(engine, to_long(frames[frames.index < pd.Timestamp("2026-10-16T00:00+08:00")]))
    r = compute_enterprise(engine, PARK, FS, "E02", MONTH, store=False)
    assert r["coverage_frac"] == pytest.approx(15 / 31) and r["partial"]


def test_compare_by_hand(october):
    from anning_lib.carbon.records import store_run

    for month, total in (("2025-10", 80.0), ("2026-09", 100.0), ("2026-10", 110.0)):
        s, e = month_bounds(month)
        store_run(october, "E05", s, e, "t1", [], total)
    change = compare(october, "E05", "2026-10", "t1")
    # month on month: (110 - 100) / 100 = +10 %; year on year: (110 - 80) / 80 = +37.5 %
    assert change["mom"]["change_frac"] == pytest.approx(0.10) and change["mom"]["previous_month"] == "2026-09"
    assert change["yoy"]["change_frac"] == pytest.approx(0.375) and change["yoy"]["change_co2_t"] == 30.0


def test_newest_version_is_the_highest_not_the_latest_computed(october):
    from anning_lib.carbon.records import newest_version, store_run

    assert newest_version(["2026.9", "2026.10", "2026.2"]) == "2026.10"
    s, e = month_bounds(MONTH)
    store_run(october, "E06", s, e, "2026.10", [], 2.0)
    store_run(october, "E06", s, e, "2026.9", [], 1.0)          # computed later, but an older set
    assert load_run(october, "E06", s, e)[0]["factor_version"] == "2026.10"


def test_stored_factor_rows_never_change(october, tmp_path):
    from anning_lib.carbon.records import sync_factors

    assert sync_factors(october, FS) > 0 and sync_factors(october, FS) == 0   # the second time: nothing new
    edited = tmp_path / "ef"
    shutil.copytree(REPO / "data" / "emission_factors", edited)
    grid = (edited / "grid.csv").read_text(encoding="utf-8")
    (edited / "grid.csv").write_text(grid.replace("electricity,yunnan,2022,location,0.1073,",
                                                  "electricity,yunnan,2022,location,0.1200,"), encoding="utf-8")
    with pytest.raises(CarbonError, match="new version"):
        sync_factors(october, load_factor_set(edited))          # same version 2026.1, edited in place
