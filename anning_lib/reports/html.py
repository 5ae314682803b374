"""HTML pieces of a report body (pure): tables with number formats, key figures, notes, figures.

Report notebooks display these with ``IPython.display.HTML``; nbconvert keeps them as they are, and
:mod:`anning_lib.reports.pdf` prints them. Every text is escaped here; numbers are formatted with thousands
separators and a fixed number of decimals per column, so a number in the PDF reads back as the same number.
"""

from __future__ import annotations

import base64
import html
import io
import math
from collections.abc import Iterable, Mapping

import pandas as pd


def num(value: object, decimals: int = 2) -> str:
    """``1,234.57`` for 1234.5678 with 2 decimals; an en dash for None or NaN."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "–"
    return f"{float(value):,.{decimals}f}"


def pct(value: object, decimals: int = 1) -> str:
    """``+12.3%`` for 0.123; an en dash for None or NaN."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "–"
    return f"{100 * float(value):+,.{decimals}f}%"


def table(df: pd.DataFrame, *, titles: Mapping[str, str] | None = None, decimals: Mapping[str, int] | None = None,
          css_class: str = "", total_row: Mapping[str, object] | None = None) -> str:
    """An HTML table of ``df``'s columns (index left out: reset it first if it matters).

    Parameters
    ----------
    df : pandas.DataFrame
    titles : mapping, optional
        Column header per column name (default: the name).
    decimals : mapping, optional
        Decimals per numeric column (default 2); those cells are right-aligned (``class="num"``).
    css_class : str
        Extra class of the ``<table>`` (tests and styles find tables by it).
    total_row : mapping, optional
        A bold last row: value per column (missing columns empty).
    """
    titles, decimals = dict(titles or {}), dict(decimals or {})
    numeric = {c for c in df.columns if c in decimals or pd.api.types.is_numeric_dtype(df[c])}

    def cell(col, value, tag="td"):
        if col in numeric and value is not None and not isinstance(value, str):
            return f'<{tag} class="num">{num(value, decimals.get(col, 2))}</{tag}>'
        return f"<{tag}>{html.escape('' if value is None else str(value))}</{tag}>"

    head = "".join(f'<th{" class=num" if c in numeric else ""}>{html.escape(str(titles.get(c, c)))}</th>'
                   for c in df.columns)
    rows = ["<tr>" + "".join(cell(c, v) for c, v in zip(df.columns, r)) + "</tr>"
            for r in df.itertuples(index=False, name=None)]
    if total_row is not None:
        rows.append('<tr class="total">' + "".join(cell(c, total_row.get(c)) for c in df.columns) + "</tr>")
    cls = f' class="{html.escape(css_class)}"' if css_class else ""
    return f"<table{cls}><thead><tr>{head}</tr></thead><tbody>{''.join(rows)}</tbody></table>"


def kpis(items: Iterable[tuple[str, str]]) -> str:
    """Key figures as boxes: ``(label, formatted value)`` pairs."""
    boxes = "".join(f'<div class="kpi"><div class="v">{html.escape(v)}</div><div class="k">{html.escape(k)}</div>'
                    "</div>" for k, v in items)
    return f'<div class="kpis">{boxes}</div>'


def note(text: str) -> str:
    """A highlighted note (plain text)."""
    return f'<p class="note">{html.escape(text)}</p>'


def para(text: str, css_class: str = "") -> str:
    cls = f' class="{html.escape(css_class)}"' if css_class else ""
    return f"<p{cls}>{html.escape(text)}</p>"


def heading(text: str, level: int = 2) -> str:
    return f"<h{level}>{html.escape(text)}</h{level}>"


def figure(fig, *, dpi: int = 150, alt: str = "") -> str:
    """A matplotlib figure as an embedded PNG ``<img>`` (closes the figure)."""
    import matplotlib.pyplot as plt

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi, bbox_inches="tight")
    plt.close(fig)
    data = base64.b64encode(buf.getvalue()).decode()
    return f'<img src="data:image/png;base64,{data}" alt="{html.escape(alt)}">'


def use_cjk_font() -> None:
    """Matplotlib draws Chinese labels with WenQuanYi Zen Hei (Debian ``fonts-wqy-zenhei``) when installed."""
    import logging

    import matplotlib
    from matplotlib import font_manager

    logging.getLogger("matplotlib.font_manager").setLevel(logging.ERROR)   # "Failed to find font weight" noise

    names = {f.name for f in font_manager.fontManager.ttflist}
    for name in ("WenQuanYi Zen Hei", "Noto Sans CJK SC"):
        if name in names:
            matplotlib.rcParams["font.sans-serif"] = [name, *matplotlib.rcParams["font.sans-serif"]]
            matplotlib.rcParams["font.family"] = "sans-serif"
            matplotlib.rcParams["axes.unicode_minus"] = False
            return
