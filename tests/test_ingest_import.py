"""``anning ingest import``: CSV and Excel, long and wide, local time; a bad row refuses the whole file."""

from __future__ import annotations

import os
import subprocess
import sys

import openpyxl
import pandas as pd
import pytest
import sqlalchemy as sa

from anning_lib.errors import ImportFileError
from anning_lib.ingest.tablefile import import_file, parse_table, read_table
from anning_lib.park import load_park
from anning_lib.store import init_db, read_series

PARK = load_park()
# 2026-11-01 08:00 in Beijing (UTC+8, no daylight saving) is 2026-11-01 00:00 UTC.
UTC0 = pd.Timestamp("2026-11-01T00:00:00Z")


def _values(engine, tags):
    return read_series(engine, tags, UTC0 - pd.Timedelta("1h"), UTC0 + pd.Timedelta("2h"), tz="UTC")


def test_long_csv_in_local_time_with_chinese_headers(engine, tmp_path):
    init_db(engine, PARK)
    f = tmp_path / "meter.csv"
    f.write_text("时间,测点,数值,质量\n"
                 "2026-11-01 08:00:00,E01-MM.p_kw,30000.5,good\n"
                 "2026-11-01 08:15:00,E01-MM.p_kw,31000,uncertain\n"
                 "2026-11-01T00:30:00Z,E01-MM.p_kw,29000,\n", encoding="utf-8-sig")
    assert import_file(engine, f, PARK) == 3
    s = _values(engine, ["E01-MM.p_kw"])["E01-MM.p_kw"]
    assert list(s.index) == [UTC0, UTC0 + pd.Timedelta("15min"), UTC0 + pd.Timedelta("30min")]
    assert s.tolist() == [30000.5, 31000.0, 29000.0]
    with engine.connect() as c:
        assert c.execute(sa.text("select quality from measurement order by ts")).scalars().all() == [0, 1, 0]


def test_wide_excel_skips_empty_cells(engine, tmp_path):
    init_db(engine, PARK)
    wb = openpyxl.Workbook()
    ws = wb.active
    ws.append(["ts", "E01-MM.p_kw", "E01-CEMS.co2_t_h"])
    ws.append(["2026-11-01 08:00", "30000", "4.5"])
    ws.append(["2026-11-01 08:15", "", "4.75"])
    wb.save(tmp_path / "export.xlsx")
    assert import_file(engine, tmp_path / "export.xlsx", PARK) == 3
    got = _values(engine, ["E01-MM.p_kw", "E01-CEMS.co2_t_h"])
    assert got.loc[UTC0, "E01-MM.p_kw"] == 30000.0
    assert got["E01-CEMS.co2_t_h"].tolist() == [4.5, 4.75]


def test_bad_rows_refuse_the_file_and_change_nothing(engine, tmp_path):
    init_db(engine, PARK)
    good = tmp_path / "good.csv"
    good.write_text("ts,tag,value\n2026-11-01 08:00,E01-CEMS.co2_t_h,4.5\n")
    import_file(engine, good, PARK)
    bad = tmp_path / "bad.csv"
    bad.write_text("ts,tag,value\n"
                   "2026-11-01 08:00,E01-CEMS.co2_t_h,1.0\n"      # line 2: fine, would overwrite 4.5
                   "2026-11-01 08:15,E01-NOPE.p_kw,1\n"           # line 3: unknown point
                   "2026-11-01 08:30,E01-CEMS.co2_t_h,12\n"       # line 4: above max 10 t/h
                   "soon,E01-CEMS.co2_t_h,1\n"                    # line 5: not a time
                   "2026-11-01 08:45,E01-CEMS.co2_t_h,lots\n")    # line 6: not a number
    with pytest.raises(ImportFileError) as err:
        import_file(engine, bad, PARK)
    where = [p for p, _v, _r in err.value.problems]
    assert where == ["line 3, tag", "line 4, E01-CEMS.co2_t_h", "line 5, ts", "line 6, E01-CEMS.co2_t_h"]
    assert "E01-NOPE.p_kw" in str(err.value)
    assert _values(engine, ["E01-CEMS.co2_t_h"])["E01-CEMS.co2_t_h"].tolist() == [4.5]


def test_unknown_layout_and_file_type():
    with pytest.raises(ImportFileError, match="no time column"):
        parse_table(pd.DataFrame({"when": ["x"], "E01-MM.p_kw": ["1"]}), PARK)
    with pytest.raises(ImportFileError, match="unsupported file type"):
        read_table(__file__)


def test_cli_prints_one_line_naming_line_and_value(tmp_path):
    bad = tmp_path / "bad.csv"
    bad.write_text("ts,tag,value\n2026-11-01 08:00,E01-CEMS.co2_t_h,99\n")
    env = dict(os.environ, ANNING_VAR_DIR=str(tmp_path / "var"))
    subprocess.run([sys.executable, "-m", "anning_lib.cli.main", "db", "init"], env=env, check=True,
                   capture_output=True)
    out = subprocess.run([sys.executable, "-m", "anning_lib.cli.main", "ingest", "import", str(bad)], env=env,
                         capture_output=True, text=True)
    assert out.returncode == 2
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and "line 2, E01-CEMS.co2_t_h" in lines[0] and "99" in lines[0]


def test_line_numbers_count_blank_lines(engine, tmp_path):
    init_db(engine, PARK)
    f = tmp_path / "gaps.csv"
    f.write_text("ts,tag,value\n2026-11-01 08:00,E01-CEMS.co2_t_h,4.5\n\n2026-11-01 08:15,E01-CEMS.co2_t_h,x\n")
    with pytest.raises(ImportFileError) as err:
        import_file(engine, f, PARK)
    assert [p for p, _v, _r in err.value.problems] == ["line 4, E01-CEMS.co2_t_h"]
