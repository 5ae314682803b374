"""园区总览 / Park overview: the big screen. Live park load, PV, storage, grid import, today's electricity and
emissions, active alarms, the park plan; refreshed from the store every 5 s (one shared snapshot per role)."""

import pandas as pd
import panel as pn

from anning_lib.auth.access import allowed
from anning_lib.i18n import t
from anning_lib.portal import context
from anning_lib.portal.charts import load_bars, plan_map, update_bars, update_plan
from anning_lib.portal.layout import CSS, fmt, shell, tiles_html
from anning_lib.portal.live import alarm_count, snapshot
from anning_lib.portal.plan import footprints

actor, lang = context.actor(), context.lang()
park = context.park()


def figures(s: dict) -> str:
    soc = None if s["bess_soc_frac"] is None else 100 * s["bess_soc_frac"]
    items = [(t("ov_load", lang), fmt(s["load_kw"] and s["load_kw"] / 1000, 1), "MW"),
             (t("ov_pv", lang), fmt(s["pv_kw"] and s["pv_kw"] / 1000, 1), "MW"),
             (t("ov_grid", lang), fmt(s["grid_import_kw"] and s["grid_import_kw"] / 1000, 1), "MW"),
             (t("ov_soc", lang), fmt(soc, 0), "%"),
             (t("ov_bess_p", lang), fmt(s["bess_p_kw"], 0), "kW"),
             (t("ov_today_e", lang), fmt(s["today_e_kwh"] / 1000, 1), "MWh"),
             (t("ov_today_co2", lang), fmt(s["today_co2_t"], 1), "tCO2"),
             (t("ov_intensity", lang), fmt(s["today_co2_t_per_mwh"], 3), "tCO2/MWh")]
    if allowed(actor, "page.alarms"):
        items.append((t("ov_alarms", lang), fmt(alarm_count(context.engine(), actor)), ""))
    return tiles_html(items)


def loads(s: dict) -> pd.DataFrame:
    rows = pd.DataFrame(s["enterprises"], columns=["enterprise_id", "name", "load_kw"])
    rows["MW"] = rows["load_kw"] / 1000
    rows["label"] = rows["enterprise_id"] + " " + rows["name"]
    return rows.sort_values("MW")[["label", "MW"]]


def plan_polys(s: dict) -> list[dict]:
    return footprints(park, {r["enterprise_id"]: r["load_kw"] for r in s["enterprises"]})


# Built once per session; every 5 s only new numbers go to the browser (the tiles' text, the charts' data).
state = snapshot(context.engine(), park, actor)
public = not state["enterprises"]          # a visitor: park totals only
head = pn.pane.Markdown("", margin=(4, 16))
board = pn.pane.HTML(figures(state), sizing_mode="stretch_width", stylesheets=[CSS], margin=(0, 4))
bar_fig, bar_src = load_bars(loads(state), t("ov_enterprises", lang))
plan_fig, plan_src = plan_map(plan_polys(state), t("ov_plan_public" if public else "ov_plan", lang), public)
bars_pane = pn.pane.Bokeh(bar_fig, sizing_mode="stretch_width", visible=not public)
plan_pane = pn.pane.Bokeh(plan_fig, sizing_mode="stretch_width")
twin_link = pn.pane.HTML(f'<a href="/twin">{t("ov_open_twin", lang)} →</a>', margin=(0, 16))
method = pn.pane.Markdown(t("ov_method", lang, factor=state["grid_factor_t_per_mwh"],
                            source=state["grid_factor_source"]), margin=(0, 16), styles={"font-size": "12px"})
shown = {"as_of": None}


def refresh():
    s = snapshot(context.engine(), park, actor)
    if s["as_of"] is not None and s["as_of"] == shown["as_of"]:
        return                                       # nothing new since the last refresh
    shown["as_of"] = s["as_of"]
    as_of = s["as_of"].strftime("%Y-%m-%d %H:%M:%S") if s["as_of"] is not None else None
    head.object = t("ov_as_of", lang, ts=as_of) if as_of else t("ov_no_data", lang)
    board.object = figures(s)
    if not public:
        update_bars(bar_fig, bar_src, loads(s))
        update_plan(plan_fig, plan_src, plan_polys(s))


refresh()
pn.state.add_periodic_callback(refresh, period=5000)
shell("overview", actor, lang, head, board,
      pn.FlexBox(pn.Column(plan_pane, twin_link, sizing_mode="stretch_width", min_width=340,
                           styles={"flex": "1 1 480px"}),
                 pn.Column(bars_pane, sizing_mode="stretch_width", min_width=340, styles={"flex": "1 1 420px"}),
                 flex_wrap="wrap", sizing_mode="stretch_width"),
      method).servable(title=t("page_overview", lang))
