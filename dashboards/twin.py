"""三维孪生 / 3D twin: the park drawn from its model (buildings, PV, storage, substation), coloured by a chosen
metric with its legend, energy flows by carrier and power, alarms outlined; click a building for its enterprise's
figures and page. Built once per session; every 5 s only colours, flows and labels change (docs/twin.md)."""

import html

import panel as pn

from anning_lib.i18n import t
from anning_lib.portal import context
from anning_lib.portal.layout import shell
from anning_lib.twin import colours, flows, live
from anning_lib.twin.scene import TwinView, panel_pane

pn.extension("ipywidgets")
actor, lang = context.actor(), context.lang()
park, engine = context.park(), context.engine()

graph = flows.nodes(park)
view = TwinView(park, graph, flows.edges(park), width_px=1000, height_px=600)
part_keys = {p.key for p in view.parts}
public = actor.role == "visitor"

TWIN_CSS = """
:host canvas{max-width:100%;height:auto!important;border:1px solid #d5e1e8;border-radius:4px}
.twin-legend,.twin-details{font-family:"WenQuanYi Zen Hei","Noto Sans CJK SC",sans-serif;display:flex;
 flex-direction:column;gap:3px;font-size:13px}
.twin-details a{color:#11698e}
"""

metric = pn.widgets.RadioButtonGroup(name=t("tw_metric", lang), value="load_kw", button_type="primary",
                                     options={t(f"tw_metric_{m}", lang): m for m in live.METRICS})
legend = pn.pane.HTML(live.legend_html(metric.value, lang), stylesheets=[TWIN_CSS], margin=(4, 8))
carriers = "".join(f'<div><span style="display:inline-block;width:22px;height:4px;background:'
                   f'{colours.carrier_colour(c)};vertical-align:middle"></span> {html.escape(t(f"tw_carrier_{c}", lang))}'
                   f'</div>' for c in ("electricity", "natural_gas", "steam"))
flow_key = pn.pane.HTML(f'<div class="twin-legend"><b>{html.escape(t("tw_flows", lang))}</b>{carriers}</div>',
                        stylesheets=[TWIN_CSS], margin=(4, 8))
details = pn.pane.HTML(f'<div class="twin-details">{html.escape(t("tw_pick_hint", lang))}</div>',
                       stylesheets=[TWIN_CSS], margin=(4, 8), sizing_mode="stretch_width")
head = pn.pane.Markdown("", margin=(4, 16))
note = pn.pane.Markdown(t("tw_public", lang) if public else t("tw_help", lang), margin=(0, 16),
                        styles={"font-size": "12px"})
state: dict = {}


def show() -> None:
    """Paint the newest state in the chosen metric (only changed properties reach the browser)."""
    view.update(**live.frame(state["s"], metric.value, list(view.labels)))


def refresh() -> None:
    state["s"] = live.twin_state(engine, park, actor, graph, part_keys)
    as_of = state["s"]["as_of"]
    head.object = t("tw_as_of", lang, ts=as_of.strftime("%Y-%m-%d %H:%M:%S")) if as_of is not None \
        else t("tw_no_live", lang)
    show()


def on_metric(_event) -> None:
    legend.object = live.legend_html(metric.value, lang)
    show()


def on_pick(part) -> None:
    details.object = live.details_html(park, part, state["s"], actor, lang)


metric.param.watch(on_metric, "value")
view.on_pick(on_pick)
refresh()
pn.state.add_periodic_callback(refresh, period=5000)
pn.state.on_session_destroyed(lambda _ctx, v=view: v.close())   # bound now: the script's globals are gone by then
canvas = panel_pane(view, stylesheets=[TWIN_CSS], margin=(4, 8), sizing_mode="stretch_width")
side = pn.Column(metric, legend, flow_key, details, width=320, margin=(4, 8))
shell("twin", actor, lang, head,
      pn.FlexBox(pn.Column(canvas, note, styles={"flex": "0 1 1016px"}, min_width=340, sizing_mode="stretch_width"),
                 side, flex_wrap="wrap", sizing_mode="stretch_width")).servable(title=t("page_twin", lang))
