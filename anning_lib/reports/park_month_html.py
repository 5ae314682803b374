"""The sections of the monthly park energy and carbon report as HTML (pure), from
:func:`anning_lib.reports.park_month.park_month_data`. Table classes: ``pm-enterprises``, ``pm-sectors``,
``pm-energy``, ``pm-trend``, ``pm-alarms``."""

from __future__ import annotations

from anning_lib.i18n import t, word
from anning_lib.reports import html as h
from anning_lib.reports.statement_html import SCOPE_KEYS, energy_section, trend_section

SCOPE_COLS = ["scope1", "scope2_location", "scope2_market", "scope3", "total"]


def _titles(lang: str) -> dict[str, str]:
    return {"enterprise_id": t("pm_col_enterprise_id", lang), "name": t("pm_col_name", lang),
            "sector": t("pm_col_sector", lang), "share_frac": t("st_col_share", lang),
            "total": t("pm_col_total", lang), **{s: t(f"st_short_{s}", lang) for s in SCOPE_KEYS}}


def title(d: dict, lang: str) -> str:
    meta = t("pm_meta", lang, version=d["factor_version"], at=f"{d['produced_at']:%Y-%m-%d %H:%M}",
             n=len(d["by_enterprise"]))
    return h.heading(t("pm_title", lang, month=d["month"]), 1) + h.para(meta, "meta")


def summary(d: dict, lang: str) -> str:
    tot, e = d["totals"], d["energy"]
    elec = e.loc[e["carrier"] == "electricity", "amount"].sum() / 1000.0 if len(e) else 0.0
    pv = e.loc[e["carrier"] == "pv_self_use", "amount"].sum() / 1000.0 if len(e) else 0.0
    items = [(t("st_kpi_total", lang), h.num(tot["total"], 3)), (t("st_kpi_scope1", lang), h.num(tot["scope1"], 3)),
             (t("st_kpi_scope2", lang), h.num(tot["scope2_location"], 3)),
             (t("pm_kpi_energy_gj", lang), h.num(e["e_gj"].sum(), 1)),
             (t("pm_kpi_electricity_mwh", lang), h.num(elec, 1)), (t("pm_kpi_pv_mwh", lang), h.num(pv, 1))]
    return h.heading(t("st_summary", lang)) + h.kpis(items)


def enterprises(d: dict, lang: str) -> str:
    df = d["by_enterprise"][["enterprise_id", "name", "sector", *SCOPE_COLS, "share_frac"]].copy()
    df["sector"] = [word("sector", s, lang) for s in df["sector"]]
    df["share_frac"] = [h.pct(x).lstrip("+") for x in df["share_frac"]]
    total = {"name": t("pm_park", lang), **{c: d["totals"][c] for c in SCOPE_COLS}, "share_frac": "100.0%"}
    return (h.heading(t("pm_enterprises", lang))
            + h.table(df, titles=_titles(lang), decimals={c: 3 for c in SCOPE_COLS}, css_class="pm-enterprises",
                      total_row=total) + h.para(t("st_scope_note", lang), "meta"))


def sectors(d: dict, lang: str) -> str:
    import matplotlib.pyplot as plt

    h.use_cjk_font()
    df = d["by_sector"][["sector", *SCOPE_COLS]].copy()
    labels = [word("sector", s, lang) for s in df["sector"]]
    fig, ax = plt.subplots(figsize=(7.0, 2.4))
    ax.barh(labels[::-1], df["scope1"][::-1], color="#0b6e4f", label=t(SCOPE_KEYS["scope1"], lang))
    ax.barh(labels[::-1], df["scope2_location"][::-1], left=df["scope1"][::-1], color="#8fb9a8",
            label=t(SCOPE_KEYS["scope2_location"], lang))
    ax.set_xlabel(t("st_trend_axis", lang), fontsize=8)
    ax.tick_params(labelsize=7)
    ax.legend(fontsize=7, frameon=False)
    ax.spines[["top", "right"]].set_visible(False)
    df["sector"] = labels
    return (h.heading(t("pm_sectors", lang)) + h.figure(fig, alt=t("pm_sectors", lang))
            + h.table(df, titles=_titles(lang), decimals={c: 3 for c in SCOPE_COLS}, css_class="pm-sectors"))


def energy(d: dict, lang: str) -> str:
    return energy_section(d["energy"], lang, "pm_energy", "pm-energy")


def trend(d: dict, lang: str) -> str:
    return trend_section(d["trend"], d["month"], lang, "pm-trend", height_in=2.4)


def alarms(d: dict, lang: str) -> str:
    df = d["alarms"].copy()
    head = h.heading(t("pm_alarms", lang))
    if df.empty:
        return head + h.para(t("pm_alarms_none", lang))
    df["enterprise_id"] = [e if isinstance(e, str) else t("reports_park_level", lang) for e in df["enterprise_id"]]
    titles = {"enterprise_id": t("pm_col_enterprise_id", lang), "total": t("pm_col_total", lang),
              **{s: word("alarms_sev", s, lang) for s in ("critical", "high", "medium", "low")}}
    return head + h.table(df, titles=titles, decimals={c: 0 for c in df.columns if c != "enterprise_id"},
                          css_class="pm-alarms")


def method(d: dict, lang: str) -> str:
    return h.heading(t("st_method", lang)) + h.para(t("pm_method_text", lang)) + h.para(t("st_method_text", lang))


SECTIONS = (title, summary, enterprises, sectors, energy, trend, alarms, method)
