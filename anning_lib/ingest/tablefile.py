"""Historical data from CSV or Excel files (``anning ingest import FILE``): read, validate every row, store or refuse.

Two layouts are accepted (headers are case-insensitive; the Chinese headers meter exports use are understood):

* **long**: columns ``tag`` (测点), ``ts`` (时间) and ``value`` (数值), optional ``quality`` (质量:
  good / uncertain / bad or 0 / 1 / 2);
* **wide**: a ``ts`` column, then one column per tag (``E01-MM.p_kw``, ...); empty cells are missing readings.

Timestamps with a UTC offset are taken as written; timestamps without one are local time in ``tz`` (the park's
Asia/Shanghai by default), which is how meter exports in China are written. Every row is checked against the park
model (known tag, a number, inside the point's limits) before anything is written; one bad row refuses the whole
file with an error naming its line, column and value, so a file is stored completely or not at all.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
from sqlalchemy.engine import Engine

from anning_lib.errors import ImportFileError
from anning_lib.ingest.model import Quality
from anning_lib.park.schema import Park, point_tag
from anning_lib.store.timeseries import write_measurements

ALIASES = {"tag": "tag", "测点": "tag", "point": "tag", "ts": "ts", "time": "ts", "timestamp": "ts", "时间": "ts",
           "value": "value", "v": "value", "数值": "value", "值": "value", "quality": "quality", "q": "quality",
           "质量": "quality"}
MAX_PROBLEMS = 50


def read_table(path: Path | str) -> pd.DataFrame:
    """Read a CSV or Excel (.xlsx) file as text cells (I/O only); blank CSV lines are kept, so row ``i`` is file
    line ``i + 2``. A CSV is read as UTF-8 (with or without BOM) or, failing that, GB18030 (what Excel writes for
    "CSV" on a Chinese Windows)."""
    path = Path(path)
    if not path.is_file():
        raise ImportFileError([("file", str(path), f"file not found: {path}")])
    suffix = path.suffix.lower()
    if suffix in (".xlsx", ".xlsm"):
        try:
            return pd.read_excel(path, dtype=str, keep_default_na=False, engine="openpyxl")
        except (ValueError, OSError) as err:
            raise ImportFileError([("file", str(path), f"cannot read {path.name}: {err}")]) from None
    if suffix != ".csv":
        raise ImportFileError([("file", str(path), f"unsupported file type {suffix!r} (use .csv or .xlsx)")])
    for encoding in ("utf-8-sig", "gb18030"):
        try:
            return pd.read_csv(path, dtype=str, encoding=encoding, keep_default_na=False, skip_blank_lines=False)
        except UnicodeDecodeError:
            continue
        except (ValueError, OSError) as err:
            raise ImportFileError([("file", str(path), f"cannot read {path.name}: {err}")]) from None
    raise ImportFileError([("file", str(path), f"cannot read {path.name}: not UTF-8 or GB18030 text "
                                                "(save it as 'CSV UTF-8')")])


def _rename(raw: pd.DataFrame) -> pd.DataFrame:
    return raw.rename(columns={c: ALIASES.get(str(c).strip().lower(), str(c).strip()) for c in raw.columns})


def _to_long(df: pd.DataFrame) -> pd.DataFrame:
    """Either layout -> columns line, tag, ts, value, quality (text); ``line`` is the file line (header = 1)."""
    blank = (df.astype(str).apply(lambda c: c.str.strip()) == "").all(axis=1)
    df = df.assign(line=np.arange(2, len(df) + 2))[~blank]   # line numbers count blank lines too
    if "ts" not in df.columns:
        raise ImportFileError([("header", list(df.columns), "no time column (ts / time / 时间)")])
    if {"tag", "value"} <= set(df.columns):
        if "quality" not in df.columns:
            df = df.assign(quality="")
        return df[["line", "tag", "ts", "value", "quality"]]
    tags = [c for c in df.columns if c not in ("ts", "line")]
    if not tags:
        raise ImportFileError([("header", list(df.columns), "no value columns: give tag/value or one column per tag")])
    long = df.melt(id_vars=["line", "ts"], value_vars=tags, var_name="tag", value_name="value")
    long = long[long["value"].astype(str).str.strip() != ""]
    return long.assign(quality="").sort_values(["line", "tag"], kind="stable")


def _parse_ts(text: pd.Series, tz: str) -> pd.Series:
    """Text -> UTC instants; without an offset the text is local time in ``tz``; NaT where unparseable."""
    out = pd.Series(pd.NaT, index=text.index, dtype="datetime64[ns, UTC]")
    for i, t in text.items():
        try:
            ts = pd.Timestamp(str(t).strip())
        except (ValueError, TypeError):
            continue
        if ts is pd.NaT:
            continue
        out[i] = (ts.tz_localize(tz) if ts.tzinfo is None else ts).tz_convert("UTC")
    return out


def _parse_quality(text: str) -> int | None:
    t = str(text).strip().lower()
    if t == "":
        return int(Quality.GOOD)
    if t in ("0", "1", "2"):
        return int(t)
    try:
        q = Quality.from_text(t)
    except ValueError:
        return None
    return None if q is Quality.STALE else int(q)


def parse_table(raw: pd.DataFrame, park: Park, tz: str = "Asia/Shanghai") -> pd.DataFrame:
    """Validate a table read by :func:`read_table` (pure) -> long frame ``tag, ts, value, quality``.

    Raises
    ------
    ImportFileError
        listing every bad cell (up to 50) as ``line N, column: reason``.
    """
    df = _to_long(_rename(raw))
    points = {point_tag(d.id, p.id): p for _e, d, p in park.iter_points()}
    ts = _parse_ts(df["ts"], tz)
    value = pd.to_numeric(df["value"].astype(str).str.strip(), errors="coerce")
    quality = df["quality"].map(_parse_quality)
    problems = []
    for row, t, v, q in zip(df.itertuples(index=False), ts, value, quality):
        where = f"line {row.line}"
        if row.tag not in points:
            problems.append((f"{where}, tag", row.tag, f"unknown point {row.tag!r} (not in the park model)"))
            continue
        if t is pd.NaT:
            problems.append((f"{where}, ts", row.ts, f"not a time: {row.ts!r}"))
        if not np.isfinite(v):
            problems.append((f"{where}, {row.tag}", row.value, f"not a number: {row.value!r}"))
        elif (why := points[row.tag].limit_violation(v)) is not None:
            problems.append((f"{where}, {row.tag}", v, why))
        if q is None or q != q:
            problems.append((f"{where}, quality", row.quality, f"quality must be good/uncertain/bad or 0/1/2: {row.quality!r}"))
        if len(problems) >= MAX_PROBLEMS:
            break
    if problems:
        raise ImportFileError(problems)
    return pd.DataFrame({"tag": df["tag"].to_numpy(), "ts": ts.reset_index(drop=True),
                         "value": value.to_numpy(dtype=float), "quality": quality.to_numpy(dtype="int16")})


def import_file(engine: Engine, path: Path | str, park: Park, *, tz: str = "Asia/Shanghai",
                overwrite: bool = False) -> int:
    """Read, validate and store one file in one transaction; returns the rows written.

    ``overwrite=False`` keeps a stored value where the file's quality is worse (as the gateway does);
    ``overwrite=True`` lets the file correct stored values whatever their quality.
    """
    rows = parse_table(read_table(path), park, tz)
    return write_measurements(engine, rows, replace="always" if overwrite else "unless_worse")
