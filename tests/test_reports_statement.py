"""The monthly carbon statement end to end: papermill -> HTML -> PDF, numbers read back from the PDF, Chinese
text with an embedded CJK font, retries and the failure alarm, bad requests refused before anything is stored."""

from __future__ import annotations

import hashlib
import json
import re
import shutil
import subprocess
from datetime import date
from pathlib import Path

import nbformat
import pandas as pd
import pytest
import sqlalchemy as sa
from conftest import REPO, simulated_store

from anning_lib.carbon.compute import compute_enterprise
from anning_lib.carbon.factors import load_factor_set
from anning_lib.config import Settings
from anning_lib.errors import ReportError
from anning_lib.reports.runner import ALARM_RULE, run_many, run_report
from anning_lib.store.schema import TABLES

MONTH = "2026-10"


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    """SQLite store with September and October 2026 of the simulated park and the entered activity data."""
    engine, park = simulated_store(tmp_path_factory.mktemp("statement") / "store.sqlite", date(2026, 9, 1),
                                   date(2026, 11, 1), ("2026-09", MONTH))
    yield engine, park
    engine.dispose()


def settings_in(tmp_path: Path, **kw) -> Settings:
    return Settings(var_dir=tmp_path / "var", report_retry_s=0, **kw)


def pdftext(path: Path) -> str:
    return subprocess.run(["pdftotext", "-layout", str(path), "-"], check=True, capture_output=True,
                          text=True).stdout


def number_after(text: str, label: str) -> float:
    """The first number printed after ``label`` on its line of the PDF text."""
    line = next(ln for ln in text.splitlines() if label in ln)
    return float(re.search(r"(-?[\d,]+\.\d+)", line.split(label, 1)[1]).group(1).replace(",", ""))


def test_statement_pdf_reads_back_the_carbon_engines_figures(store, tmp_path):
    engine, park = store
    row = run_report(engine, "monthly-statement", MONTH, "E01", settings=settings_in(tmp_path))
    assert row["status"] == "done", row["error"]
    assert row["attempts"] == 1
    pdf = Path(row["output_path"])
    assert pdf.is_file() and pdf.suffix == ".pdf" and (tmp_path / "var" / "reports") in pdf.parents
    assert row["checksum"] == "sha256:" + hashlib.sha256(pdf.read_bytes()).hexdigest()

    # the carbon engine's result for that enterprise and month, computed again here (not stored)
    expected = compute_enterprise(engine, park, load_factor_set(), "E01", MONTH, store=False)["totals"]
    text = pdftext(pdf)
    assert "月度碳排放报告" in text and "E01" in text and MONTH in text
    # the "by scope" table: each scope's tonnes with three decimals
    for label, key in (("范围一（直接排放）", "scope1"), ("范围二（基于位置）", "scope2_location"),
                       ("范围二（基于市场）", "scope2_market"), ("范围三", "scope3"),
                       ("合计（范围一 + 范围二位置法）", "total")):
        assert number_after(text, label) == pytest.approx(expected[key], abs=5e-4), label
    # the total is scope 1 + location-based scope 2, as the engine defines it
    assert expected["total"] == pytest.approx(expected["scope1"] + expected["scope2_location"])

    # the advice: the best measure's net present value [10^4 CNY] as the advice engine gives it for the month
    from anning_lib.advice.engine import advise
    from anning_lib.carbon.records import month_bounds

    best = next(it for it in advise(engine, park, "E01", *month_bounds(MONTH))["measures"] if it["recommended"])
    assert "节能降碳优化建议" in text
    assert number_after(text, best["name"]) == pytest.approx(best["npv_cny"] / 1e4, abs=0.05)

    html = pdf.with_suffix(".html").read_text(encoding="utf-8")
    assert '<table class="scopes">' in html and '<table class="lines">' in html and '<table class="advice">' in html
    assert "<script" not in html and "http://" not in html.replace("http://www.w3.org", "")


def test_statement_pdf_embeds_a_chinese_font_and_renders_pages(store, tmp_path):
    engine, _park = store
    row = run_report(engine, "monthly-statement", MONTH, "E04", settings=settings_in(tmp_path))
    assert row["status"] == "done", row["error"]
    fonts = subprocess.run(["pdffonts", row["output_path"]], check=True, capture_output=True, text=True).stdout
    assert "WenQuanYi" in fonts                   # CJK glyphs come from an embedded CJK font, not empty boxes
    out = tmp_path / "page"
    subprocess.run(["pdftoppm", "-r", "50", "-png", "-f", "1", "-l", "1", row["output_path"], str(out)], check=True)
    png = next(tmp_path.glob("page*.png"))
    assert png.stat().st_size > 10_000              # a page with text and tables, not a blank one
    art = REPO / "test-artifacts" / "reports"
    art.mkdir(parents=True, exist_ok=True)
    shutil.copy(png, art / "statement-E04-page1.png")


def broken_template(folder: Path, failing: str) -> Path:
    """A copy of the statement template whose data cell fails for enterprise ``failing``."""
    nb = nbformat.read(REPO / "reports" / "monthly_statement.ipynb", as_version=4)
    cell = next(c for c in nb.cells if c.cell_type == "code" and "statement_data" in c.source)
    cell.source = (f"if enterprise_id == {failing!r}:\n    raise RuntimeError('meter data of {failing} unreadable')\n"
                   + cell.source)
    folder.mkdir(parents=True, exist_ok=True)
    nbformat.write(nb, folder / "monthly_statement.ipynb")
    return folder


def open_alarms(engine) -> list:
    a = TABLES["alarm"]
    with engine.connect() as conn:
        return conn.execute(sa.select(a.c.target, a.c.state, a.c.enterprise_id, a.c.message)
                            .where(a.c.rule_id == ALARM_RULE)).all()


def test_failing_run_is_retried_recorded_alarmed_and_others_still_produced(store, tmp_path):
    engine, _park = store
    settings = settings_in(tmp_path, report_attempts=2)
    rows = run_many(engine, "monthly-statement", MONTH, ["E02", "E03"], settings=settings,
                    template_dir=broken_template(tmp_path / "tpl", "E02"))
    failed, done = rows
    assert failed["status"] == "failed" and failed["attempts"] == 2 and failed["output_path"] is None
    assert "meter data of E02 unreadable" in failed["error"]
    assert done["status"] == "done" and Path(done["output_path"]).is_file()
    alarms = open_alarms(engine)
    assert [(a.target, a.state, a.enterprise_id) for a in alarms] == [
        (f"monthly-statement:E02:{MONTH}", "active_unack", "E02")]
    assert "2 tries" in alarms[0].message

    again = run_report(engine, "monthly-statement", MONTH, "E02", settings=settings)   # the real template
    assert again["status"] == "done"
    assert [a.state for a in open_alarms(engine)] == ["cleared_unack"]                 # cleared, still to ack


@pytest.mark.parametrize("kind, month, ent, field", [
    ("monthly-statment", MONTH, "E01", "kind: unknown report 'monthly-statment'"),
    ("monthly-statement", "2026-13", "E01", "month: expected YYYY-MM, got '2026-13'"),
    ("monthly-statement", MONTH, "E99", "enterprise: unknown enterprise 'E99'"),
    ("monthly-statement", MONTH, None, "enterprise: unknown enterprise None"),
    ("park-monthly", MONTH, "E01", "enterprise: the park-monthly report is park-level, got 'E01'"),
])
def test_bad_request_names_the_field_and_records_nothing(store, tmp_path, kind, month, ent, field):
    engine, _park = store
    r = TABLES["report_run"]
    with engine.connect() as conn:
        before = conn.execute(sa.select(sa.func.count()).select_from(r)).scalar_one()
    with pytest.raises(ReportError, match=re.escape(field)):
        run_report(engine, kind, month, ent, settings=settings_in(tmp_path))
    with engine.connect() as conn:
        assert conn.execute(sa.select(sa.func.count()).select_from(r)).scalar_one() == before


def test_english_statement(store, tmp_path):
    engine, _park = store
    row = run_report(engine, "monthly-statement", MONTH, "E01", lang="en", settings=settings_in(tmp_path))
    text = pdftext(Path(row["output_path"]))
    assert "carbon statement for 2026-10" in text and "Emissions by scope" in text
    assert json.loads(json.dumps(row["params"])) == {"month": MONTH, "lang": "en"}


# ------------------------------------------------------------------------------------------------ schedule
@pytest.mark.parametrize("now_utc, month", [
    ("2026-11-30T17:00:00Z", "2026-11"),     # 1 December 01:00 in Kunming: November is over
    ("2026-11-30T16:00:00Z", "2026-11"),     # local midnight exactly
    ("2026-11-30T15:59:00Z", "2026-10"),     # still 30 November 23:59 local
    ("2027-01-01T00:00:00Z", "2026-12"),
])
def test_previous_month_is_local(now_utc, month):
    from anning_lib.reports.schedule import previous_month

    assert previous_month(pd.Timestamp(now_utc).to_pydatetime(), "Asia/Shanghai") == month


def test_due_runs_produce_each_missing_statement_once(store, tmp_path):
    from anning_lib.reports.schedule import missing_runs, run_due

    engine, park = store
    two = park.model_copy(update={"enterprises": [park.enterprise("E05"), park.enterprise("E06")]})
    settings = settings_in(tmp_path)
    assert missing_runs(engine, two, MONTH) == [("monthly-statement", "E05"), ("monthly-statement", "E06"),
                                                ("park-monthly", None), ("dispatch-settlement", None)]
    rows = run_due(engine, two, pd.Timestamp("2026-11-01T02:00:00+08:00").to_pydatetime(), settings)
    assert [(r["kind"], r["enterprise_id"], r["status"]) for r in rows] == [
        ("monthly-statement", "E05", "done"), ("monthly-statement", "E06", "done"), ("park-monthly", None, "done"),
        ("dispatch-settlement", None, "done")]
    assert run_due(engine, two, pd.Timestamp("2026-11-20T02:00:00+08:00").to_pydatetime(), settings) == []
    # December 1st: November is not in the store (it ends with October), so nothing runs and nothing fails
    assert run_due(engine, two, pd.Timestamp("2026-12-01T02:00:00+08:00").to_pydatetime(), settings) == []


def test_scheduler_fires_on_the_first_at_two_local(store, tmp_path):
    from anning_lib.reports.schedule import start_scheduler

    engine, park = store
    sched = start_scheduler(engine, park, settings_in(tmp_path))
    try:
        fire = sched.get_job("monthly-reports").next_run_time
        now = pd.Timestamp.now(tz="Asia/Shanghai")
        this = now.normalize().replace(day=1) + pd.Timedelta(hours=2)
        expected = this if now < this else (now.normalize().replace(day=1) + pd.offsets.MonthBegin(1)
                                            + pd.Timedelta(hours=2))
        assert pd.Timestamp(fire) == expected
        assert pd.Timestamp(fire).utcoffset() == pd.Timedelta(hours=8)
        assert sched.get_job("catch-up") is not None
    finally:
        sched.shutdown(wait=False)


def test_allowance_position_in_the_statement(store, tmp_path):
    from anning_lib.carbon.ledger import record_movement

    engine, park = store
    for m in ({"year": 2026, "instrument": "CEA", "kind": "allocated", "quantity_t": 50_000.0},
              {"year": 2026, "instrument": "CEA", "kind": "bought", "quantity_t": 2_000.0, "price_cny_per_t": 80.0,
               "ts": pd.Timestamp("2026-10-15T10:00:00+08:00").to_pydatetime(), "market": "CEEX"}):
        record_movement(engine, "E07", m)
    row = run_report(engine, "monthly-statement", MONTH, "E07", settings=settings_in(tmp_path))
    text = pdftext(Path(row["output_path"]))
    # the only account of E07 in 2026 is October's (the statement computed it): scope 1 is what the market counts
    s1 = compute_enterprise(engine, park, load_factor_set(), "E07", MONTH, store=False)["totals"]["scope1"]
    assert number_after(text, "年内已核算排放（范围一）吨CO₂") == pytest.approx(s1, abs=5e-4)
    assert number_after(text, "可用配额（含可抵销CCER）吨") == pytest.approx(52_000.0)
    assert number_after(text, "盈余（负为缺口）吨") == pytest.approx(52_000.0 - s1, abs=5e-4)
    assert number_after(text, "按 80.00 元/吨 估值 元") == pytest.approx((52_000.0 - s1) * 80.0, abs=0.05)
    # one month observed: the linear projection is 12 x that month
    assert number_after(text, "按线性外推的年末排放 吨CO₂") == pytest.approx(12 * s1, abs=5e-3)


# ------------------------------------------------------------------------------------------------ portal requests
def test_portal_request_is_checked_queued_audited_and_produced(store, tmp_path, monkeypatch):
    from anning_lib.auth.access import SYSTEM
    from anning_lib.auth.audit import read_audit
    from anning_lib.auth.users import active_actor, add_user
    from anning_lib.errors import AccessError
    from anning_lib.portal.report_jobs import request_runs

    engine, park = store
    monkeypatch.setenv("ANNING_VAR_DIR", str(tmp_path / "var"))
    monkeypatch.setenv("ANNING_REPORT_RETRY_S", "0")
    from anning_lib.config import get_settings
    get_settings.cache_clear()
    add_user(engine, SYSTEM, "op.reports", "operator-pass-1", "operator")
    add_user(engine, SYSTEM, "e08.user", "enterprise-pass-1", "enterprise", enterprise_id="E08")
    op, ent = active_actor(engine, "op.reports"), active_actor(engine, "e08.user")
    r = TABLES["report_run"]

    def count():
        with engine.connect() as conn:
            return conn.execute(sa.select(sa.func.count()).select_from(r)).scalar_one()

    before = count()
    with pytest.raises(AccessError):                       # an enterprise user may download, not run
        request_runs(engine, park, ent, "monthly-statement", MONTH, "E08")
    with pytest.raises(ReportError, match="month: expected YYYY-MM, got '10/2026'"):
        request_runs(engine, park, op, "monthly-statement", "10/2026", "all")
    assert count() == before                               # refused requests queue nothing

    ids, futures = request_runs(engine, park, op, "monthly-statement", MONTH, "E08")
    with engine.connect() as conn:
        assert conn.execute(sa.select(r.c.requested_by).where(r.c.id == ids[0])).scalar_one() == op.user_id
    done = futures[0].result(timeout=300)
    assert (done["id"], done["status"], done["requested_by"]) == (ids[0], "done", op.user_id)
    assert Path(done["output_path"]).is_file()
    log = read_audit(engine, action_prefix="report_requested")
    assert (log[0]["target"], log[0]["user_id"]) == (f"monthly-statement:E08:{MONTH}", op.user_id)
    get_settings.cache_clear()


# ------------------------------------------------------------------------------------------------ park report
def test_park_report_totals_are_the_sum_of_the_enterprises(store, tmp_path):
    from anning_lib.carbon.compute import compute_park
    from anning_lib.quality.alarms import raise_event

    engine, park = store
    raise_event(engine, "test.rule", "E03-main", "test alarm", severity="high", enterprise_id="E03",
                now=pd.Timestamp("2026-10-10T08:00:00+08:00").to_pydatetime())
    row = run_report(engine, "park-monthly", MONTH, settings=settings_in(tmp_path))
    assert row["status"] == "done", row["error"]
    text = pdftext(Path(row["output_path"]))
    expected = compute_park(engine, park, load_factor_set(), MONTH, store=False)
    park_row = next(ln for ln in text.splitlines() if "园区合计" in ln)
    numbers = [float(x.replace(",", "")) for x in re.findall(r"-?[\d,]+\.\d+", park_row)]
    # scope 1, scope 2 location, scope 2 market, scope 3, total, share 100.0
    assert numbers[:5] == pytest.approx([expected["totals"][k] for k in
                                         ("scope1", "scope2_location", "scope2_market", "scope3", "total")], abs=5e-4)
    assert sum(r["totals"]["total"] for r in expected["enterprises"]) == pytest.approx(numbers[4], abs=5e-3)
    # the alarms table: E03 with one "high" alarm (critical, high, medium, low, total)
    rows = [m.groups() for m in re.finditer(r"^\s*E03\s+(\d+)\s+(\d+)\s+(\d+)\s+(\d+)\s+(\d+)\s*$", text, re.M)]
    assert [tuple(map(int, r)) for r in rows] == [(0, 1, 0, 0, 1)]


def test_executed_notebook_keeps_no_database_password(tmp_path):
    # what papermill writes into the executed copy: the injected parameters cell and, after a failure, the error
    import json

    import nbformat

    from anning_lib.reports.runner import redact

    secret = "postgresql+psycopg://anning_portal:s3cr\"et@db:5432/anning"
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell(f"db_url = {secret!r}\nmonth = '2026-10'")]
    nb.cells[0].outputs = [nbformat.v4.new_output("error", ename="OperationalError", evalue=f"cannot reach {secret}",
                                                  traceback=[f"engine = make_engine({secret!r})"])]
    path = tmp_path / "monthly_statement.ipynb"
    nbformat.write(nb, path)
    assert "s3cr" in path.read_text()
    redact(path, secret, "postgresql+psycopg://anning_portal:***@db:5432/anning")
    text = path.read_text()
    assert "s3cr" not in text and text.count("anning_portal:***@db") == 3
    json.loads(text)                                   # still a notebook
