"""A custom report's table (:func:`anning_lib.reports.custom.run`) as a chart and as CSV, XLSX and PDF files.

* CSV: the table as it is (column names are the metric ids with their units), UTF-8 with a byte-order mark so
  that Excel opens Chinese names; times ISO 8601 with their offset (``2026-03-02 00:00:00+08:00``).
* XLSX (openpyxl): a sheet with the table (times in the park's local time without offset: Excel has no time
  zones; the definition sheet names the zone) and a sheet with the definition.
* PDF: the park's letterhead (:mod:`anning_lib.reports.pdf`), the definition, the chart and the table with
  translated headers and units, at most :data:`MAX_PDF_ROWS` rows (the full table is in CSV and XLSX).
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from zoneinfo import ZoneInfo

import numpy as np
import pandas as pd

from anning_lib.auth.access import Actor
from anning_lib.errors import ReportError
from anning_lib.i18n import t, word
from anning_lib.reports.custom import KEY_COLUMNS, METRICS, Definition, parse_definition

FORMATS = ("csv", "xlsx", "pdf")
MAX_PDF_ROWS = 500
"""Rows of the table printed in a PDF; a longer report says so and points to CSV/XLSX."""
MAX_XLSX_ROWS = 1_048_575
"""Data rows an Excel sheet holds (1,048,576 rows with the header)."""
MAX_SERIES = 8
"""Groups drawn per chart panel (the largest by the metric's total); the others are named as a count."""
_PDF_STYLE = ("<style>table.custom-report td:not(.num) { white-space: nowrap; } "
              "table.custom-report th.num { white-space: normal; } table.custom-report th { white-space: nowrap; } "
              "table.custom-definition td:first-child { white-space: nowrap; width: 25mm; }</style>")
"""Text cells of the report table on one line (names are short), long metric headers wrapped."""
_PERIOD_FORMAT = {"hour": "%Y-%m-%d %H:%M", "day": "%Y-%m-%d", "week": "%Y-%m-%d", "month": "%Y-%m"}


def metric_title(metric: str, lang: str = "zh_CN") -> str:
    """``用电量 [kWh]``: the metric's name in ``lang`` and its unit."""
    return f"{t(f'custom_metric_{metric}', lang)} [{METRICS[metric].unit}]"


def group_labels(df: pd.DataFrame, dimension: str, lang: str = "zh_CN") -> pd.Series:
    """How each row's group is named in a legend: ``E01 钢厂``, the sector's word, ``E01-M0 总表``."""
    if dimension == "sector":
        return df["sector"].map(lambda s: word("sector", s, lang))
    key = df["enterprise_id"] if dimension == "enterprise" else df["device_id"]
    return key.astype(str) + " " + df["name"].astype(str)


def chart(df: pd.DataFrame, definition: Definition | dict | str, lang: str = "zh_CN"):
    """A matplotlib Figure: one panel per metric, one line (or bar group, up to 12 periods) per group.

    Each panel draws the :data:`MAX_SERIES` groups with the largest total of its metric; the legend counts the
    others. Times on the x axis are local (the table's ``period_start``).
    """
    import matplotlib.pyplot as plt

    from anning_lib.reports.html import use_cjk_font

    use_cjk_font()
    d = parse_definition(definition)
    fig, axes = plt.subplots(len(d.metrics), 1, figsize=(10, 1.0 + 2.8 * len(d.metrics)), squeeze=False)
    fig.suptitle(t("custom_chart_title", lang, name=d.name))
    for ax, metric in zip(axes[:, 0], d.metrics):
        ax.set_ylabel(metric_title(metric, lang), fontsize=8)
        if df.empty or df[metric].isna().all():
            ax.text(0.5, 0.5, t("custom_no_data", lang), ha="center", va="center", transform=ax.transAxes)
            continue
        _panel(ax, df, d, metric, lang)
    fig.tight_layout()
    return fig


def _panel(ax, df: pd.DataFrame, d: Definition, metric: str, lang: str) -> None:
    wide = (df.assign(group=group_labels(df, d.dimension, lang), period=df["period_start"].dt.tz_localize(None))
            .pivot(index="period", columns="group", values=metric))
    order = wide.abs().sum().sort_values(ascending=False).index
    shown, hidden = wide[order[:MAX_SERIES]], len(order) - MAX_SERIES
    if len(shown) <= 12:
        shown.index = shown.index.strftime(_PERIOD_FORMAT[d.granularity])
        shown.plot(kind="bar", ax=ax, rot=0 if len(shown) <= 6 else 30, width=0.8)
    else:
        shown.plot(ax=ax, marker="o" if len(shown) <= 60 else None, markersize=3, linewidth=1.2)
    ax.set_xlabel("")
    ax.grid(axis="y", alpha=0.3)
    ax.legend(fontsize=7, loc="best", title=t("custom_others", lang, n=hidden) if hidden > 0 else None,
              title_fontsize=7)


# ============================================================================================ export
def export(df: pd.DataFrame, definition: Definition | dict | str, fmt: str, path: Path | str, *,
           lang: str = "zh_CN", actor: Actor | None = None, tz: str = "Asia/Shanghai") -> Path:
    """Write a custom report's table (:func:`~anning_lib.reports.custom.run`) to ``path``; returns the path.

    Parameters
    ----------
    fmt : {"csv", "xlsx", "pdf"}
        module docstring.
    lang : {"zh_CN", "en"}
        language of the XLSX definition sheet and of the PDF.
    actor : Actor, optional
        who produced it, named in the definition sheet and the PDF's colophon.
    tz : str
        the time zone of the table's times, named in the definition sheet.

    Raises
    ------
    ReportError
        for an unknown format (naming it) or a bad definition.
    """
    if fmt not in FORMATS:
        raise ReportError(f"fmt: unknown export format {fmt!r} (one of {', '.join(FORMATS)})")
    d = parse_definition(definition)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if fmt == "csv":
        df.assign(**{c: _iso(df[c]) for c in df.columns if isinstance(df[c].dtype, pd.DatetimeTZDtype)}).to_csv(
            path, index=False, encoding="utf-8-sig")
    elif fmt == "xlsx":
        _xlsx(df, d, path, lang, actor, tz)
    else:
        _pdf(df, d, path, lang, actor, tz)
    return path


def _who(actor: Actor | None) -> str:
    return (actor.username or actor.describe()) if actor is not None else "system"


def definition_rows(d: Definition, lang: str, *, actor: Actor | None = None, tz: str = "Asia/Shanghai",
                    rows: int | None = None) -> list[tuple[str, object]]:
    """``(label, value)`` pairs describing a definition in ``lang`` (the XLSX sheet, the PDF's summary)."""
    f = d.filters
    filters = "; ".join(f"{k}: {', '.join(v)}" for k, v in (
        ("enterprise_ids", f.enterprise_ids), ("sectors", [word("sector", s, lang) for s in f.sectors or []]),
        ("device_types", [word("custom_type", x, lang) for x in f.device_types or []])) if v)
    out = [(t("custom_def_name", lang), d.name),
           (t("custom_def_metrics", lang), ", ".join(metric_title(m, lang) for m in d.metrics)),
           (t("custom_def_dimension", lang), t(f"custom_dimension_{d.dimension}", lang)),
           (t("custom_def_period", lang), t("custom_def_period_value", lang, start=d.start, end=d.end)),
           (t("custom_def_granularity", lang), t(f"custom_granularity_{d.granularity}", lang)),
           (t("custom_def_filters", lang), filters or t("custom_filters_none", lang)),
           (t("custom_def_timezone", lang), tz),
           (t("custom_def_produced", lang), f"{_who(actor)}, {dt.datetime.now(ZoneInfo(tz)):%Y-%m-%d %H:%M}")]
    return out + ([(t("custom_def_rows", lang), rows)] if rows is not None else [])


def _iso(col: pd.Series) -> pd.Series:
    """Aware times as ISO 8601 text with their offset, ``2026-03-02 00:00:00+08:00``, vectorised (pandas formats
    aware times one by one: 20 s for the 1.2 million times of a year of hourly rows of 70 devices)."""
    local = col.dt.tz_localize(None)
    offset = (local - col.dt.tz_convert("UTC").dt.tz_localize(None)).dt.total_seconds().astype("int64")
    signs = {s: f"{'+' if s >= 0 else '-'}{abs(s) // 3600:02d}:{abs(s) % 3600 // 60:02d}" for s in offset.unique()}
    text = np.char.replace(np.datetime_as_string(local.to_numpy("datetime64[s]"), unit="s"), "T", " ")
    return pd.Series(text, index=col.index, dtype=object) + offset.map(signs)


def _naive(df: pd.DataFrame) -> pd.DataFrame:
    """Aware time columns as local times without offset (Excel has no time zones)."""
    out = df.copy()
    for col in out.columns:
        if isinstance(out[col].dtype, pd.DatetimeTZDtype):
            out[col] = out[col].dt.tz_localize(None)
    return out


def _xlsx(df: pd.DataFrame, d: Definition, path: Path, lang: str, actor: Actor | None, tz: str) -> None:
    """openpyxl in write-only mode (about 80,000 cells/s here: a year of hourly rows of 70 devices takes a minute
    or two; CSV is the format for tables that long)."""
    from openpyxl import Workbook
    from openpyxl.utils import get_column_letter

    if len(df) > MAX_XLSX_ROWS:
        raise ReportError(f"fmt: {len(df):,} rows do not fit in an Excel sheet (at most {MAX_XLSX_ROWS:,}); "
                          "export CSV, or choose a coarser granularity")
    wb = Workbook(write_only=True)
    sheet = wb.create_sheet(t("custom_sheet_data", lang))
    sheet.freeze_panes = "A2"
    for i, col in enumerate(df.columns, start=1):
        sheet.column_dimensions[get_column_letter(i)].width = 20 if col.startswith("period") else 14
    sheet.append(list(df.columns))
    cells = _naive(df).astype(object)
    for values in cells.where(cells.notna(), None).itertuples(index=False, name=None):
        sheet.append(values)
    about = wb.create_sheet(t("custom_sheet_definition", lang))
    about.column_dimensions["A"].width, about.column_dimensions["B"].width = 16, 80
    about.append([t("custom_def_field", lang), t("custom_def_value", lang)])
    for label, value in definition_rows(d, lang, actor=actor, tz=tz, rows=len(df)):
        about.append([label, _literal(about, value)])
    wb.save(path)


def _literal(sheet, value: object) -> object:
    """A text typed by a user (the report's name) as a text cell: openpyxl would store ``=...`` as a formula."""
    from openpyxl.cell import WriteOnlyCell

    if not isinstance(value, str) or not value.startswith("="):
        return value
    cell = WriteOnlyCell(sheet, value)
    cell.data_type = "s"
    return cell


def pdf_table(df: pd.DataFrame, d: Definition, lang: str) -> tuple[pd.DataFrame, dict[str, str], dict[str, int]]:
    """The table as printed: periods as text, words translated, coverage in %; with headers and decimals."""
    out = df.drop(columns=["period_end"]).copy()
    out["period_start"] = out["period_start"].dt.strftime(_PERIOD_FORMAT[d.granularity])
    if "sector" in out:
        out["sector"] = [word("sector", s, lang) for s in out["sector"]]
    if "device_type" in out:
        out["device_type"] = [word("custom_type", s, lang) for s in out["device_type"]]
    if "enterprise_id" in out:
        out["enterprise_id"] = out["enterprise_id"].astype(object).where(out["enterprise_id"].notna(), "")
    titles = {c: t(f"custom_col_{c}", lang) for c in ("period_start", *KEY_COLUMNS[d.dimension])}
    titles.update({m: metric_title(m, lang) for m in d.metrics})
    decimals = {m: METRICS[m].decimals for m in d.metrics}
    if "coverage_frac" in out:
        out["coverage_frac"] = out["coverage_frac"] * 100.0
        titles["coverage_frac"], decimals["coverage_frac"] = f"{t('custom_col_coverage_frac', lang)} [%]", 0
    return out, titles, decimals


def _pdf(df: pd.DataFrame, d: Definition, path: Path, lang: str, actor: Actor | None, tz: str) -> None:
    from anning_lib.reports.html import figure, heading, note, table
    from anning_lib.reports.pdf import page_html, write_pdf

    shown, titles, decimals = pdf_table(df.head(MAX_PDF_ROWS), d, lang)
    about = pd.DataFrame(definition_rows(d, lang, actor=actor, tz=tz, rows=len(df)), columns=["k", "v"])
    parts = [_PDF_STYLE, heading(d.name, 1), table(about, titles={"k": t("custom_def_field", lang),
                                                                   "v": t("custom_def_value", lang)},
                                                   css_class="custom-definition")]
    parts.append(note(t("custom_note_method", lang)))
    parts.append(figure(chart(df, d, lang), alt=d.name))
    parts.append(table(shown, titles=titles, decimals=decimals, css_class="custom-report"))
    if len(df) > MAX_PDF_ROWS:
        parts.append(note(t("custom_pdf_truncated", lang, shown=MAX_PDF_ROWS, total=len(df))))
    colophon = t("custom_colophon", lang, who=_who(actor), at=f"{dt.datetime.now(ZoneInfo(tz)):%Y-%m-%d %H:%M}")
    write_pdf(page_html("".join(parts), f"{t('custom_title', lang)}: {d.name}", lang=lang, colophon=colophon), path)
