"""Activity data from a CSV or Excel template: read, validate every row, store all of it or nothing.

The template (``data/templates/activity_template.csv``, written by :func:`write_template`) has one header line;
headers are case-insensitive and the Chinese headers are understood:

==============  ======  ==========================================================================================
column          中文     content
==============  ======  ==========================================================================================
enterprise_id   企业     an enterprise of the park model (``E01``)
month           月份     the local month (Asia/Shanghai) ``YYYY-MM``; ``YYYY/MM``, ``YYYY年MM月`` and the first day of
                        the month as Excel stores a typed ``2026-10`` (``2026-10-01 00:00:00``) are also read
kind            类别     one of :data:`~anning_lib.carbon.accounting.KINDS` (Chinese: 燃料 过程 电力 热力 绿证 绿电 光伏自用
                        范围三 产量 产值)
item            项目     fuel key (``diesel``), process material key (``limestone``), scope 3 factor key
                        (``freight_rail``) or heat factor key (``purchased_heat``, the default); for the other kinds a
                        free label (default: the kind's usual item, e.g. ``electricity``, ``product``)
amount          数量     a number ≥ 0 (``1,234.5`` with thousands separators is read too)
unit            单位     see below
source          来源     optional: the document the number comes from; default ``imported <file name> line N``
==============  ======  ==========================================================================================

Columns ``note``/``备注`` are ignored; any other column is refused (a misspelt header would otherwise be lost).

Units by kind: ``fuel`` the fuel's basis unit dimension (a mass like t for diesel, a gas volume like Nm3, m3 or
10^4 Nm3 for natural gas) or its heat in joules (GJ, TJ); an energy in watt-hours (kWh, MWh) is refused for a fuel,
since it is almost always electricity put on the wrong row, and the guidelines state fuel heat in GJ. ``process``
and ``production`` a mass; ``electricity``, ``green_certificate``, ``green_contract``, ``pv_self_use`` an energy;
``heat`` an energy (GJ): steam in t must be converted to GJ first (the workbench uses 2.69 GJ/t for 1.0 MPa
saturated steam over 20 °C feed water, ``data/carriers.yaml``) and is refused here; ``scope3`` the factor's activity
unit (t*km for freight, t for materials); ``output_value`` only ``10^4 CNY`` (万元), stored as ``10^4 CNY``;
``cems`` a CO2 mass (tCO2) or t as the meters write it. ``electricity`` is the purchased amount and must not be
negative in a file either.

One row is one activity of one enterprise in one local month; two rows with the same enterprise, kind, item and
month are refused. Every row is checked before anything is written and all problems (up to 50) are reported with
their line (header = line 1), column and value; one bad row refuses the whole file. Storing is an upsert on
(enterprise, kind, item, month), so importing a corrected file again replaces the earlier values.

Imported records are *added* to what the meters measure when an account is computed
(:func:`anning_lib.carbon.compute.compute_enterprise`): import only what the meters do not measure (purchased fuels
without a gas meter, process materials, heat, green instruments, scope 3, output value).
"""

from __future__ import annotations

import csv
import math
import re
from collections.abc import Iterable
from pathlib import Path

import pandas as pd
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from anning_lib.carbon import units
from anning_lib.carbon.accounting import KINDS, METERED_KINDS
from anning_lib.carbon.factors import FactorSet
from anning_lib.carbon.records import check_record, month_bounds, save_activities
from anning_lib.errors import CarbonError, ImportFileError
from anning_lib.ingest.tablefile import MAX_PROBLEMS, read_table

TEMPLATE_COLUMNS = ("enterprise_id", "month", "kind", "item", "amount", "unit", "source")
"""Columns of the template, in order; ``source`` is optional."""
REQUIRED_COLUMNS = TEMPLATE_COLUMNS[:6]
CHINESE_HEADERS = {"enterprise_id": "企业", "month": "月份", "kind": "类别", "item": "项目", "amount": "数量",
                   "unit": "单位", "source": "来源"}
ALIASES = {**{c: c for c in TEMPLATE_COLUMNS}, **{zh: c for c, zh in CHINESE_HEADERS.items()},
           "enterprise": "enterprise_id", "企业编号": "enterprise_id"}
IGNORED_COLUMNS = ("note", "notes", "备注")
KIND_ALIASES = {"燃料": "fuel", "还原剂": "reductant", "过程": "process", "电力": "electricity", "热力": "heat", "绿证": "green_certificate",
                "绿电": "green_contract", "光伏自用": "pv_self_use", "范围三": "scope3", "产量": "production",
                "产值": "output_value"}
DEFAULT_ITEMS = {"heat": "purchased_heat", "electricity": "electricity", "green_certificate": "green_certificate",
                 "green_contract": "green_contract", "pv_self_use": "electricity", "production": "product",
                 "output_value": "output_value", "cems": "co2"}
OUTPUT_VALUE_UNIT = "10^4 CNY"
_OUTPUT_VALUE_SPELLINGS = ("10^4cny", "万元")
_TARGET_UNITS = {"process": ("t",), "production": ("t",), "electricity": ("MWh",), "green_certificate": ("MWh",),
                 "green_contract": ("MWh",), "pv_self_use": ("MWh",), "heat": ("GJ",), "cems": ("tCO2", "t")}
_MAX_LEN = {"item": 64, "unit": 20, "source": 64}  # column widths of ``activity_data``
_MONTH = re.compile(r"^(\d{4})\s*(?:-|/|年)\s*(\d{1,2})\s*月?$")
_FIRST_OF_MONTH = re.compile(r"^(\d{4})-(\d{2})-01(?:[ T]00:00(?::00)?)?$")
_THOUSANDS = re.compile(r"^[+-]?\d{1,3}(?:,\d{3})+(?:\.\d*)?$")

TEMPLATE_ROWS = (
    ("E01", "2026-10", "fuel", "diesel", "12.5", "t", "fuel purchase ledger, invoice 2026-10-031"),
    ("E01", "2026-10", "process", "limestone", "850", "t", "raw-material ledger 2026-10"),
    ("E01", "2026-10", "heat", "purchased_heat", "1200", "GJ", "heat supplier bill 2026-10"),
    ("E01", "2026-10", "green_certificate", "GEC 2026-10 batch 1", "500", "MWh", "green certificate register"),
    ("E01", "2026-10", "output_value", "output_value", "3200", OUTPUT_VALUE_UNIT, "finance monthly report"),
    ("E01", "2026-10", "scope3", "freight_road_hgv_diesel", "185000", "t*km", ""),
)
"""Illustrative rows of the template (the last one leaves ``source`` empty: the default is used)."""


def write_template(path: Path | str, *, chinese_headers: bool = False) -> Path:
    """Write the import template with :data:`TEMPLATE_ROWS` as a CSV in UTF-8 with BOM (so Excel shows Chinese).

    Parameters
    ----------
    path : Path or str
        The file to write (its folder is created).
    chinese_headers : bool
        Write the header line in Chinese (企业, 月份, ...) instead of the column names.

    Returns
    -------
    Path
        ``path``.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    header = [CHINESE_HEADERS[c] if chinese_headers else c for c in TEMPLATE_COLUMNS]
    with open(path, "w", encoding="utf-8-sig", newline="") as fh:
        writer = csv.writer(fh, lineterminator="\n")
        writer.writerow(header)
        writer.writerows(TEMPLATE_ROWS)
    return path


def read_activity_table(path: Path | str) -> pd.DataFrame:
    """Read the file as text cells (:func:`anning_lib.ingest.tablefile.read_table`: CSV in UTF-8 or GB18030,
    blank lines kept for line numbers, or Excel)."""
    return read_table(path)


def _text(value: object) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ""
    return str(value).strip()


def _columns(raw: pd.DataFrame) -> pd.DataFrame:
    """Rename the headers to :data:`TEMPLATE_COLUMNS` and check them; -> text cells of the template columns."""
    problems, names = [], {}
    for col in raw.columns:
        text = _text(col)
        name = ALIASES.get(text.lower(), text)
        blank = text.startswith("Unnamed:") and all(_text(v) == "" for v in raw[col])
        if name in names:
            problems.append(("line 1, header", text, f"two columns mean {name}: {names[name]!r} and {text!r}"))
        elif name not in TEMPLATE_COLUMNS and name.lower() not in IGNORED_COLUMNS and not blank:
            problems.append(("line 1, header", text, f"unknown column {text!r} (expected {', '.join(TEMPLATE_COLUMNS)}"
                                                     f" or their Chinese names; notes go in a column 'note')"))
        names.setdefault(name, text)
    missing = [c for c in REQUIRED_COLUMNS if c not in names]
    if missing:
        problems.append(("line 1, header", list(map(str, raw.columns)), f"missing column(s) {', '.join(missing)}"))
    if problems:
        raise ImportFileError(problems)
    df = pd.DataFrame({c: [_text(v) for v in raw[names[c]]] if c in names else [""] * len(raw)
                       for c in TEMPLATE_COLUMNS})
    return df.assign(line=range(2, len(raw) + 2))


def _month(text: str) -> str | None:
    """``"2026-10"``, ``"2026/10"``, ``"2026年10月"``, ``"2026-10-01 00:00:00"`` -> ``"2026-10"``; else None."""
    m = _MONTH.match(text) or _FIRST_OF_MONTH.match(text)
    if not m or not 1 <= int(m.group(2)) <= 12:
        return None
    return f"{m.group(1)}-{int(m.group(2)):02d}"


def _amount(text: str) -> float | None:
    """A finite number from text (thousands separators allowed); None if it is not one."""
    if _THOUSANDS.match(text):
        text = text.replace(",", "")
    try:
        value = float(text)
    except ValueError:
        return None
    return value if math.isfinite(value) else None


def _unit_problem(kind: str, item: str, unit: str, factor) -> str | None:
    """Why ``unit`` does not fit ``kind``/``item`` (``factor``: its factor, for fuel and scope 3); None if it fits."""
    if not unit:
        return f"unit is empty: write the unit of the amount (e.g. t, Nm3, GJ, MWh, t*km, {OUTPUT_VALUE_UNIT})"
    if kind == "output_value":
        if re.sub(r"\s+", "", unit).lower() in _OUTPUT_VALUE_SPELLINGS:
            return None
        return f"output value must be in {OUTPUT_VALUE_UNIT} (万元), got {unit!r}"
    if len(unit) > _MAX_LEN["unit"]:
        return f"unit is longer than {_MAX_LEN['unit']} characters"
    try:
        if kind in ("fuel", "reductant"):
            if units.is_compatible(unit, "GJ") and "watt" in str(units.parse_unit(unit)):
                return (f"unit '{unit}' does not fit fuel {item}: state the fuel's heat in GJ (or TJ, MJ) or the "
                        f"amount in {factor.basis_unit}; an electrical energy unit belongs on an electricity row")
            factor.to_basis(1.0, unit)
            return None
        targets = (factor.per_unit,) if kind == "scope3" else _TARGET_UNITS[kind]
        if any(units.is_compatible(unit, t) for t in targets):
            return None
    except CarbonError as exc:
        return str(exc)
    hint = ""
    if kind == "heat" and units.is_compatible(unit, "t"):
        hint = ("; convert steam to heat first (e.g. 2.69 GJ/t for 1.0 MPa saturated steam over 20 °C feed water, "
                "data/carriers.yaml)")
    return f"unit '{unit}' does not fit {kind} {item} (expects {units.describe(targets[0])}){hint}"


def _item_and_unit(kind: str, text: str, unit: str, fs: FactorSet) -> tuple[str, list[tuple[str, str, str]]]:
    """The item of a row (its default if empty) and ``(column, value, reason)`` problems of item and unit."""
    if kind in METERED_KINDS:
        return text, [("kind", kind, f"{kind} is measured by the enterprise's meters; an entered record would count "
                                     f"it twice (enter green_certificate or green_contract for green electricity)")]
    lookup = {"fuel": fs.fuel, "reductant": fs.fuel, "process": fs.process, "scope3": fs.scope3,
              "heat": fs.heat}.get(kind)
    item = (text.lower() if lookup else text) or DEFAULT_ITEMS.get(kind, "")
    if not item:
        return item, [("item", text, f"{kind} needs an item: the key of its factor (e.g. diesel, limestone, "
                                     f"freight_rail)")]
    if len(item) > _MAX_LEN["item"]:
        return item, [("item", text, f"item is longer than {_MAX_LEN['item']} characters")]
    factor = None
    if lookup is not None:
        try:
            factor = lookup(item)
        except CarbonError as exc:
            return item, [("item", text, f"{kind}: {exc}")]
    reason = _unit_problem(kind, item, unit, factor)
    return item, [("unit", unit, reason)] if reason else []


def _known(ids: Iterable[str]) -> str:
    ids = sorted(ids)
    return ", ".join(ids[:20]) + (", ..." if len(ids) > 20 else "") if ids else "none"


def _default_source(file_name: str, line: int) -> str:
    """``imported <file name> line N``, the name shortened so that the whole fits the 64-character column."""
    tail = f" line {line}"
    room = _MAX_LEN["source"] - len("imported ") - len(tail)
    name = file_name if len(file_name) <= room else file_name[:room - 1] + "…"
    return f"imported {name}{tail}"


def _parse_row(row, fs: FactorSet, enterprises: set[str], file_name: str,
               tz: str) -> tuple[dict | None, tuple | None, list[tuple[str, object, str]]]:
    """One template row -> (record or None, duplicate key or None, problems)."""
    where, problems = f"line {row.line}", []
    if row.enterprise_id not in enterprises:
        problems.append(("enterprise_id", row.enterprise_id,
                         f"unknown enterprise {row.enterprise_id!r} (known: {_known(enterprises)})"))
    month = _month(row.month)
    if month is None:
        problems.append(("month", row.month, f"month must be YYYY-MM (e.g. 2026-10), got {row.month!r}"))
    kind = KIND_ALIASES.get(row.kind, row.kind.lower())
    item = None
    if kind not in KINDS:
        problems.append(("kind", row.kind, f"unknown kind {row.kind!r} (one of {', '.join(KINDS)})"))
    else:
        item, found = _item_and_unit(kind, row.item, row.unit, fs)
        problems += found
    amount = _amount(row.amount)
    if amount is None:
        problems.append(("amount", row.amount, f"amount must be a number, got {row.amount!r}"))
    elif amount < 0:
        problems.append(("amount", row.amount, f"amount must not be negative, got {amount:g}"))
    source = row.source or _default_source(file_name, row.line)
    if len(source) > _MAX_LEN["source"]:
        problems.append(("source", row.source, f"source is longer than {_MAX_LEN['source']} characters"))
    key = (row.enterprise_id, kind, item, month) if item and month and row.enterprise_id in enterprises else None
    problems = [(f"{where}, {col}", value, reason) for col, value, reason in problems]
    if problems:
        return None, key, problems
    start, end = month_bounds(month, tz)
    unit = OUTPUT_VALUE_UNIT if kind == "output_value" else row.unit
    record = {"enterprise_id": row.enterprise_id, "kind": kind, "item": item, "amount": amount, "unit": unit,
              "period_start": start, "period_end": end, "source": source}
    try:
        check_record(record)
    except CarbonError as exc:  # pragma: no cover - the checks above are stricter
        return None, key, [(where, row.amount, str(exc))]
    return record, key, []


def parse_activity_table(raw: pd.DataFrame, fs: FactorSet, enterprises: set[str], *,
                         file_name: str = "activity file", tz: str = "Asia/Shanghai") -> list[dict]:
    """Validate a table read by :func:`read_activity_table` (pure) -> records for
    :func:`~anning_lib.carbon.records.save_activities`.

    Parameters
    ----------
    raw : DataFrame
        The file's cells; row ``i`` is file line ``i + 2``. Rows with every template cell empty are skipped.
    fs : FactorSet
        Factors that fuel, process, scope 3 and heat items must name.
    enterprises : set of str
        The enterprise ids a row may name.
    file_name : str
        Named in the default ``source`` (``imported <file_name> line N``).
    tz : str
        Time zone of the months: ``period_start``/``period_end`` are the local month's bounds as UTC instants.

    Returns
    -------
    list of dict
        ``enterprise_id, kind, item, amount, unit, period_start, period_end, source`` per row, in file order.

    Raises
    ------
    ImportFileError
        listing every problem (up to 50) as ``(line N, column, value, reason)``: header, unknown enterprise, bad
        month, unknown kind, unknown item, unit that does not fit the item, amount not a number or negative,
        duplicate (enterprise, kind, item, month); or no rows at all.
    """
    df = _columns(raw)
    records, problems, seen = [], [], {}
    for row in df.itertuples(index=False):
        if not any(getattr(row, c) for c in TEMPLATE_COLUMNS):
            continue
        record, key, found = _parse_row(row, fs, set(enterprises), file_name, tz)
        problems += found
        if key is not None and key in seen:
            problems.append((f"line {row.line}", " / ".join(key), f"duplicate of line {seen[key]} (same enterprise, "
                                                                  f"kind, item and month)"))
        elif key is not None:
            seen[key] = row.line
        if record is not None:
            records.append(record)
        if len(problems) >= MAX_PROBLEMS:
            break
    if problems:
        raise ImportFileError(problems[:MAX_PROBLEMS])
    if not records:
        raise ImportFileError([("line 2", "", "no activity rows below the header")])
    return records


def _enterprise_ids(engine: Engine, park_or_enterprise_ids) -> set[str]:
    if park_or_enterprise_ids is None:
        from anning_lib.store.schema import TABLES

        with engine.connect() as conn:
            return set(conn.execute(sa.select(TABLES["enterprise"].c.id)).scalars())
    if hasattr(park_or_enterprise_ids, "enterprises"):
        return {e.id for e in park_or_enterprise_ids.enterprises}
    return {str(e) for e in park_or_enterprise_ids}


def import_activity_file(engine: Engine, path: Path | str, fs: FactorSet, park_or_enterprise_ids=None, *,
                         tz: str = "Asia/Shanghai") -> int:
    """Read, validate and store one activity file, all or nothing; returns the number of records stored.

    Parameters
    ----------
    engine : Engine
        A migrated store.
    path : Path or str
        ``.csv`` or ``.xlsx`` in the layout of :data:`TEMPLATE_COLUMNS`.
    fs : FactorSet
        The factor set items are checked against.
    park_or_enterprise_ids : Park or iterable of str, optional
        The enterprises rows may name; default the enterprises of the store.
    tz : str
        Time zone of the months.

    Raises
    ------
    ImportFileError
        Any bad row (nothing is stored); ``source`` is the file.
    """
    path = Path(path)
    try:
        records = parse_activity_table(read_activity_table(path), fs, _enterprise_ids(engine, park_or_enterprise_ids),
                                       file_name=path.name, tz=tz)
    except ImportFileError as exc:
        raise ImportFileError(exc.problems, source=str(path)) from None
    return save_activities(engine, records)
