"""节能优化建议 / the advice on the portal's enterprise page: a scoped read of :func:`anning_lib.advice.engine.advise`
and the shaping of its measures into a table (issue 11 point 5).

:func:`enterprise_advice` checks the user's scope before anything is read (an enterprise user sees its own
enterprise's advice only, a visitor none: :class:`~anning_lib.errors.AccessError`), picks the period and calls the
engine without refreshing rollups (a page does not write). Period: the engine's default (up to the last three whole
local months of the store); while the store holds no whole month (a new install, the browser tests' three days),
the month so far, clipped to the first stored measurement; in the first hours of a month, the last
:data:`RECENT_DAYS` days; with less than :data:`MIN_DAYS` of data, none (the page shows a note).

Everything else here is pure: :func:`advice_table` (numbers in 10^4 CNY where the column says 万元),
:func:`why_text`, :func:`advice_note` and :func:`advice_html`.
"""

from __future__ import annotations

import html
import math

import pandas as pd
from sqlalchemy.engine import Engine

from anning_lib.advice.engine import advise, default_period
from anning_lib.auth.access import Actor, require_visible
from anning_lib.errors import AnningError
from anning_lib.i18n import t
from anning_lib.park.schema import Park
from anning_lib.portal.layout import fmt

CNY_PER_10K = 1e4
"""One 万元 is 10^4 CNY."""
MIN_DAYS = 1.0
"""Shortest period the page values a measure on [d]: a few hours scaled to a year would say nothing."""
RECENT_DAYS = 7.0
"""Period of the last resort (no whole month, and the month so far shorter than :data:`MIN_DAYS`) [d]."""

TABLE_COLUMNS = ["id", "rank", "measure", "npv_10k_cny", "capex_10k_cny", "annual_net_10k_cny_a", "co2_t_a",
                 "payback_a", "abatement_cost_cny_per_t", "why", "recommended", "sources"]
"""Columns of :func:`advice_table`; the numbers are NaN where the measure does not apply or has nothing to gain."""
SHOWN = [("rank", "advice_col_rank"), ("measure", "advice_col_measure"), ("npv_10k_cny", "advice_col_npv"),
         ("capex_10k_cny", "advice_col_capex"), ("annual_net_10k_cny_a", "advice_col_net"),
         ("co2_t_a", "advice_col_co2"), ("payback_a", "advice_col_payback"),
         ("abatement_cost_cny_per_t", "advice_col_mac"), ("why", "advice_col_why")]
"""The columns :func:`advice_html` shows and their headings' message keys."""

CONDITIONS = {"roof_area_m2 > 0": "advice_c_roof", "daytime_load": "advice_c_daytime", "no_bess": "advice_c_no_bess",
              "peak_import": "advice_c_peak", "flexible_load": "advice_c_flex", "demand_charge": "advice_c_demand",
              "boiler": "advice_c_boiler", "gas_use": "advice_c_gas", "motors": "advice_c_motors",
              "grid_import": "advice_c_grid"}
"""An unmet ``applies_to`` condition of the catalogue -> its message (the enterprise's state that rules it out)."""
NOT_MET = "condition not met: "
"""How the engine words a measure whose conditions do not hold (``reason``)."""
REASONS = {"no free roof area": "advice_r_no_roof", "no electricity bought in peak hours": "advice_r_no_peak",
           "no load above the base load in peak hours": "advice_r_no_flex",
           "no demand charge in the enterprise's tariff": "advice_r_no_demand_charge",
           "no demand metered": "advice_r_no_demand", "no gas-fired boiler metered": "advice_r_no_boiler_gas",
           "no gas use metered": "advice_r_no_gas", "no electricity use metered": "advice_r_no_elec",
           "no electricity bought": "advice_r_no_grid"}
"""The estimators' reasons (:mod:`anning_lib.advice.effects`) -> messages; another reason is shown as it is."""
BASIS = [("kwp", "advice_b_kwp", 1.0), ("free_roof_m2", "advice_b_roof", 1.0),
         ("used_kwh_a", "advice_b_pv_used", 1e-3), ("nameplate_kwh", "advice_b_bess_kwh", 1.0),
         ("peak_kwh_a", "advice_b_peak", 1e-3), ("flexible_peak_kwh_a", "advice_b_flex", 1e-3),
         ("moved_kwh_a", "advice_b_moved", 1e-3), ("max_kw", "advice_b_max_kw", 1.0),
         ("peak_cut_kw", "advice_b_cut_kw", 1.0), ("boiler_kw", "advice_b_boiler_kw", 1.0),
         ("gas_nm3_a", "advice_b_gas", 1.0), ("gas_saved_nm3_a", "advice_b_gas_saved", 1.0),
         ("electricity_kwh_a", "advice_b_elec", 1e-3), ("motor_kwh_a", "advice_b_motor", 1e-3),
         ("saved_kwh_a", "advice_b_saved", 1e-3), ("grid_kwh_a", "advice_b_grid", 1e-3),
         ("green_kwh_a", "advice_b_green", 1e-3), ("price_cny_per_kwh", "advice_b_price", None),
         ("p_peak", "advice_b_p_peak", None), ("p_valley", "advice_b_p_valley", None),
         ("demand_charge_cny_per_kw_month", "advice_b_demand_charge", None),
         ("gas_price_cny_per_nm3", "advice_b_gas_price", None), ("premium_cny_per_kwh", "advice_b_premium", None)]
"""The numbers behind a measure, in the order shown: key of the item's ``size`` or ``basis``, message, and the
factor to the message's unit (kWh -> MWh: 1e-3); None: a price, shown with up to three decimals as it is."""

CSS = """
.advice-wrap{overflow-x:auto;width:100%}
table.advice{border-collapse:collapse;width:100%;font-size:13px;color:#0f2a3d;background:#fff;
 border:1px solid #d5e1e8;font-family:"WenQuanYi Zen Hei","Noto Sans CJK SC",sans-serif}
table.advice th{background:#eef4f7;color:#2b4556;text-align:left;padding:7px 8px;border-bottom:2px solid #c6d6e0;
 white-space:nowrap;font-weight:bold}
table.advice th.n{text-align:right}
table.advice td{padding:6px 8px;border-bottom:1px solid #e3ebf0;vertical-align:top}
table.advice td.n{text-align:right;white-space:nowrap;font-variant-numeric:tabular-nums}
table.advice td.rank{text-align:center;font-weight:bold;color:#11698e;width:3em}
table.advice td.m{font-weight:bold;min-width:12em}
table.advice td.why{font-size:12px;color:#4a6272;min-width:18em}
table.advice tr:not(.off) td.neg{color:#b03a2e}
table.advice tr.off td{color:#98a7b1;background:#f8fafb;font-weight:normal}
table.advice tr.off td.why{color:#7d8e99}
table.advice tr.first-off td{border-top:2px solid #c6d6e0}
@media (max-width:700px){
 table.advice,table.advice tbody,table.advice tr,table.advice td{display:block;width:auto}
 table.advice thead{display:none}
 table.advice{border:none;background:transparent}
 table.advice tr{border:1px solid #d5e1e8;border-radius:6px;margin:0 0 8px;padding:6px 0;background:#fff}
 table.advice tr.first-off{margin-top:14px}
 table.advice tr.first-off td{border-top:none}
 table.advice td{border:none;padding:2px 10px}
 table.advice td.rank{float:left;width:auto;padding:2px 6px 2px 10px}
 table.advice td.m{min-width:0}
 table.advice td.n{display:flex;justify-content:space-between;gap:8px}
 table.advice td.n::before{content:attr(data-label);color:#4a6272;text-align:left;white-space:normal}
 table.advice td.na{display:none}
 table.advice td.why{min-width:0;padding-top:4px}
}
"""
"""The advice table's look (the page's palette: header #0f2a3d, accent #11698e, borders #d5e1e8); on a phone
(700 px or narrower) each measure is a card of labelled figures."""


# ------------------------------------------------------------------------------------------------ the read
def fallback_period(first: pd.Timestamp, last: pd.Timestamp, now: pd.Timestamp, tz: str, *,
                    min_days: float = MIN_DAYS, recent_days: float = RECENT_DAYS):
    """The period when the store holds no whole month (pure).

    Parameters
    ----------
    first, last : aware timestamp
        first and last stored measurement (:func:`anning_lib.store.timeseries.data_range`).
    now : aware timestamp
        the wall clock.
    tz : str
        the park's time zone (months are local).

    Returns
    -------
    tuple or None
        ``(start, end, kind)``: ``end`` is ``now`` (or 15 minutes after the last measurement, if older);
        ``kind`` ``"month_so_far"`` (``start`` = the local month's first midnight, or the first measurement if
        later) when that spans ``min_days`` or more, else ``"recent"`` (the last ``recent_days`` days, from the first
        measurement at the earliest); None when even that is shorter than ``min_days``.
    """
    now, first = now.tz_convert(tz), first.tz_convert(tz).floor("15min")
    end = min(now, last.tz_convert(tz) + pd.Timedelta("15min"))
    shortest = pd.Timedelta(days=min_days)
    month_start = now.tz_localize(None).to_period("M").start_time.tz_localize(tz)
    start = max(month_start, first)
    if end - start >= shortest:
        return start, end, "month_so_far"
    start = max(end - pd.Timedelta(days=recent_days), first)
    if end - start >= shortest:
        return start, end, "recent"
    return None


def advice_period(engine: Engine, tz: str, now: pd.Timestamp | None = None):
    """``(start, end, kind)`` the page values the advice on: the engine's :func:`default_period` (kind
    ``"months"``), or :func:`fallback_period` when the store covers no whole month; None without enough data."""
    from anning_lib.store.timeseries import data_range

    try:
        start, end = default_period(engine, tz)
        return start, end, "months"
    except AnningError:                          # no whole month stored (or no measurement at all)
        rng = data_range(engine, tz)
        if rng is None:
            return None
        return fallback_period(rng[0], rng[1], now if now is not None else pd.Timestamp.now(tz=tz), tz)


def enterprise_advice(engine: Engine, park: Park, actor: Actor, enterprise_id: str, *,
                      now: pd.Timestamp | None = None) -> dict | None:
    """The advice of one enterprise as the user may see it.

    Returns
    -------
    dict or None
        :func:`anning_lib.advice.engine.advise` (``refresh=False``: the rollups as the gateway keeps them) over
        :func:`advice_period`, plus ``period_kind`` (``"months"``, ``"month_so_far"`` or ``"recent"``); None when
        the store holds less than :data:`MIN_DAYS` of data.

    Raises
    ------
    AccessError
        for a visitor, or an enterprise user asking for another enterprise, before anything is read.
    """
    require_visible(actor, "the advice", enterprise_id)
    period = advice_period(engine, park.meta.site.timezone, now)
    if period is None:
        return None
    start, end, kind = period
    return {**advise(engine, park, enterprise_id, start, end, refresh=False), "period_kind": kind}


# ------------------------------------------------------------------------------------------------ shaping (pure)
def _price(v: float) -> str:
    """``0.61``, ``0.524``, ``38``: up to three decimals, no trailing zeros."""
    return f"{v:,.3f}".rstrip("0").rstrip(".")


def _amount(v: float) -> str:
    """``1,199``, ``17.5``, ``0``."""
    return fmt(v, 0 if abs(v) >= 100 or v == 0 else 1)


def _finite(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def reason_text(reason: str, lang: str) -> str:
    """The engine's reason in ``lang``: unmet conditions and the estimators' known reasons translated, another
    reason as it is (pure)."""
    reason = (reason or "").strip()
    if reason.startswith(NOT_MET):
        conds = [c.strip() for c in reason[len(NOT_MET):].split(",") if c.strip()]
        words = [t(CONDITIONS[c], lang) if c in CONDITIONS else c for c in conds]
        return t("advice_not_applicable", lang, why=("、" if lang != "en" else ", ").join(words))
    return t(REASONS[reason], lang) if reason in REASONS else reason


def basis_text(item: dict, lang: str) -> str:
    """The key numbers a measure was valued on (its ``size`` and ``basis``), in the order of :data:`BASIS` (pure)."""
    nums = {**(item.get("basis") or {}), **(item.get("size") or {})}
    parts = []
    for key, msg, factor in BASIS:
        v = nums.get(key)
        if not _finite(v):
            continue
        parts.append(t(msg, lang, v=_price(v) if factor is None else _amount(v * factor)))
    return (" · " if lang == "en" else "；").join(parts)


def _has_effect(item: dict) -> bool:
    return bool(item.get("applies")) and any(_finite(item.get(k)) and item.get(k) != 0
                                             for k in ("capex_cny", "annual_net_cny", "co2_t_a"))


def why_text(item: dict, lang: str) -> str:
    """Recommended: the numbers behind it. Otherwise the reason (translated; "negative NPV and no abatement" when
    the engine gives none), then the numbers if it was valued (pure)."""
    numbers = basis_text(item, lang) if _has_effect(item) else ""
    if item.get("recommended"):
        return numbers
    reason = reason_text(item.get("reason", ""), lang) or t("advice_not_worth", lang)
    return f"{reason}{'. ' if lang == 'en' else '。'}{numbers}" if numbers else reason


def advice_table(advice: dict, lang: str) -> pd.DataFrame:
    """The measures of :func:`~anning_lib.advice.engine.advise` as the page shows them (pure).

    Recommended measures first, by ``rank_npv`` (1 = best net present value), then the others in the engine's
    order with their reason. Money in 10^4 CNY (万元): ``npv_10k_cny``, ``capex_10k_cny``,
    ``annual_net_10k_cny_a`` [10^4 CNY/a]; ``co2_t_a`` [tCO2/a], ``payback_a`` [a], ``abatement_cost_cny_per_t``
    [CNY/tCO2]. A measure that does not apply, or has nothing to gain, has NaN figures; so has the payback of a
    measure without investment that costs money every year (a premium: it never "pays back"). ``measure`` is the
    name in ``lang``; ``why`` :func:`why_text`; ``sources`` the catalogue's citations, one per line.

    Returns
    -------
    pandas.DataFrame
        columns :data:`TABLE_COLUMNS`; ``rank`` Int64 (<NA> when not recommended).
    """
    items = list(enumerate(advice.get("measures") or []))
    items.sort(key=lambda p: (not p[1].get("recommended"),
                              p[1].get("rank_npv") if p[1].get("recommended") and p[1].get("rank_npv") else math.inf,
                              p[0]))
    rows = []
    for _, it in items:
        valued = _has_effect(it)

        def num(key: str, scale: float = 1.0, it=it, valued=valued) -> float:
            v = it.get(key)
            return v / scale if valued and _finite(v) else math.nan

        payback = num("payback_a")
        if valued and (it.get("capex_cny") or 0) <= 0 and (it.get("annual_net_cny") or 0) < 0:
            payback = math.nan
        name = it.get("name_en") if lang == "en" and it.get("name_en") else it.get("name") or it.get("id")
        rows.append({"id": it.get("id"), "rank": it.get("rank_npv") if it.get("recommended") else None,
                     "measure": name, "npv_10k_cny": num("npv_cny", CNY_PER_10K),
                     "capex_10k_cny": num("capex_cny", CNY_PER_10K),
                     "annual_net_10k_cny_a": num("annual_net_cny", CNY_PER_10K), "co2_t_a": num("co2_t_a"),
                     "payback_a": payback, "abatement_cost_cny_per_t": num("abatement_cost_cny_per_t"),
                     "why": why_text(it, lang), "recommended": bool(it.get("recommended")),
                     "sources": "\n".join(f"{k}: {v}" for k, v in (it.get("sources") or {}).items())})
    df = pd.DataFrame(rows, columns=TABLE_COLUMNS)
    df["rank"] = df["rank"].astype("Int64")
    return df


def _day(ts: pd.Timestamp, end: bool = False) -> str:
    """A period bound as the page says it: an exclusive midnight end as the day before, another end with its time."""
    if end and ts == ts.normalize():
        return f"{ts - pd.Timedelta(days=1):%Y-%m-%d}"
    return f"{ts:%Y-%m-%d}" if ts == ts.normalize() else f"{ts:%Y-%m-%d %H:%M}"


def advice_note(advice: dict, lang: str) -> str:
    """The line under the table: period (and why it is not whole months), tariff and its prices, discount rate,
    the catalogue and its version (pure)."""
    kind = advice.get("period_kind", "months")
    period = t(f"advice_period_{kind}", lang, start=_day(advice["start"]), end=_day(advice["end"], end=True),
               days=fmt(advice.get("days"), 1))
    p = advice.get("prices") or {}
    price = {b: _price(p[b]) if _finite(p.get(b)) else "–" for b in ("peak", "flat", "valley", "demand_charge")}
    return t("advice_note", lang, period=period, tariff=p.get("tariff", "–"), peak=price["peak"], flat=price["flat"],
             valley=price["valley"], demand=price["demand_charge"], rate=f"{advice.get('discount_rate', 0):.0%}",
             version=advice.get("catalogue_version") or "–")


def _cell(column: str, v) -> tuple[str, str]:
    """(class, text) of one cell of :func:`advice_html`."""
    if column == "rank":
        return "rank", "" if v is None or v is pd.NA else str(int(v))
    if column in ("measure", "why"):
        return ("m" if column == "measure" else "why"), html.escape(str(v or ""))
    digits = {"npv_10k_cny": 1, "capex_10k_cny": 1, "annual_net_10k_cny_a": 1, "payback_a": 1,
              "abatement_cost_cny_per_t": 0}.get(column)
    text = _amount(v) if column == "co2_t_a" and _finite(v) else fmt(v, digits if digits is not None else 0)
    loss = column in ("npv_10k_cny", "annual_net_10k_cny_a") and _finite(v) and v < 0   # money lost: red
    return ("n neg" if loss else "n"), text


def advice_html(table: pd.DataFrame, lang: str) -> str:
    """:func:`advice_table` as an HTML table (pure): headings in ``lang``, numbers with thousands separators (``–``
    where there is none), rows of measures not recommended greyed, the catalogue's sources as the measure's
    tooltip; each cell carries its heading as ``data-label`` for the phone's cards. Style: :data:`CSS`."""
    numeric = {"npv_10k_cny", "capex_10k_cny", "annual_net_10k_cny_a", "co2_t_a", "payback_a",
               "abatement_cost_cny_per_t"}
    head = "".join(f'<th class="{"n" if c in numeric else ""}">{html.escape(t(k, lang))}</th>' for c, k in SHOWN)
    body, seen_off = [], False
    for r in table.to_dict("records"):
        cls = []
        if not r["recommended"]:
            cls.append("off")
            if not seen_off and body:
                cls.append("first-off")
            seen_off = True
        cells = []
        for c, k in SHOWN:
            kind, text = _cell(c, r[c])
            if text in ("", "–"):
                kind += " na"                    # nothing to show: left out of a phone's card
            title = (f' title="{html.escape(t("advice_sources", lang) + ":" + chr(10) + r["sources"])}"'
                     if c == "measure" and r.get("sources") else "")
            cells.append(f'<td class="{kind}" data-label="{html.escape(t(k, lang))}"{title}>{text}</td>')
        body.append(f'<tr class="{" ".join(cls)}" data-id="{html.escape(str(r["id"]))}">{"".join(cells)}</tr>')
    return (f'<div class="advice-wrap"><table class="advice"><thead><tr>{head}</tr></thead>'
            f'<tbody>{"".join(body)}</tbody></table></div>')
