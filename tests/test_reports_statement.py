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
import pytest
import sqlalchemy as sa
from conftest import REPO

from anning_lib.carbon.compute import compute_enterprise
from anning_lib.carbon.factors import load_factor_set
from anning_lib.config import Settings
from anning_lib.errors import ReportError
from anning_lib.park import load_park
from anning_lib.reports.runner import ALARM_RULE, run_many, run_report
from anning_lib.sim import ParkSimulator, to_long
from anning_lib.sim.activity import write_demo_activity
from anning_lib.store import init_db, make_engine, write_measurements
from anning_lib.store.schema import TABLES

MONTH = "2026-10"


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    """SQLite store with September and October 2026 of the simulated park and the entered activity data."""
    path = tmp_path_factory.mktemp("statement") / "store.sqlite"
    engine = make_engine(f"sqlite:///{path}")
    park = load_park()
    init_db(engine, park)
    for frame in ParkSimulator(park, 20261125, REPO / "data").run(date(2026, 9, 1), date(2026, 11, 1), "15min"):
        write_measurements(engine, to_long(frame))
    for m in ("2026-09", MONTH):
        write_demo_activity(engine, park, REPO / "data", m)
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

    html = pdf.with_suffix(".html").read_text(encoding="utf-8")
    assert '<table class="scopes">' in html and '<table class="lines">' in html
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
