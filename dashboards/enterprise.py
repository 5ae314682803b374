"""企业视图 / Enterprise: one enterprise's month — emissions by scope, energy by carrier, daily electricity,
sector peers, its devices — and its advice (节能优化建议, issue 11). An enterprise user sees only its own
(``?enterprise=`` of another is refused by the library); park-wide roles pick any enterprise."""

import hvplot.pandas  # noqa: F401  (registers .hvplot)
import pandas as pd
import panel as pn

from anning_lib.errors import AnningError
from anning_lib.i18n import t
from anning_lib.portal import context
from anning_lib.portal.advice_view import CSS as ADVICE_CSS
from anning_lib.portal.advice_view import (
    advice_html,
    advice_note,
    advice_table,
    enterprise_advice,
)
from anning_lib.portal.layout import fmt, shell, tile, tiles
from anning_lib.portal.views import devices_of, enterprise_overview

actor, lang = context.actor(), context.lang()
park, engine = context.park(), context.engine()
args = pn.state.session_args or {}
asked = (args.get("enterprise") or [b""])[0].decode() or None
own = actor.enterprise_id if actor.role == "enterprise" else None
choices = {f"{e.id} {e.name if lang != 'en' else e.name_en or e.name}": e.id for e in park.enterprises
           if own is None or e.id == own}
today = pd.Timestamp.now(tz=park.meta.site.timezone).tz_localize(None)
months = [str(today.to_period("M") - i) for i in range(0, 13)]
pick = pn.widgets.Select(name=t("ent_pick", lang), options=choices, value=asked or own or park.enterprises[0].id,
                         width=280, visible=own is None)
month = pn.widgets.Select(name=t("ent_month", lang), options=months, value=months[0], width=140)
body = pn.Column(sizing_mode="stretch_width")
advice_of: dict[str, dict | None] = {}        # the advice does not depend on the month picked: once per session


def emissions(o: dict) -> list:
    e = o["emissions"]
    if e is None:
        return [pn.pane.Alert(t("ent_no_account", lang), alert_type="info", sizing_mode="stretch_width")]
    return [tiles(tile(t("ent_total", lang), fmt(e["total_co2_t"], 1), "tCO2"),
                  tile(t("ent_scope1", lang), fmt(e["scope1_co2_t"], 1), "tCO2"),
                  tile(t("ent_scope2", lang), fmt(e["scope2_location_co2_t"], 1), "tCO2"),
                  tile(t("ent_scope2m", lang), fmt(e["scope2_market_co2_t"], 1), "tCO2"),
                  tile(t("ent_scope3", lang), fmt(e["scope3_co2_t"], 1), "tCO2"))]


def daily_chart(o: dict):
    d = o["daily"][["grid_e_kwh", "pv_e_kwh", "bess_e_kwh"]].div(1000).rename(
        columns={"grid_e_kwh": "grid MWh", "pv_e_kwh": "PV MWh", "bess_e_kwh": "BESS MWh"})
    d.index = d.index.strftime("%m-%d")
    return d.hvplot.bar(stacked=True, height=300, responsive=True, rot=60, ylabel="MWh", xlabel="",
                        title=t("ent_daily", lang), legend="top_left")


def peers_chart(o: dict):
    p = o["peers"].dropna(subset=["co2_t_per_t"])
    if len(p) < 2:
        return pn.pane.Markdown(t("ent_no_peers", lang))
    p = p.assign(label=[f"{n} ★" if me else n for n, me in zip(p["name"], p["is_self"])])
    return p.hvplot.barh(x="label", y="co2_t_per_t", height=80 + 34 * len(p), responsive=True, color="#11698e",
                         xlabel="", ylabel="tCO2/t", title=t("ent_peers", lang))


def device_links(eid: str) -> pn.pane.Markdown:
    devs = devices_of(park, actor, eid)
    links = " · ".join(f"[{r.name}](/device?device={r.device_id})" for r in devs.itertuples())
    return pn.pane.Markdown(f"**{t('ent_devices', lang)}**: {links}", sizing_mode="stretch_width")


def advice_section(eid: str) -> list:
    """节能优化建议: the measures, best net present value first, then the others greyed with their reason."""
    head = pn.pane.Markdown(f"**{t('advice_heading', lang)}**", sizing_mode="stretch_width", margin=(16, 10, 0, 10))
    try:
        if eid not in advice_of:
            advice_of[eid] = enterprise_advice(engine, park, actor, eid)
        a = advice_of[eid]
    except AnningError as err:
        return [head, pn.pane.Alert(str(err), alert_type="danger", sizing_mode="stretch_width")]
    if a is None:
        return [head, pn.pane.Alert(t("advice_none", lang), alert_type="info", sizing_mode="stretch_width")]
    return [head, pn.pane.HTML(advice_html(advice_table(a, lang), lang), sizing_mode="stretch_width",
                               stylesheets=[ADVICE_CSS]),
            pn.pane.Markdown(advice_note(a, lang), styles={"font-size": "12px"}, sizing_mode="stretch_width")]


def show(*_):
    try:
        o = enterprise_overview(engine, park, actor, pick.value, month.value)
    except AnningError as err:
        body.objects = [pn.pane.Alert(str(err), alert_type="danger", sizing_mode="stretch_width")]
        return
    energy = o["energy"].round(2)
    body.objects = [pn.pane.Markdown(f"### {o['enterprise_id']} {o['name']} · {o['sector']} · {o['month']}"),
                    *emissions(o),
                    pn.FlexBox(pn.Column(pn.pane.HoloViews(daily_chart(o), sizing_mode="stretch_width"),
                                         min_width=340, styles={"flex": "2 1 520px"}),
                               pn.Column(pn.pane.HoloViews(peers_chart(o), sizing_mode="stretch_width")
                                         if len(o["peers"]) >= 2 else peers_chart(o),
                                         min_width=300, styles={"flex": "1 1 320px"}),
                               flex_wrap="wrap", sizing_mode="stretch_width"),
                    pn.pane.Markdown(f"**{t('ent_energy', lang)}**"),
                    pn.widgets.Tabulator(energy, show_index=False, disabled=True, sizing_mode="stretch_width"),
                    pn.pane.Markdown(t("ent_source", lang, source=o["energy_source"] or "–",
                                       version=o["factor_version"] or "–"), styles={"font-size": "12px"}),
                    device_links(o["enterprise_id"]),
                    *advice_section(o["enterprise_id"])]


if asked and asked not in choices.values():      # another enterprise by URL: let the library say no
    body.objects = []
    try:
        enterprise_overview(engine, park, actor, asked, month.value)
    except AnningError as err:
        body.objects = [pn.pane.Alert(str(err), alert_type="danger", sizing_mode="stretch_width")]
else:
    pick.param.watch(show, "value")
    month.param.watch(show, "value")
    show()
shell("enterprise", actor, lang, pn.Row(pick, month, margin=(6, 10)), pn.Column(body, margin=(0, 14),
      sizing_mode="stretch_width")).servable(title=t("page_enterprise", lang))
