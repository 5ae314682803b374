"""企业视图 / Enterprise page: one enterprise's month (emissions by scope, daily electricity, sector peers, energy
by carrier, its devices) and its advice (节能优化建议), rendered on the server (:mod:`anning_lib.portal.html_page`).

``GET /enterprise?enterprise=E01&month=2026-11``: every read goes through the library with the user's scope
(:func:`anning_lib.portal.views.enterprise_overview`, :func:`anning_lib.portal.advice_view.enterprise_advice`), so
an enterprise user asking for another enterprise gets the library's refusal (403, recorded in ``audit_log``)
and none of its data; a malformed month or an unknown enterprise gets the library's message (400).
The month's figures are reused for :data:`OVERVIEW_TTL_S` and the advice for :data:`ADVICE_TTL_S` per scope
(the advice values the last complete months, about 0.25 s of CPU; the month's figures change by the minute at
most, as the gateway's rollups do).
"""

from __future__ import annotations

import html

import pandas as pd

from anning_lib.auth.access import Actor
from anning_lib.auth.audit import audit
from anning_lib.errors import AccessError, AnningError
from anning_lib.i18n import t, word
from anning_lib.park.schema import Park
from anning_lib.portal import svg
from anning_lib.portal.advice_view import CSS as ADVICE_CSS
from anning_lib.portal.advice_view import (
    advice_html,
    advice_note,
    advice_table,
    enterprise_advice,
)
from anning_lib.portal.html_page import PageHandler, alert
from anning_lib.portal.layout import fmt, tiles_html
from anning_lib.portal.live import cached
from anning_lib.portal.views import devices_of, enterprise_overview

OVERVIEW_TTL_S = 30.0
"""How long one scope's month of one enterprise is reused [s]."""
ADVICE_TTL_S = 600.0
"""How long one scope's advice of one enterprise is reused [s]."""
SERIES = {"grid_e_kwh": ("ent_series_grid", "#11698e"), "pv_e_kwh": ("ent_series_pv", "#e6ab02"),
          "bess_e_kwh": ("ent_series_bess", "#1b9e77")}
"""Daily chart: column of :func:`~anning_lib.portal.views.daily_electricity` -> (catalogue key, colour)."""


def months_back(today: pd.Timestamp, n: int = 13) -> list[str]:
    """``YYYY-MM`` of this month and the ``n - 1`` before it, newest first (pure)."""
    return [str(today.to_period("M") - i) for i in range(n)]


def choices(park: Park, actor: Actor, lang: str) -> dict[str, str]:
    """Enterprise id -> label the user may pick: an enterprise user its own, everybody else every one (pure)."""
    own = actor.enterprise_id if actor.role == "enterprise" else None
    return {e.id: f"{e.id} {e.name_en if lang == 'en' and e.name_en else e.name}" for e in park.enterprises
            if own is None or e.id == own}


def _options(items: dict[str, str], chosen: str) -> str:
    return "".join(f'<option value="{html.escape(k)}"{" selected" if k == chosen else ""}>{html.escape(v)}</option>'
                   for k, v in items.items())


def picker(ents: dict[str, str], eid: str, months: list[str], month: str, lang: str, own_only: bool) -> str:
    """The form choosing enterprise (hidden for an enterprise user) and month (pure)."""
    ent = "" if own_only else (f'<label>{html.escape(t("ent_pick", lang))}<select name="enterprise" data-submit>'
                               f"{_options(ents, eid)}</select></label>")
    own = f'<input type="hidden" name="enterprise" value="{html.escape(eid)}">' if own_only else ""
    return (f'<form class="pick" method="get" action="/enterprise">{ent}{own}<label>{html.escape(t("ent_month", lang))}'
            f'<select name="month" data-submit>{_options({m: m for m in months}, month)}</select></label>'
            f'<button type="submit">{html.escape(t("ent_show", lang))}</button></form>')


def emissions_html(o: dict, lang: str) -> str:
    e = o["emissions"]
    if e is None:
        return alert(t("ent_no_account", lang))
    return tiles_html([(t("ent_total", lang), fmt(e["total_co2_t"], 1), "tCO2"),
                       (t("ent_scope1", lang), fmt(e["scope1_co2_t"], 1), "tCO2"),
                       (t("ent_scope2", lang), fmt(e["scope2_location_co2_t"], 1), "tCO2"),
                       (t("ent_scope2m", lang), fmt(e["scope2_market_co2_t"], 1), "tCO2"),
                       (t("ent_scope3", lang), fmt(e["scope3_co2_t"], 1), "tCO2")])


def daily_svg(o: dict, lang: str) -> str:
    """Electricity per day, stacked: bought, own PV, own storage (MWh)."""
    d = o["daily"][list(SERIES)].div(1000)
    d.index = d.index.strftime("%m-%d")
    d.columns = [t(SERIES[c][0], lang) for c in SERIES]
    colours = {t(key, lang): colour for key, colour in SERIES.values()}
    return svg.stacked_columns(d, colours, title=t("ent_daily", lang), unit="MWh")


def peers_html(o: dict, lang: str) -> str:
    """Intensity of the sector's enterprises per tonne of product, the user's own bold and starred."""
    p = o["peers"].dropna(subset=["co2_t_per_t"])
    if len(p) < 2:
        return f'<p>{html.escape(t("ent_no_peers", lang))}</p>'
    labels = [f"{n} ★" if me else str(n) for n, me in zip(p["name"], p["is_self"])]
    return svg.hbars(labels, p["co2_t_per_t"].tolist(), title=t("ent_peers", lang), unit="tCO2/t",
                     highlight=[bool(me) for me in p["is_self"]], digits=3)


def energy_html(o: dict, lang: str) -> str:
    rows = "".join(f"<tr><td>{html.escape(word('carrier', r.carrier, lang))}</td><td class=n>{fmt(r.amount, 1)}</td>"
                   f"<td>{html.escape(r.unit)}</td><td class=n>{fmt(r.e_gj, 1)}</td></tr>"
                   for r in o["energy"].itertuples())
    head = "".join(f"<th>{html.escape(t(k, lang))}</th>" for k in ("ent_col_carrier", "ent_col_amount",
                                                                     "ent_col_unit", "ent_col_gj"))
    source = word("ent_src", o["energy_source"], lang) if o["energy_source"] else "–"
    return (f'<h3>{html.escape(t("ent_energy", lang))}</h3><table class="data energy"><thead><tr>{head}</tr>'
            f'</thead><tbody>{rows}</tbody></table><p class="note">'
            f'{html.escape(t("ent_source", lang, source=source, version=o["factor_version"] or "–"))}</p>')


def devices_html(park: Park, actor: Actor, eid: str, lang: str) -> str:
    links = " · ".join(f'<a href="/device?device={html.escape(r.device_id)}">{html.escape(r.name)}</a>'
                       for r in devices_of(park, actor, eid).itertuples())
    return f'<p><b>{html.escape(t("ent_devices", lang))}</b>: {links}</p>'


def advice_section(advice: dict | None, error: str | None, lang: str) -> str:
    """节能优化建议: the measures, best net present value first, then the others greyed with their reason."""
    head = f'<h3>{html.escape(t("advice_heading", lang))}</h3>'
    if error:
        return head + alert(error, "danger")
    if advice is None:
        return head + alert(t("advice_none", lang))
    return (f"{head}<style>{ADVICE_CSS}</style>{advice_html(advice_table(advice, lang), lang)}"
            f'<p class="note">{html.escape(advice_note(advice, lang))}</p>')


def body(o: dict, form: str, park: Park, actor: Actor, lang: str, advice: dict | None, advice_error: str | None) -> str:
    """The page's body for one enterprise's month (pure but for the park model's device list)."""
    sector = word("sector", o["sector"], lang)
    return (f'{form}<h2>{html.escape(o["enterprise_id"])} {html.escape(o["name"])} · {html.escape(sector)} · '
            f'{html.escape(o["month"])}</h2>{emissions_html(o, lang)}'
            f'<div class="row" style="margin-top:12px"><section class="card" style="flex:2 1 520px">'
            f'{daily_svg(o, lang)}</section><section class="card" style="flex:1 1 320px">{peers_html(o, lang)}'
            f"</section></div>{energy_html(o, lang)}{devices_html(park, actor, o['enterprise_id'], lang)}"
            f"{advice_section(advice, advice_error, lang)}")


def _scope(actor: Actor) -> tuple:
    return actor.role, actor.enterprise_id


class EnterpriseHandler(PageHandler):
    """``GET /enterprise[?enterprise=E01][&month=YYYY-MM]``."""

    slug = "enterprise"

    def get(self) -> None:
        from anning_lib.portal import context

        park, engine, actor, lang = context.park(), self.engine, self.actor, self.lang
        ents = choices(park, actor, lang)
        own_only = actor.role == "enterprise"
        eid = self.get_argument("enterprise", None) or actor.enterprise_id or park.enterprises[0].id
        months = months_back(pd.Timestamp.now(tz=park.meta.site.timezone).tz_localize(None))
        month = self.get_argument("month", None) or months[0]
        form = picker(ents, eid, months if month in months else [month, *months], month, lang, own_only)
        key = (str(engine.url), *_scope(actor), eid)
        try:
            o = cached(("enterprise-month", *key, month),
                       lambda: enterprise_overview(engine, park, actor, eid, month), OVERVIEW_TTL_S)
        except AccessError as err:
            audit(engine, "page_refused", (self.request.uri or "")[:200], {"reason": str(err)}, actor.user_id)
            self.page(("" if own_only else form) + alert(str(err), "danger"), status=403)
            return
        except AnningError as err:
            self.page(form + alert(str(err), "danger"), status=400)
            return
        advice, advice_error = None, None
        try:
            advice = cached(("enterprise-advice", *key), lambda: enterprise_advice(engine, park, actor, eid),
                            ADVICE_TTL_S)
        except AnningError as err:
            advice_error = str(err)
        self.page(body(o, form, park, actor, lang, advice, advice_error))


ROUTES = [(r"/enterprise", EnterpriseHandler)]
