"""The sections of the monthly carbon statement as HTML (pure): from :func:`anning_lib.reports.statement.statement_data`.

Tables carry a class per section (``scopes``, ``lines``, ``factors``, ``energy``, ``trend``, ``peers``,
``position``) so tests and readers find them; every tCO2 figure has three decimals (to the kilogram).
"""

from __future__ import annotations

import math

import pandas as pd

from anning_lib.i18n import t, word
from anning_lib.reports import html as h
from anning_lib.reports.statement import DEC

SCOPE_KEYS = {"scope1": "carbon_scope1", "scope2_location": "carbon_scope2_location",
              "scope2_market": "carbon_scope2_market", "scope3": "carbon_scope3"}


def _cols(df: pd.DataFrame, prefix: str, lang: str) -> dict[str, str]:
    return {c: t(f"{prefix}{c}", lang) for c in df.columns}


def title(d: dict, lang: str) -> str:
    """The heading and the meta line (enterprise, sector, factor set, when produced)."""
    meta = t("st_meta", lang, id=d["enterprise_id"], sector=word("sector", d["sector"], lang),
             version=d["factor_version"], at=f"{d['produced_at']:%Y-%m-%d %H:%M}")
    return h.heading(t("st_title", lang, name=d["name"], month=d["month"]), 1) + h.para(meta, "meta")


def summary(d: dict, lang: str) -> str:
    """Key figures: total, scope 1, scope 2, intensity, change on the previous month and year."""
    tot = d["totals"]
    items = [(t("st_kpi_total", lang), h.num(tot["total"], 3)), (t("st_kpi_scope1", lang), h.num(tot["scope1"], 3)),
             (t("st_kpi_scope2", lang), h.num(tot["scope2_location"], 3))]
    ratio = d["intensity"] or {}
    if _finite(ratio.get("co2_t_per_t")):
        items.append((t("st_kpi_intensity_t", lang), h.num(ratio["co2_t_per_t"], 4)))
    if _finite(ratio.get("co2_t_per_10k_cny")):
        items.append((t("st_kpi_intensity_v", lang), h.num(ratio["co2_t_per_10k_cny"], 4)))
    for key, label in (("mom", "st_kpi_mom"), ("yoy", "st_kpi_yoy")):
        c = (d["change"] or {}).get(key)
        if c:
            items.append((t(label, lang, prev=c["previous_month"]), h.pct(c["change_frac"])))
    return h.heading(t("st_summary", lang)) + h.kpis(items)


def _finite(x) -> bool:
    return x is not None and isinstance(x, (int, float)) and math.isfinite(x)


def scopes(d: dict, lang: str) -> str:
    """Emissions by scope with their share of the total; the total row (scope 1 + scope 2 location)."""
    tot = d["totals"]
    rows = [{"scope": t(SCOPE_KEYS[s], lang), "co2_t": tot[s],
             "share": h.pct(tot[s] / tot["total"]).lstrip("+") if tot["total"] and s in ("scope1", "scope2_location")
             else "–"} for s in SCOPE_KEYS]
    df = pd.DataFrame(rows)
    titles = {"scope": t("st_col_scope", lang), "co2_t": t("st_col_co2_t", lang), "share": t("st_col_share", lang)}
    body = h.table(df, titles=titles, decimals={"co2_t": 3}, css_class="scopes",
                   total_row={"scope": t("carbon_total", lang), "co2_t": tot["total"], "share": "100.0%"})
    return h.heading(t("st_scopes", lang)) + body + h.para(t("st_scope_note", lang), "meta")


def sources(d: dict, lang: str) -> str:
    """Every line of the account: activity × factor = tCO2, with the activity's source (memo lines last)."""
    cols = ["scope", "category", "item", "activity_amount", "activity_unit", "activity_source", "factor_value",
            "factor_unit", "co2_t"]
    df = d["lines"][cols].copy()
    df["scope"] = [t(f"st_short_{s}", lang) for s in df["scope"]]
    return h.heading(t("st_sources", lang)) + h.table(df, titles=_cols(df, "carbon_col_", lang), decimals=DEC,
                                                      css_class="lines")


def factors(d: dict, lang: str) -> str:
    """The factors used, each once, with the document it comes from."""
    lines = d["lines"][d["lines"]["factor_unit"] != ""]
    df = (lines[["item", "factor_value", "factor_unit", "factor_source"]].drop_duplicates()
          .sort_values(["item", "factor_unit"]).reset_index(drop=True))
    return h.heading(t("st_factors", lang)) + h.table(df, titles=_cols(df, "carbon_col_", lang), decimals=DEC,
                                                      css_class="factors")


def energy_section(energy_df: pd.DataFrame, lang: str, heading_key: str, css_class: str) -> str:
    """Energy by carrier (amounts in their units and in GJ) under heading ``heading_key``; shared by the reports."""
    df = energy_df.copy()
    df["carrier"] = [word("carrier", c, lang) for c in df["carrier"]]
    titles = {c: t(f"st_col_{c}", lang) for c in df.columns}
    return h.heading(t(heading_key, lang)) + h.table(df, titles=titles, decimals={"amount": 3, "e_gj": 1},
                                                     css_class=css_class)


def trend_section(trend_df: pd.DataFrame, month: str, lang: str, css_class: str, height_in: float = 2.6) -> str:
    """Bars of monthly totals [tCO2] (``month`` highlighted) and the table of the months with a value."""
    import matplotlib.pyplot as plt

    h.use_cjk_font()
    fig, ax = plt.subplots(figsize=(7.0, height_in))
    colours = ["#0b6e4f" if m == month else "#8fb9a8" for m in trend_df["month"]]
    ax.bar(trend_df["month"], trend_df["total_co2_t"].fillna(0.0), color=colours)
    ax.set_ylabel(t("st_trend_axis", lang), fontsize=8)
    ax.tick_params(labelsize=7)
    ax.tick_params(axis="x", rotation=45)
    ax.spines[["top", "right"]].set_visible(False)
    table = h.table(trend_df.loc[trend_df["total_co2_t"].notna(), ["month", "total_co2_t"]],
                    titles={"month": t("st_col_month", lang), "total_co2_t": t("st_col_co2_t", lang)},
                    decimals={"total_co2_t": 3}, css_class=css_class)
    return (h.heading(t("st_trend", lang)) + h.figure(fig, alt=t("st_trend", lang)) + table
            + h.para(t("st_trend_missing", lang), "meta"))


def energy(d: dict, lang: str) -> str:
    """Energy by carrier: amounts in their units and in GJ."""
    return energy_section(d["energy"], lang, "st_energy", "energy")


def trend(d: dict, lang: str) -> str:
    """Bars of the last 12 months' totals and their table."""
    return trend_section(d["trend"], d["month"], lang, "trend")


def peers(d: dict, lang: str) -> str:
    """The sector ranking by emissions per tonne of product (peers anonymous)."""
    p = d["peers"]
    if len(p) < 2:
        return h.heading(t("st_peers", lang)) + h.para(t("st_peers_none", lang))
    n, names = 0, []
    for r in p.itertuples():
        if r.is_self:
            names.append(t("st_self", lang))
        else:
            n += 1
            names.append(t("st_peer", lang, n=n))
    df = pd.DataFrame({"peer": names, "co2_t_per_t": p["co2_t_per_t"].to_numpy(),
                       "co2_t_per_10k_cny": p["co2_t_per_10k_cny"].to_numpy()})
    rank = int(p["is_self"].to_numpy().nonzero()[0][0]) + 1
    titles = {c: t(f"st_col_{c}", lang) for c in df.columns}
    return (h.heading(t("st_peers", lang)) + h.table(df, titles=titles, decimals={"co2_t_per_t": 4,
                                                                                  "co2_t_per_10k_cny": 4},
                                                     css_class="peers")
            + h.para(t("st_peers_note", lang, rank=rank, n=len(p)), "meta"))


def position(d: dict, lang: str) -> str:
    """The year's allowance position: accounted emissions, allowances available, surplus or deficit, value."""
    year = int(d["month"][:4])
    head = h.heading(t("st_position", lang, year=year))
    p = d["position"]
    if p is None:
        return head + h.para(t("st_position_none", lang))
    pos = p["position"]
    rows = [(t("st_pos_verified", lang), pos["verified_co2_t"]), (t("st_pos_available", lang), pos["available_t"]),
            (t("st_pos_surplus", lang), pos["surplus_t"])]
    if d["price"]:
        rows.append((t("st_pos_value", lang, price=h.num(d["price"]["price_cny_per_t"], 2)), pos["value_cny"]))
    linear = (p["projection"] or {}).get("linear") or {}
    proj = ((p["projected_position"] or {}).get("linear")) or {}
    if linear.get("year_end_co2_t") is not None:
        rows += [(t("st_pos_projected", lang), linear["year_end_co2_t"]),
                 (t("st_pos_projected_surplus", lang), proj.get("surplus_t"))]
    df = pd.DataFrame(rows, columns=["item", "value"])
    body = h.table(df, titles={"item": "", "value": ""}, decimals={"value": 3}, css_class="position")
    return head + body + ("" if d["price"] else h.para(t("st_pos_unpriced", lang), "meta"))


def advice(d: dict, lang: str, top: int = 5) -> str:
    """The recommended measures, best net present value first (:mod:`anning_lib.advice`), with the data behind each."""
    a = d.get("advice") or {}
    head = h.heading(t("st_advice", lang))
    if "measures" not in a:
        return head + h.para(t("st_advice_none", lang, error=a.get("error", "")))
    rec = [it for it in a["measures"] if it["recommended"]][:top]
    b = a.get("benchmark")
    if b and b.get("value") is not None:
        lv = b["levels"]
        head += h.para(t("st_benchmark", lang, indicator=b["indicator"], product=b["product"], value=h.num(b["value"], 1),
                         unit=b["unit"], limit=h.num(lv.get("limit"), 0), grade1=h.num(lv.get("grade1"), 0),
                         position=t(f"st_benchmark_{b['position']}", lang), boundary=b["boundary"]))
    if not rec:
        return head + h.para(t("st_advice_nothing", lang))
    df = pd.DataFrame([{"measure": it["name"] if lang == "zh_CN" else it["name_en"],
                        "npv": it["npv_cny"] / 1e4, "capex": it["capex_cny"] / 1e4,
                        "net": it["annual_net_cny"] / 1e4, "co2": it["co2_t_a"],
                        "mac": it["abatement_cost_cny_per_t"]} for it in rec])
    titles = {c: t(f"st_advice_col_{c}", lang) for c in df.columns}
    first = pd.Timestamp(a["start"]).tz_convert("Asia/Shanghai")
    last = pd.Timestamp(a["end"]).tz_convert("Asia/Shanghai") - pd.Timedelta("1ns")     # the end is exclusive
    note = t("st_advice_note", lang, start=f"{first:%Y-%m-%d}", end=f"{last:%Y-%m-%d}",
             rate=f"{a['discount_rate']:.0%}", version=a["catalogue_version"], tariff=a["prices"]["tariff"])
    return (head + h.table(df, titles=titles, decimals={"npv": 1, "capex": 1, "net": 1, "co2": 1, "mac": 0},
                           css_class="advice") + h.para(note, "meta"))


def method(d: dict, lang: str) -> str:
    return h.heading(t("st_method", lang)) + h.para(t("st_method_text", lang))


SECTIONS = (title, summary, scopes, sources, factors, energy, trend, peers, position, advice, method)
"""The statement's sections in order (the template shows each in its own cell)."""
