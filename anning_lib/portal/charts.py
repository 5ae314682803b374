"""The big screen's live charts, drawn once per session and updated in place.

HoloViews (and hvplot) build every chart of the analysis pages; a live chart that HoloViews re-renders every 5 s
costs about 80 ms of server CPU per refresh and viewer (measured: 10 open overviews took 16 % of a core). These
two charts are plain Bokeh figures on a ``ColumnDataSource``: a refresh replaces the source's columns (a few
kilobytes to the browser, about 1 ms), and colours follow the data in the browser through a colour mapper.
"""

from __future__ import annotations

import math

import pandas as pd
from bokeh.models import ColorBar, ColumnDataSource, HoverTool, LinearColorMapper
from bokeh.palettes import Category20, YlOrRd9
from bokeh.plotting import figure
from bokeh.transform import factor_cmap

BAR_COLOR = "#11698e"


def load_bars(data: pd.DataFrame, title: str) -> tuple[figure, ColumnDataSource]:
    """Horizontal bars of ``data`` (columns ``label``, ``MW``; drawn bottom-up in the given order)."""
    src = ColumnDataSource({"label": list(data["label"]), "MW": list(data["MW"].fillna(0.0))})
    fig = figure(y_range=list(data["label"]), height=max(260, 22 * len(data) + 60), sizing_mode="stretch_width",
                 title=title, toolbar_location=None, x_axis_label="MW")
    fig.hbar(y="label", right="MW", height=0.7, source=src, color=BAR_COLOR)
    fig.add_tools(HoverTool(tooltips=[("", "@label"), ("MW", "@MW{0,0.0}")]))
    fig.x_range.start = 0
    return fig, src


def update_bars(fig: figure, src: ColumnDataSource, data: pd.DataFrame) -> None:
    """New values (and order) for :func:`load_bars`."""
    fig.y_range.factors = list(data["label"])
    src.data = {"label": list(data["label"]), "MW": list(data["MW"].fillna(0.0))}


def _finite_max(values) -> float:
    vals = [v for v in values if v is not None and not math.isnan(v)]
    return max(vals) if vals else 1.0


def plan_map(polys: list[dict], title: str, public: bool) -> tuple[figure, ColumnDataSource]:
    """Building footprints (:func:`anning_lib.portal.plan.footprints`) coloured by their enterprise's load, or,
    for a public screen (``public``), by enterprise only."""
    src = ColumnDataSource(_plan_columns(polys))
    fig = figure(height=360, sizing_mode="stretch_width", match_aspect=True, title=title, toolbar_location=None,
                 x_axis_type=None, y_axis_type=None)
    fig.grid.visible = False
    if public:
        ids = sorted({p["enterprise_id"] for p in polys})
        fill = factor_cmap("enterprise_id", Category20[20][:max(3, len(ids))], ids)
    else:
        mapper = LinearColorMapper(palette=list(reversed(YlOrRd9)), low=0, high=_finite_max(src.data["load_kw"]),
                                   nan_color="#cccccc")
        fill = {"field": "load_kw", "transform": mapper}
        fig.add_layout(ColorBar(color_mapper=mapper, title="kW", width=10), "right")
    fig.patches("x", "y", source=src, fill_color=fill, line_color="#0f2a3d", line_width=0.8)
    tips = [("", "@enterprise"), ("", "@name")] + ([] if public else [("kW", "@load_kw{0,0}")])
    fig.add_tools(HoverTool(tooltips=tips))
    return fig, src


def _plan_columns(polys: list[dict]) -> dict:
    keys = ("x", "y", "enterprise_id", "enterprise", "name", "load_kw")
    return {k: [p[k] for p in polys] for k in keys}


def update_plan(fig: figure, src: ColumnDataSource, polys: list[dict]) -> None:
    """New loads for :func:`plan_map` (the colour scale follows the largest)."""
    src.data = _plan_columns(polys)
    for r in fig.right:
        if isinstance(r, ColorBar):
            r.color_mapper.high = _finite_max(src.data["load_kw"])
