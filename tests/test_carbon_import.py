"""Activity-data import from the CSV/Excel template: validated rows stored all or nothing, clear errors by line."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import openpyxl
import pandas as pd
import pytest
import sqlalchemy as sa

from anning_lib.carbon.accounting import Activity, account
from anning_lib.carbon.activity_file import (
    TEMPLATE_COLUMNS,
    TEMPLATE_ROWS,
    import_activity_file,
    parse_activity_table,
    read_activity_table,
    write_template,
)
from anning_lib.carbon.factors import load_factor_set
from anning_lib.carbon.records import entered_activities, month_bounds, save_activities
from anning_lib.errors import ImportFileError
from anning_lib.store.schema import TABLES

REPO = Path(__file__).resolve().parent.parent
UTC = dt.timezone.utc
# October 2026 in Beijing (UTC+8, no daylight saving): 2026-10-01 00:00 +08 .. 2026-11-01 00:00 +08.
OCT_START = dt.datetime(2026, 9, 30, 16, tzinfo=UTC)
OCT_END = dt.datetime(2026, 10, 31, 16, tzinfo=UTC)
ENTERPRISES = {"E01", "E02"}


@pytest.fixture(scope="module")
def fs():
    return load_factor_set(REPO / "data" / "emission_factors")


def _frame(*rows: tuple, header=TEMPLATE_COLUMNS[:6]) -> pd.DataFrame:
    return pd.DataFrame([list(r) for r in rows], columns=list(header))


def _stored(engine) -> list[tuple]:
    t = TABLES["activity_data"]
    with engine.connect() as conn:
        return [tuple(r) for r in conn.execute(sa.select(t.c.enterprise_id, t.c.kind, t.c.item, t.c.amount, t.c.unit,
                                                         t.c.period_start, t.c.period_end, t.c.source)
                                               .order_by(t.c.enterprise_id, t.c.kind, t.c.item, t.c.period_start))]


def _lines_of(exc: ImportFileError) -> dict[str, str]:
    return {path: reason for path, _value, reason in exc.problems}


# ---------------------------------------------------------------- template

def test_template_has_bom_parses_and_is_accountable(fs, tmp_path):
    path = write_template(tmp_path / "t.csv")
    assert path.read_bytes().startswith(b"\xef\xbb\xbfenterprise_id,month,kind,item,amount,unit,source\n")
    records = parse_activity_table(read_activity_table(path), fs, ENTERPRISES, file_name=path.name)
    assert [(r["kind"], r["item"], r["unit"]) for r in records] == [(k, i, u) for _e, _m, k, i, _a, u, _s in
                                                                      TEMPLATE_ROWS]
    assert records[-1]["source"] == "imported t.csv line 7"
    assert {r["unit"] for r in records} >= {"t", "GJ", "MWh", "10^4 CNY", "t*km"}
    lines = account([Activity(r["kind"], r["item"], r["amount"], r["unit"], r["source"]) for r in records], fs)
    assert {ln.category for ln in lines} >= {"combustion", "process", "heat", "green_certificate"}


def test_committed_template_is_the_written_one(tmp_path):
    committed = REPO / "data" / "templates" / "activity_template.csv"
    assert committed.read_bytes() == write_template(tmp_path / "t.csv").read_bytes()


def test_chinese_headers_and_kinds(fs, tmp_path):
    path = write_template(tmp_path / "模板.csv", chinese_headers=True)
    assert path.read_text(encoding="utf-8-sig").startswith("企业,月份,类别,项目,数量,单位,来源\n")
    assert len(parse_activity_table(read_activity_table(path), fs, ENTERPRISES)) == len(TEMPLATE_ROWS)
    raw = _frame(("E02", "2026年3月", "产值", "", "1,250.5", "万元"), ("E02", "2026/03", "热力", "", "80", "GJ"),
                 header=["企业", "月份", "类别", "项目", "数量", "单位"])
    (value, heat) = parse_activity_table(raw, fs, ENTERPRISES)
    assert (value["kind"], value["item"], value["amount"], value["unit"]) == ("output_value", "output_value",
                                                                              1250.5, "10^4 CNY")
    assert (heat["kind"], heat["item"]) == ("heat", "purchased_heat")
    assert heat["period_start"] == pd.Timestamp("2026-02-28T16:00Z")


# ---------------------------------------------------------------- good files stored

def test_good_csv_is_stored_for_the_local_month(db, fs, tmp_path):
    f = tmp_path / "ledger.csv"
    f.write_text("Enterprise_ID,MONTH,kind,item,amount,unit,source,note\n"
                 "E01,2026-10,fuel,Diesel,12.5,t,invoice 031,bought for the loaders\n"
                 "\n"
                 "E01,2026-10,fuel,natural_gas,1.2,10^4 Nm3,,\n"
                 "E02,2026-10,scope3,freight_rail,40000,t*km,rail waybills,\n", encoding="utf-8-sig")
    assert import_activity_file(db, f, fs, ENTERPRISES) == 3
    assert _stored(db) == [
        ("E01", "fuel", "diesel", 12.5, "t", OCT_START, OCT_END, "invoice 031"),
        ("E01", "fuel", "natural_gas", 1.2, "10^4 Nm3", OCT_START, OCT_END, "imported ledger.csv line 4"),
        ("E02", "scope3", "freight_rail", 40000.0, "t*km", OCT_START, OCT_END, "rail waybills"),
    ]
    start, end = month_bounds("2026-10")
    assert (start, end) == (pd.Timestamp(OCT_START), pd.Timestamp(OCT_END))
    got = entered_activities(db, "E01", start, end)
    assert [(a.kind, a.item, a.amount, a.unit) for a in got] == [("fuel", "diesel", 12.5, "t"),
                                                                 ("fuel", "natural_gas", 1.2, "10^4 Nm3")]
    assert got[1].source == "imported ledger.csv line 4, 2026-10"    # the local month it covers
    assert entered_activities(db, "E01", start + pd.Timedelta("1h"), end) == []  # the stored period is the month


def test_good_xlsx_is_stored_and_a_corrected_file_replaces_it(db, fs, tmp_path):
    def workbook(amount: float) -> Path:
        wb = openpyxl.Workbook()
        ws = wb.active
        ws.append(["企业", "月份", "类别", "项目", "数量", "单位", "备注"])
        ws.append(["E01", dt.datetime(2026, 10, 1), "process", "limestone", amount, "t", "Excel made the month a date"])
        ws.append(["E01", "2026-10", "green_contract", "PPA 2026", 300, "MWh", None])
        ws.append([None] * 7)  # an empty formatted row
        ws.append(["E02", "2026-10", "green_contract", "", 1500.5, "kWh", None])
        wb.save(tmp_path / "ledger.xlsx")
        return tmp_path / "ledger.xlsx"

    assert import_activity_file(db, workbook(850), fs, ENTERPRISES) == 3
    rows = _stored(db)
    assert [r[:5] for r in rows] == [("E01", "green_contract", "PPA 2026", 300.0, "MWh"),
                                     ("E01", "process", "limestone", 850.0, "t"),
                                     ("E02", "green_contract", "green_contract", 1500.5, "kWh")]
    assert {r[5:7] for r in rows} == {(OCT_START, OCT_END)}
    assert rows[2][7] == "imported ledger.xlsx line 5"
    assert import_activity_file(db, workbook(870), fs, ENTERPRISES) == 3
    assert len(_stored(db)) == 3
    got = entered_activities(db, "E01", *month_bounds("2026-10"))
    assert [(a.item, a.amount) for a in got] == [("PPA 2026", 300.0), ("limestone", 870.0)]


# ---------------------------------------------------------------- refusals

BAD_FILE = ("enterprise_id,month,kind,item,amount,unit\n"
            "E01,2026-10,fuel,diesel,-3,t\n"                  # line 2: negative amount
            "E01,2026-10,fuel,unobtainium,1,t\n"              # line 3: unknown fuel
            "E01,2026-10,fuel,coke,1,kWh\n"                   # line 4: unit does not fit the fuel
            "E01,2026-13,process,limestone,5,t\n"             # line 5: bad month
            "E99,2026-10,process,limestone,5,t\n"             # line 6: unknown enterprise
            "E02,2026-10,heat,purchased_heat,10,GJ\n"         # line 7: good
            "E02,2026-10,heat,purchased_heat,11,GJ\n")        # line 8: duplicate of line 7


def test_bad_file_lists_every_problem_and_stores_nothing(db, fs, tmp_path):
    good = tmp_path / "good.csv"
    good.write_text("enterprise_id,month,kind,item,amount,unit\nE02,2026-10,heat,purchased_heat,7,GJ\n")
    assert import_activity_file(db, good, fs, ENTERPRISES) == 1
    before = _stored(db)
    bad = tmp_path / "bad.csv"
    bad.write_text(BAD_FILE)
    with pytest.raises(ImportFileError) as err:
        import_activity_file(db, bad, fs, ENTERPRISES)
    problems = _lines_of(err.value)
    assert list(problems) == ["line 2, amount", "line 3, item", "line 4, unit", "line 5, month",
                              "line 6, enterprise_id", "line 8"]
    assert "must not be negative" in problems["line 2, amount"]
    assert "unknown fuel 'unobtainium'" in problems["line 3, item"] and "diesel" in problems["line 3, item"]
    assert "'kWh' does not fit fuel coke" in problems["line 4, unit"]
    assert "YYYY-MM" in problems["line 5, month"]
    assert "unknown enterprise 'E99'" in problems["line 6, enterprise_id"]
    assert "duplicate of line 7" in problems["line 8"]
    assert err.value.source == str(bad) and str(err.value).startswith(f"{bad}: line 2, amount")
    assert "+5 more problems" in str(err.value)
    assert _stored(db) == before  # nothing added, the stored row (7 GJ) unchanged


def test_enterprises_default_to_the_store(db, fs, tmp_path):
    f = tmp_path / "a.csv"
    f.write_text("enterprise_id,month,kind,item,amount,unit\n"
                 "E02,2026-10,production,,10,t\n"
                 "E03,2026-10,production,,1,t\n")
    with pytest.raises(ImportFileError, match=r"line 3, enterprise_id: unknown enterprise 'E03' \(known: E01, E02\)"):
        import_activity_file(db, f, fs)
    assert _stored(db) == []


@pytest.mark.parametrize("kind, item, amount, unit, column, words", [
    ("fuel", "natural_gas", "5", "t", "unit", "expects a gas volume like Nm3 or an energy like GJ"),
    ("fuel", "diesel", "5", "MWh", "unit", "state the fuel's heat in GJ"),
    ("fuel", "", "5", "t", "item", "fuel needs an item"),
    ("process", "limestone", "5", "GJ", "unit", "expects a mass like t"),
    ("process", "coke", "5", "t", "item", "unknown process factor 'coke'"),
    ("heat", "", "5", "t", "unit", "convert steam to heat first"),
    ("heat", "district_steam", "5", "GJ", "item", "unknown heat factor"),
    ("green_certificate", "", "-5", "kWh", "amount", "must not be negative"),
    ("green_certificate", "", "5", "kW", "unit", "expects an energy like GJ"),
    ("electricity", "", "5", "kWh", "kind", "measured by the enterprise's meters"),
    ("green_certificate", "GEC", "5", "t", "unit", "expects an energy"),
    ("scope3", "freight_rail", "5", "t", "unit", "expects a freight transport work like t*km"),
    ("scope3", "material_concrete", "5", "t*km", "unit", "expects a mass like t"),
    ("production", "", "5", "MWh", "unit", "expects a mass like t"),
    ("output_value", "", "5", "CNY", "unit", "must be in 10^4 CNY"),
    ("cems", "", "5", "tCO2", "kind", "measured by the enterprise's meters"),
    ("fuel", "diesel", "abc", "t", "amount", "must be a number"),
    ("fuel", "diesel", "nan", "t", "amount", "must be a number"),
    ("fuel", "diesel", "1,5", "t", "amount", "must be a number"),
    ("fuel", "diesel", "5", "", "unit", "unit is empty"),
    ("fuel", "diesel", "5", "tonnes of stuff", "unit", "unknown unit"),
    ("steam", "", "5", "t", "kind", "unknown kind 'steam'"),
])
def test_each_rule_names_line_column_and_reason(fs, kind, item, amount, unit, column, words):
    with pytest.raises(ImportFileError) as err:
        parse_activity_table(_frame(("E01", "2026-10", kind, item, amount, unit)), fs, ENTERPRISES)
    ((path, _value, reason),) = err.value.problems
    assert path == f"line 2, {column}" and words in reason


@pytest.mark.parametrize("amount, unit, expected", [
    ("1,234.5", "t", 1234.5), ("0", "t", 0.0), ("40", "GJ", 40.0), ("2", "TJ", 2.0)])
def test_fuel_amounts_and_units_accepted(fs, amount, unit, expected):
    (r,) = parse_activity_table(_frame(("E01", "2026-10", "fuel", "diesel", amount, unit)), fs, ENTERPRISES)
    assert (r["amount"], r["unit"]) == (expected, unit)


@pytest.mark.parametrize("month", ["2026-1", "2026/10", "2026年10月", "2026-10-01 00:00:00"])
def test_month_spellings(fs, month):
    (r,) = parse_activity_table(_frame(("E01", month, "production", "steel", "1", "t")), fs, ENTERPRISES)
    assert r["period_start"].month in (9, 12)  # a local month starts on the previous day at 16:00 UTC


@pytest.mark.parametrize("month", ["2026-10-15", "10/2026", "2026.10", "2026-00", "Oct 2026", ""])
def test_month_refusals(fs, month):
    with pytest.raises(ImportFileError, match="line 2, month"):
        parse_activity_table(_frame(("E01", month, "production", "steel", "1", "t")), fs, ENTERPRISES)


def test_header_problems(fs):
    with pytest.raises(ImportFileError) as err:
        parse_activity_table(pd.DataFrame(columns=["enterprise_id", "month", "kind", "item", "amout", "unit"]), fs,
                             ENTERPRISES)
    assert [(p, r.split(" (")[0]) for p, _v, r in err.value.problems] == [
        ("line 1, header", "unknown column 'amout'"), ("line 1, header", "missing column(s) amount")]
    with pytest.raises(ImportFileError, match="two columns mean enterprise_id"):
        parse_activity_table(pd.DataFrame(columns=["企业", "enterprise_id", *TEMPLATE_COLUMNS[1:6]]), fs, ENTERPRISES)
    with pytest.raises(ImportFileError, match="line 2: no activity rows"):
        parse_activity_table(pd.DataFrame(columns=list(TEMPLATE_COLUMNS)), fs, ENTERPRISES)


def test_problems_are_capped_at_50(fs):
    raw = _frame(*[("E01", "2026-10", "steam", "", "1", "t")] * 80)
    with pytest.raises(ImportFileError) as err:
        parse_activity_table(raw, fs, ENTERPRISES)
    assert len(err.value.problems) == 50 and err.value.problems[-1][0] == "line 51, kind"


def test_long_file_name_keeps_the_line_in_the_source(fs):
    (r,) = parse_activity_table(_frame(("E01", "2026-10", "production", "", "1", "t")), fs, ENTERPRISES,
                                file_name="x" * 100 + ".csv")
    assert len(r["source"]) == 64 and r["source"].endswith("… line 2")


def test_gbk_csv_from_chinese_excel(fs, tmp_path):
    f = tmp_path / "gbk.csv"
    f.write_bytes("企业,月份,类别,项目,数量,单位\nE01,2026-10,燃料,diesel,3,t\n".encode("gb18030"))
    (r,) = parse_activity_table(read_activity_table(f), fs, ENTERPRISES)
    assert (r["kind"], r["item"], r["amount"]) == ("fuel", "diesel", 3.0)


def test_unsupported_and_missing_files(tmp_path):
    (tmp_path / "a.json").write_text("{}")
    with pytest.raises(ImportFileError, match="unsupported file type"):
        read_activity_table(tmp_path / "a.json")
    with pytest.raises(ImportFileError, match="file not found"):
        read_activity_table(tmp_path / "missing.csv")


def test_records_are_what_save_activities_takes(db, fs):
    records = parse_activity_table(_frame(("E01", "2026-10", "reductant", "coke", "12", "t")), fs, ENTERPRISES)
    assert save_activities(db, records) == 1
    assert _stored(db)[0][:5] == ("E01", "reductant", "coke", 12.0, "t")
