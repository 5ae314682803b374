"""园区总览 / Park overview, the big screen: live park load, PV, storage, grid import, today's electricity and
emissions, active alarms, the park plan coloured by load and the load of every enterprise; the parts refresh
every 5 s.

Rendered on the server (:mod:`anning_lib.portal.html_page`): the figures come from
:func:`anning_lib.portal.live.snapshot` (one store query set per scope every 4 s, whatever the number of screens)
and the rendered parts are shared the same way per scope and language, so fifty open screens cost the server one
rendering per scope and period plus fifty small answers. A visitor sees the park totals and a plan without
values (:func:`anning_lib.portal.views.park_snapshot` gives it no enterprise rows).
"""

from __future__ import annotations

import html
import json

import pandas as pd

from anning_lib.auth.access import Actor
from anning_lib.i18n import t
from anning_lib.park.schema import Park
from anning_lib.portal import svg
from anning_lib.portal.html_page import PageHandler
from anning_lib.portal.layout import fmt, tiles_html
from anning_lib.portal.live import alarm_count, cached, snapshot
from anning_lib.portal.plan import footprints
from anning_lib.twin.colours import legend

LIVE_URL = "/overview/live"


def figures(s: dict, alarms: int | None, lang: str) -> list[tuple[str, str, str]]:
    """The big screen's tiles ``(label, value, unit)`` from a :func:`park_snapshot` (pure); ``alarms`` the open
    alarms the user may see (None: the role sees no alarms, no tile)."""
    def mw(kw: float | None) -> str:
        return fmt(None if kw is None else kw / 1000, 1)

    soc = None if s["bess_soc_frac"] is None else 100 * s["bess_soc_frac"]
    items = [(t("ov_load", lang), mw(s["load_kw"]), "MW"),
             (t("ov_pv", lang), mw(s["pv_kw"]), "MW"),
             (t("ov_grid", lang), mw(s["grid_import_kw"]), "MW"),
             (t("ov_soc", lang), fmt(soc, 0), "%"),
             (t("ov_bess_p", lang), fmt(s["bess_p_kw"], 0), "kW"),
             (t("ov_today_e", lang), fmt(s["today_e_kwh"] / 1000, 1), "MWh"),
             (t("ov_today_co2", lang), fmt(s["today_co2_t"], 1), "tCO2"),
             (t("ov_intensity", lang), fmt(s["today_co2_t_per_mwh"], 3), "tCO2/MWh")]
    if alarms is not None:
        items.append((t("ov_alarms", lang), fmt(alarms), ""))
    return items


def enterprise_loads(s: dict) -> pd.DataFrame:
    """``label`` ("E01 name") and ``load_kw`` [kW] of every enterprise row of the snapshot, largest first (pure)."""
    rows = pd.DataFrame(s["enterprises"], columns=["enterprise_id", "name", "load_kw"])
    rows["label"] = rows["enterprise_id"] + " " + rows["name"]
    return rows.sort_values("load_kw", ascending=False, na_position="last")[["label", "load_kw"]]


def parts(s: dict, park: Park, lang: str, alarms: int | None) -> dict[str, str]:
    """The refreshing parts of the page, ``{element id: HTML}`` (pure): the time line, the tiles, the plan and
    the enterprises' bars (empty for a visitor)."""
    public = not s["enterprises"]
    as_of = s["as_of"].strftime("%Y-%m-%d %H:%M:%S") if s["as_of"] is not None else None
    loads = enterprise_loads(s)
    polys = footprints(park, {r["enterprise_id"]: r["load_kw"] for r in s["enterprises"]})
    return {
        "ov-head": html.escape(t("ov_as_of", lang, ts=as_of) if as_of else t("ov_no_data", lang)),
        "ov-tiles": tiles_html(figures(s, alarms, lang)),
        "ov-plan": svg.plan(polys, legend("load_kw"), title=t("ov_plan_public" if public else "ov_plan", lang),
                            public=public),
        "ov-bars": "" if public else svg.hbars(loads["label"].tolist(), (loads["load_kw"] / 1000).tolist(),
                                               title=t("ov_enterprises", lang), unit="MW"),
    }


def body(p: dict[str, str], s: dict, lang: str) -> str:
    """The page's body around its parts (pure)."""
    bars = f'<section class="card" id="ov-bars">{p["ov-bars"]}</section>' if p["ov-bars"] else ""
    method = t("ov_method", lang, factor=s["grid_factor_t_per_mwh"], source=s["grid_factor_source"])
    return (f'<div class="as-of" id="ov-head">{p["ov-head"]}</div><div id="ov-tiles">{p["ov-tiles"]}</div>'
            f'<div class="row" style="margin-top:12px"><section class="card"><div id="ov-plan">{p["ov-plan"]}'
            f'</div><a href="/twin">{html.escape(t("ov_open_twin", lang))} →</a></section>{bars}</div>'
            f'<p class="note">{html.escape(method)}</p>')


def _shared(engine, park: Park, actor: Actor, lang: str) -> tuple[dict, dict[str, str]]:
    """(snapshot, parts) for the actor's scope and language: the snapshot shared with the 3-D twin, the parts
    rendered once per snapshot (keyed by the time it was taken, so they are never older than it)."""
    s = snapshot(engine, park, actor)
    alarms = alarm_count(engine, actor)
    key = ("overview-parts", str(engine.url), actor.role, actor.enterprise_id, lang, s["now"], alarms)
    return s, cached(key, lambda: parts(s, park, lang, alarms))


class OverviewHandler(PageHandler):
    """``GET /overview``: the whole page."""

    slug = "overview"

    def get(self) -> None:
        from anning_lib.portal import context

        s, p = _shared(self.engine, context.park(), self.actor, self.lang)
        self.page(body(p, s, self.lang), live_url=f"{LIVE_URL}?lang={self.lang}")


class OverviewLiveHandler(PageHandler):
    """``GET /overview/live``: the parts as JSON, what an open page fetches every 5 s."""

    slug = "overview"
    json_errors = True

    def get(self) -> None:
        from anning_lib.portal import context

        _s, p = _shared(self.engine, context.park(), self.actor, self.lang)
        self.set_header("Content-Type", "application/json; charset=utf-8")
        self.set_header("Cache-Control", "no-store")         # the user's scoped figures
        self.finish(json.dumps(p, ensure_ascii=False))


ROUTES = [(r"/overview", OverviewHandler), (LIVE_URL, OverviewLiveHandler)]
