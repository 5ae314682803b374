"""The portal's scenarios page (模拟仿真): the library that runs and reads scenarios for it
(:mod:`anning_lib.portal.scenario_jobs`) and the page in real headless Chromium.

The numbers the tests compare with come from the engine's own saved record (the page must show what was saved)
or are identities worked by hand (a change is scenario − base; a scenario with no change changes nothing).
Screenshots: ``test-artifacts/portal/scenarios-*.png`` (or ``$ANNING_TEST_ARTIFACTS/portal``): look at them.
"""

from __future__ import annotations

import json
import math
import os
import re
from pathlib import Path

import pytest
from conftest import REPO, free_port

from anning_lib.errors import AccessError, AnningError
from anning_lib.portal import scenario_jobs as sj
from anning_lib.scenario.spec import ScenarioFileError

PV_FILE = REPO / "data" / "scenarios" / "park_pv_10mw.yaml"
ARTIFACTS = Path(os.environ.get("ANNING_TEST_ARTIFACTS", REPO / "test-artifacts")) / "portal"


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    """An empty migrated SQLite store with the park's assets and three users; returns (engine, park, actors)."""
    from anning_lib.auth.access import SYSTEM, actor_from_db
    from anning_lib.auth.users import add_user
    from anning_lib.park import load_park
    from anning_lib.store.engine import init_db, make_engine

    folder = tmp_path_factory.mktemp("scenario-store")
    engine, park = make_engine(f"sqlite:///{folder / 'anning.sqlite'}"), load_park()
    init_db(engine, park)
    for name, role, ent in (("boss", "admin", None), ("ent1", "enterprise", "E01"), ("guest", "visitor", None)):
        add_user(engine, SYSTEM, name, f"{name}-password-01", role, enterprise_id=ent)
    yield engine, park, {n: actor_from_db(engine, n) for n in ("boss", "ent1", "guest")}
    engine.dispose()


def _requests(engine) -> list[dict]:
    from anning_lib.auth.audit import read_audit

    return read_audit(engine, action_prefix="scenario_requested")


# ------------------------------------------------------------------------------------------------ library
def test_example_files_are_named(tmp_path):
    files = dict((p.name, n) for p, n in sj.example_files(REPO / "data"))
    assert set(files) == {"park_pv_10mw.yaml", "decarbonise_e04.yaml", "load_shift_tariff.yaml"}
    assert files["park_pv_10mw.yaml"] == "园区新增 10 MWp 光伏（尾矿库二期）"


def test_a_two_day_run_finishes_is_saved_and_listed_under_its_run_id(store, tmp_path):
    """park_pv_10mw.yaml over 2 simulated days: done, saved by the user under the engine's run id, listed, audited;
    the comparison is the HEADLINE figures of the saved cases with change = scenario − base."""
    from anning_lib.scenario.engine import HEADLINE, run_id

    engine, park, actors = store
    job = sj.start_run(engine, actors["boss"], PV_FILE, source="simulated", days=2, park=park, var_dir=tmp_path)
    assert sj.job_status(job)["status"] in ("queued", "running", "done")     # start_run did not wait for it
    row = sj.wait(job, timeout_s=300)
    assert row["status"] == "done", row["error"]
    rec = sj.load_run(tmp_path, row["run_id"])
    assert row["run_id"] == run_id(rec)
    assert (tmp_path / "scenarios" / f"{run_id(rec)}.json").is_file()
    assert rec["saved_by"] == "boss"
    assert rec["history"]["source"] == "simulated" and rec["history"]["days"] == 2
    assert rec["history"]["start"].startswith("2025-01-01")                 # the file's first day
    assert rec["scenario"]["spec"]["history"]["days"] == 2
    runs = sj.saved_runs(tmp_path)
    assert list(runs["id"]) == [run_id(rec)]
    audited = _requests(engine)[0]
    assert audited["user_id"] == actors["boss"].user_id and audited["detail"]["job"] == job
    assert audited["detail"]["days"] == 2 and audited["detail"]["source"] == "simulated"

    cmp = sj.comparison(rec)
    assert list(cmp["label"]) == [h[0] for h in HEADLINE]
    assert (cmp["change"] == cmp["scenario"] - cmp["base"]).all()
    grid = cmp.set_index("label").loc["grid import"]
    assert grid["base"] == rec["base"]["grid_import_e_kwh"] / 1e6
    view = sj.runs_view(tmp_path, "zh_CN")
    assert view.loc[0, "history"] == "模拟 2025-01-01 · 2 天"
    assert view.loc[0, "saving"] == round(rec["comparison"]["saving_cny_a"] / 1e4, 1)
    page = sj.comparison_html(rec, "en")
    assert f"{rec['base']['grid_import_e_kwh'] / 1e6:,.3f}" in page and "Grid import [GWh]" in page
    assert "measures.yaml rooftop_pv" in sj.investments_html(rec, "en")     # each investment names its source
    assert list(sj.monthly_frame(rec)["month"]) == ["2025-01"]


def test_a_scenario_without_changes_changes_nothing(store, tmp_path):
    """Worked by hand: the same park on the same history with the same dispatch: every change is 0, no
    investment, no payback."""
    engine, park, actors = store
    f = tmp_path / "nothing.yaml"
    f.write_text("name: 不变\nchanges: []\n", encoding="utf-8")
    row = sj.wait(sj.start_run(engine, actors["boss"], f, source="simulated", days=2, park=park, var_dir=tmp_path),
                  timeout_s=300)
    assert row["status"] == "done", row["error"]
    rec = sj.load_run(tmp_path, row["run_id"])
    cmp = sj.comparison(rec)
    assert all(abs(c) < 1e-6 for c in cmp["change"] if not math.isnan(c)), cmp
    assert rec["comparison"]["capex_cny"] == 0 and sj.payback_text(rec["comparison"]["payback_a"], 0, "en") == "–"


def test_a_bad_file_is_refused_naming_the_field_and_nothing_starts(store, tmp_path):
    engine, park, actors = store
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: bad\nchanges:\n  - {type: add_pv, site: park, dc_kwp: 100}\n"
                   "  - {type: electrify_boiler, device: E77-B9}\n", encoding="utf-8")
    before = len(_requests(engine))
    with pytest.raises(ScenarioFileError, match=r"changes\[1\]\.device: 'E77-B9' is not a boiler"):
        sj.start_run(engine, actors["boss"], bad, source="simulated", days=2, park=park, var_dir=tmp_path)
    with pytest.raises(ScenarioFileError, match=r"\(file\)"):
        sj.start_run(engine, actors["boss"], tmp_path / "missing.yaml", source="simulated", days=2, park=park,
                     var_dir=tmp_path)
    assert not (tmp_path / "scenarios").exists() and len(_requests(engine)) == before


@pytest.mark.parametrize("field, kwargs", [
    ("history.days", {"days": 0}), ("history.days", {"days": 400}), ("history.days", {"days": 2.5}),
    ("history.source", {"source": "cloud"}), ("history.start", {"start": "2025-13-01"})])
def test_a_bad_history_is_refused_naming_the_field(store, tmp_path, field, kwargs):
    engine, park, actors = store
    before = len(_requests(engine))
    args = {"source": "simulated", "days": 2} | kwargs
    with pytest.raises(ScenarioFileError, match=re.escape(field)) as info:
        sj.start_run(engine, actors["boss"], PV_FILE, park=park, var_dir=tmp_path, **args)
    assert repr(next(iter(kwargs.values()))) in str(info.value)          # and the bad value
    assert not (tmp_path / "scenarios").exists() and len(_requests(engine)) == before


@pytest.mark.parametrize("user", ["ent1", "guest"])
def test_enterprise_users_and_visitors_may_not_run_scenarios(store, tmp_path, user):
    engine, park, actors = store
    with pytest.raises(AccessError, match="may not page.scenarios"):
        sj.start_run(engine, actors[user], PV_FILE, source="simulated", days=2, park=park, var_dir=tmp_path)
    assert not (tmp_path / "scenarios").exists()


def test_a_run_that_fails_shows_its_error(store, tmp_path):
    """The store has no measurements: the job fails in the background with the history's error, nothing saved."""
    engine, park, actors = store
    row = sj.wait(sj.start_run(engine, actors["boss"], PV_FILE, source="store", days=2, park=park,
                               var_dir=tmp_path), timeout_s=60)
    assert row["status"] == "failed" and "the store has no measurements" in row["error"]
    assert sj.status_text(row, "en")[1] == "danger" and not (tmp_path / "scenarios").exists()


def test_load_run_accepts_only_saved_run_ids(tmp_path):
    (tmp_path / "scenarios").mkdir()
    (tmp_path / "x.json").write_text(json.dumps({"secret": 1}))
    for bad in ("../x", "../../etc/passwd", "abc", "0123456789ab-0123456789ab", "0123456789AB-0123456789ab/"):
        with pytest.raises(AnningError, match="run_id"):
            sj.load_run(tmp_path, bad)


def test_every_headline_figure_has_a_label_in_both_languages():
    from anning_lib.i18n import catalogue
    from anning_lib.scenario.engine import HEADLINE

    cat = catalogue()
    for label, *_ in HEADLINE:
        assert sj._label_key(label) in cat, label


# ------------------------------------------------------------------------------------------------ browser
@pytest.fixture(scope="module")
def portal(tmp_path_factory):
    from portal_harness import Portal, require_chromium, seed_store

    require_chromium(module_level=False)
    var = tmp_path_factory.mktemp("scenario-portal")
    p = Portal(seed_store(var, days=1, statements=False), var, free_port()).start()
    yield p
    p.stop()


def _shoot(page, name: str) -> None:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)


def _shows_the_saved_run(page, rec: dict) -> None:
    """The comparison table holds the saved record's figures (formatted as the page formats them)."""
    table = page.locator("table.scn-compare")
    table.wait_for(timeout=30000)
    grid = table.locator('tr[data-figure="grid import"]').inner_text()
    assert f"{rec['base']['grid_import_e_kwh'] / 1e6:,.3f}" in grid
    assert f"{rec['scenario_case']['grid_import_e_kwh'] / 1e6:,.3f}" in grid
    cost = table.locator('tr[data-figure="cost"]').inner_text()
    assert f"{rec['base']['cost_cny']['total_cny'] / 1e4:,.1f}" in cost
    assert table.locator("tr").count() == 9                               # heading + 8 figures


def test_admin_runs_a_scenario_on_the_page(portal, browser):
    """Admin: 2 simulated days of park_pv_10mw.yaml from the form; the status goes to done, the new run is
    listed and its comparison, investments and chart show; then the same page on a phone and in English; an
    enterprise user is refused the page (403)."""
    from portal_harness import DESKTOP, PHONE, login, offline_context, wait_drawn

    from anning_lib.scenario.engine import list_runs

    outside: list[str] = []
    ctx = offline_context(browser, portal.base, DESKTOP, outside)
    page = ctx.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    login(page, portal.base, "admin")
    page.goto(f"{portal.base}/scenarios")
    wait_drawn(page)
    page.get_by_text("暂无已保存的运行结果").wait_for(timeout=10000)
    page.get_by_label("方案文件").select_option(label="园区新增 10 MWp 光伏（尾矿库二期）")
    days = page.get_by_label("天数（2–365）")
    days.fill("2")
    days.press("Tab")
    page.get_by_role("button", name="运行").click()
    page.get_by_text(re.compile("已完成并保存")).wait_for(timeout=180000)
    runs = list_runs(portal.var_dir / "scenarios")
    assert len(runs) == 1
    run_id = runs["id"].iloc[0]
    rec = json.loads((portal.var_dir / "scenarios" / f"{run_id}.json").read_text(encoding="utf-8"))
    assert rec["history"]["days"] == 2 and rec["saved_by"] == "admin"
    page.locator(".tabulator-row", has_text=run_id).wait_for(timeout=10000)
    _shows_the_saved_run(page, rec)                                   # the new run is selected
    assert "measures.yaml" in page.locator("table.scn-invest").inner_text()
    page.locator(".bk-Canvas, canvas").first.wait_for(timeout=10000)
    _shoot(page, "scenarios-admin-run-desktop")
    assert not errors, errors
    ctx.close()

    ctx = offline_context(browser, portal.base, PHONE, outside)
    page = ctx.new_page()
    login(page, portal.base, "operator")
    page.goto(f"{portal.base}/scenarios")
    wait_drawn(page)
    page.locator(".tabulator-row", has_text=run_id).click()
    _shows_the_saved_run(page, rec)
    assert page.evaluate("document.documentElement.scrollWidth") <= PHONE["width"]
    _shoot(page, "scenarios-operator-phone")
    page.goto(f"{portal.base}/scenarios?lang=en")
    wait_drawn(page)
    page.get_by_role("heading", name="Saved runs").wait_for(timeout=10000)
    page.locator(".tabulator-row", has_text=run_id).click()
    page.locator("table.scn-compare").get_by_text("Grid import [GWh]").wait_for(timeout=30000)
    _shoot(page, "scenarios-operator-en-phone")
    ctx.close()

    ctx = offline_context(browser, portal.base, DESKTOP, outside)
    page = ctx.new_page()
    login(page, portal.base, "ent-e01")
    assert page.goto(f"{portal.base}/scenarios").status == 403
    _shoot(page, "scenarios-refused-ent-e01-desktop")
    page.goto(f"{portal.base}/overview")
    wait_drawn(page)
    assert page.locator('nav.anning-header a[href="/scenarios"]').count() == 0     # not offered either
    ctx.close()
    assert outside == []
