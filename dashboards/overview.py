"""园区总览 / Park overview: the big screen. Live park load, PV, storage, grid import, today's electricity and
emissions, active alarms, the park plan; refreshed from the store every 5 s (one shared snapshot per role)."""

import holoviews as hv
import hvplot.pandas  # noqa: F401  (registers .hvplot)
import pandas as pd
import panel as pn

from anning_lib.auth.access import allowed
from anning_lib.i18n import t
from anning_lib.portal import context
from anning_lib.portal.layout import fmt, shell, tile, tiles
from anning_lib.portal.live import alarm_count, snapshot
from anning_lib.portal.plan import footprints

hv.extension("bokeh", logo=False)
actor, lang = context.actor(), context.lang()
park = context.park()


def figures(s: dict) -> list:
    soc = None if s["bess_soc_frac"] is None else 100 * s["bess_soc_frac"]
    items = [tile(t("ov_load", lang), fmt(s["load_kw"] and s["load_kw"] / 1000, 1), "MW"),
             tile(t("ov_pv", lang), fmt(s["pv_kw"] and s["pv_kw"] / 1000, 1), "MW"),
             tile(t("ov_grid", lang), fmt(s["grid_import_kw"] and s["grid_import_kw"] / 1000, 1), "MW"),
             tile(t("ov_soc", lang), fmt(soc, 0), "%"),
             tile(t("ov_bess_p", lang), fmt(s["bess_p_kw"], 0), "kW"),
             tile(t("ov_today_e", lang), fmt(s["today_e_kwh"] / 1000, 1), "MWh"),
             tile(t("ov_today_co2", lang), fmt(s["today_co2_t"], 1), "tCO2"),
             tile(t("ov_intensity", lang), fmt(s["today_co2_t_per_mwh"], 3), "tCO2/MWh")]
    if allowed(actor, "page.alarms"):
        items.append(tile(t("ov_alarms", lang), fmt(alarm_count(context.engine(), actor)), ""))
    return items


def enterprise_bars(s: dict):
    rows = pd.DataFrame(s["enterprises"])
    if rows.empty:          # a visitor: park totals only
        return None
    rows["MW"] = rows["load_kw"] / 1000
    rows["label"] = rows["enterprise_id"] + " " + rows["name"]
    return rows.sort_values("MW").hvplot.barh(x="label", y="MW", height=max(260, 22 * len(rows)), responsive=True,
                                              title=t("ov_enterprises", lang), xlabel="", ylabel="MW",
                                              color="#11698e")


def plan(s: dict):
    polys = footprints(park, {r["enterprise_id"]: r["load_kw"] for r in s["enterprises"]})
    public = not s["enterprises"]
    el = hv.Polygons(polys, vdims=["enterprise", "name", "load_kw"] if not public else ["enterprise", "name"])
    opts = dict(responsive=True, aspect=1.6, min_height=220, xaxis=None, yaxis=None, line_color="#0f2a3d",
                tools=["hover"], title=t("ov_plan_public" if public else "ov_plan", lang))
    if public:
        return el.opts(color="enterprise", cmap="Category20", **opts)
    return el.opts(color="load_kw", cmap="YlOrRd", colorbar=True, clabel="kW", **opts)


state = snapshot(context.engine(), park, actor)
head = pn.pane.Markdown("", margin=(4, 16))
board = tiles(*figures(state))
bars = pn.pane.HoloViews(enterprise_bars(state), sizing_mode="stretch_width", visible=bool(state["enterprises"]))
plan_pane = pn.pane.HoloViews(plan(state), sizing_mode="stretch_width")
method = pn.pane.Markdown(t("ov_method", lang, factor=state["grid_factor_t_per_mwh"],
                            source=state["grid_factor_source"]), margin=(0, 16), styles={"font-size": "12px"})


def refresh():
    s = snapshot(context.engine(), park, actor)
    as_of = s["as_of"].strftime("%Y-%m-%d %H:%M:%S") if s["as_of"] is not None else None
    head.object = t("ov_as_of", lang, ts=as_of) if as_of else t("ov_no_data", lang)
    board.objects = figures(s)
    bars.object = enterprise_bars(s)


refresh()
pn.state.add_periodic_callback(refresh, period=5000)
shell("overview", actor, lang, head, board,
      pn.FlexBox(pn.Column(plan_pane, sizing_mode="stretch_width", min_width=340, styles={"flex": "1 1 480px"}),
                 pn.Column(bars, sizing_mode="stretch_width", min_width=340, styles={"flex": "1 1 420px"}),
                 flex_wrap="wrap", sizing_mode="stretch_width"),
      method).servable(title=t("page_overview", lang))
