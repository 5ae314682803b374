"""The sections of the monthly dispatch and demand-response settlement report as HTML (pure): from
:func:`anning_lib.reports.settlement.settlement_data`.

Tables carry a class per section (``settlement``, ``bands``, ``tariffs``, ``schedules``, ``approvals``,
``commands``, ``plan``) so tests and readers find them. Energy in kWh to the kWh, value in CNY to the fen; the
park's total row closes the storage tables.
"""

from __future__ import annotations

import math

import pandas as pd

from anning_lib.dispatch.tariff import BANDS
from anning_lib.i18n import t, word
from anning_lib.reports import html as h
from anning_lib.reports.settlement import DEC


def _finite(x) -> bool:
    return x is not None and isinstance(x, (int, float)) and math.isfinite(x)


def _site(row, lang: str) -> str:
    if row["site"] == "park":
        return t("set_site_park", lang)
    return f"{row['enterprise_id']} {row['site_name'] or ''}".strip()


def _pct(frac) -> float:
    return 100.0 * frac if _finite(frac) else float("nan")


def title(d: dict, lang: str) -> str:
    """The heading and the meta line (number of storages, the readings' coverage, when produced)."""
    cov = d["totals"].get("coverage_frac")
    meta = t("set_meta", lang, n=len(d["storages"]), coverage=f"{_pct(cov):.1f}%" if _finite(cov) else "–",
             at=f"{d['produced_at']:%Y-%m-%d %H:%M}")
    return h.heading(t("set_title", lang, month=d["month"]), 1) + h.para(meta, "meta")


def summary(d: dict, lang: str) -> str:
    """Key figures of the park: arbitrage value, energy discharged and charged, cycles, round-trip efficiency."""
    tot = d["totals"]
    items = [(t("set_kpi_value", lang), h.num(tot.get("value_cny"), 2)),
             (t("set_kpi_discharged", lang), h.num(tot.get("discharged_kwh", float("nan")) / 1000.0, 3)),
             (t("set_kpi_charged", lang), h.num(tot.get("charged_kwh", float("nan")) / 1000.0, 3)),
             (t("set_kpi_cycles", lang), h.num(tot.get("cycles"), 2)),
             (t("set_kpi_efficiency", lang), f"{_pct(tot.get('efficiency_frac')):.2f}%"
              if _finite(tot.get("efficiency_frac")) else "–")]
    return h.heading(t("set_summary", lang)) + h.kpis(items)


def storages(d: dict, lang: str) -> str:
    """Per storage: usable energy, energy charged and discharged, cycles, efficiency, value; the park's total."""
    s = d["storages"]
    if s.empty:
        return h.heading(t("set_storages", lang)) + h.para(t("set_storages_none", lang))
    df = pd.DataFrame({
        "site": [_site(r, lang) for _i, r in s.iterrows()],
        "storage": s["storage_id"].to_numpy(),
        "usable_kwh": s["usable_kwh"].astype(float), "charged_kwh": s["charged_kwh"].astype(float),
        "discharged_kwh": s["discharged_kwh"].astype(float), "cycles": s["cycles"].astype(float),
        "efficiency_pct": [_pct(x) for x in s["efficiency_frac"]], "value_cny": s["value_cny"].astype(float)})
    tot = d["totals"]
    total = {"site": t("set_total", lang), "usable_kwh": tot["usable_kwh"], "charged_kwh": tot["charged_kwh"],
             "discharged_kwh": tot["discharged_kwh"], "cycles": tot["cycles"],
             "efficiency_pct": _pct(tot["efficiency_frac"]), "value_cny": tot["value_cny"]}
    titles = {c: t(f"set_col_{c}", lang) for c in df.columns}
    body = h.table(df, titles=titles, decimals=DEC, css_class="settlement", total_row=total)
    notes = [h.para(t("set_storages_note", lang), "meta")]
    gaps = s[s["coverage_frac"].astype(float) < 1.0]
    if len(gaps):
        listed = ", ".join(f"{r.storage_id} {_pct(r.coverage_frac):.1f}%" for r in gaps.itertuples())
        notes.append(h.note(t("set_coverage_note", lang, list=listed)))
    return h.heading(t("set_storages", lang)) + body + "".join(notes)


def bands(d: dict, lang: str) -> str:
    """Energy charged and discharged per tariff band and storage, and the prices of the tariffs used."""
    s = d["storages"]
    head = h.heading(t("set_bands", lang))
    if s.empty:
        return head + h.para(t("set_storages_none", lang))
    cols = [f"{k}_kwh_{b}" for k in ("charged", "discharged") for b in BANDS]
    df = pd.concat([pd.DataFrame({"storage": s["storage_id"]}), s[cols].astype(float)], axis=1)
    titles = {"storage": t("set_col_storage", lang)}
    for k in ("charged", "discharged"):
        for b in BANDS:
            titles[f"{k}_kwh_{b}"] = t(f"set_col_{k}_band", lang, band=t(f"set_band_{b}", lang))
    total = {"storage": t("set_total", lang), **{c: d["totals"].get(c) for c in cols}}
    table = h.table(df, titles=titles, decimals=DEC, css_class="bands", total_row=total)
    tar = d["tariffs"]
    if tar.empty:
        return head + table
    users = s.groupby("tariff_id")["storage_id"].agg(", ".join)
    wide = tar.pivot(index="tariff_id", columns="band", values="price_cny_per_kwh")
    names = tar.drop_duplicates("tariff_id").set_index("tariff_id")["name"]
    pt = pd.DataFrame({"tariff": [names[i] for i in wide.index],
                       **{b: wide[b].to_numpy() for b in BANDS if b in wide},
                       "storages": [users.get(i, "") for i in wide.index]})
    pt_titles = {"tariff": t("set_col_tariff", lang), "storages": t("set_col_storages", lang),
                 **{b: t("set_col_price_band", lang, band=t(f"set_band_{b}", lang)) for b in BANDS}}
    prices = h.table(pt, titles=pt_titles, decimals={b: DEC["price_cny_per_kwh"] for b in BANDS}, css_class="tariffs")
    return (head + table + h.heading(t("set_tariffs", lang), 3) + prices
            + h.para(t("set_tariffs_note", lang), "meta"))


def daily(d: dict, lang: str) -> str:
    """Stacked bars of each day's value per storage [CNY]."""
    import matplotlib.pyplot as plt

    df = d["daily"]
    head = h.heading(t("set_daily", lang))
    if df.empty or df.shape[1] == 0:
        return head + h.para(t("set_storages_none", lang))
    h.use_cjk_font()
    fig, ax = plt.subplots(figsize=(7.0, 2.6))
    bottom_pos = pd.Series(0.0, index=df.index)
    bottom_neg = pd.Series(0.0, index=df.index)
    palette = ["#0b6e4f", "#8fb9a8", "#f2a900", "#4a6272", "#c94c4c", "#6b8e23", "#7b68ee", "#a0522d"]
    labels = [x[-2:] for x in df.index]
    for k, col in enumerate(df.columns):
        v = df[col]
        base = bottom_pos.where(v >= 0, bottom_neg)
        ax.bar(labels, v, bottom=base, color=palette[k % len(palette)], label=col, width=0.8)
        bottom_pos = bottom_pos + v.clip(lower=0)
        bottom_neg = bottom_neg + v.clip(upper=0)
    ax.axhline(0.0, color="#1d2b36", linewidth=0.5)
    ax.set_ylabel(t("set_daily_axis", lang), fontsize=8)
    ax.tick_params(labelsize=7)
    ax.legend(fontsize=7, ncols=min(4, df.shape[1]), frameon=False, loc="upper center", bbox_to_anchor=(0.5, -0.12))
    ax.spines[["top", "right"]].set_visible(False)
    return head + h.figure(fig, alt=t("set_daily", lang)) + h.para(t("set_daily_note", lang), "meta")


def plan(d: dict, lang: str) -> str:
    """Schedules by site and status, approvals by approver, commands by mode and outcome, planned against
    measured energy."""
    head = h.heading(t("set_plan", lang))
    sch, cmd = d["schedule_counts"], d["commands"]
    if sch.empty and cmd.empty and d["plan"].empty:
        return head + h.para(t("set_plan_none", lang))
    parts = [head]
    # schedules: one row per site, one column per status
    parts.append(h.heading(t("set_schedules", lang), 3))
    if sch.empty:
        parts.append(h.para(t("set_schedules_none", lang)))
    else:
        wide = sch.pivot(index="site", columns="status", values="n").fillna(0).astype(int)
        order = sorted(wide.index, key=lambda x: (x != "park", x))
        wide = wide.loc[order]
        df = pd.DataFrame({"site": [t("set_site_park", lang) if x == "park" else x for x in wide.index]})
        titles = {"site": t("set_col_site", lang), "n": t("set_col_n", lang)}
        for st in wide.columns:
            df[st] = wide[st].to_numpy()
            titles[st] = word("dispatch_status", st, lang)
        df["n"] = wide.sum(axis=1).to_numpy()
        total = {"site": t("set_total", lang), **{c: int(df[c].sum()) for c in df.columns if c != "site"}}
        parts.append(h.table(df, titles=titles, decimals={c: 0 for c in df.columns if c != "site"},
                             css_class="schedules", total_row=total))
    ap = d["approvals"]
    if ap.empty:
        parts.append(h.para(t("set_approvals_none", lang), "meta"))
    else:
        df = pd.DataFrame({"who": [f"{r.approved_by} {r.approved_by_name}".strip() for r in ap.itertuples()],
                           "n": ap["n"].astype(int).to_numpy()})
        parts.append(h.heading(t("set_approvals", lang), 3))
        parts.append(h.table(df, titles={"who": t("set_col_approver", lang), "n": t("set_col_n", lang)},
                             decimals={"n": 0}, css_class="approvals"))
    # commands
    parts.append(h.heading(t("set_commands", lang), 3))
    if cmd.empty:
        parts.append(h.para(t("set_commands_none", lang)))
    else:
        df = pd.DataFrame({"mode": [word("dispatch_mode", m, lang) for m in cmd["mode"]],
                           "status": [word("dispatch_cmd", s, lang) for s in cmd["status"]],
                           "n": cmd["n"].astype(int).to_numpy()})
        parts.append(h.table(df, titles={"mode": t("set_col_mode", lang), "status": t("set_col_status", lang),
                                         "n": t("set_col_n", lang)}, decimals={"n": 0}, css_class="commands",
                             total_row={"mode": t("set_total", lang), "n": int(df["n"].sum())}))
    # planned against measured
    parts.append(h.heading(t("set_plan_vs", lang), 3))
    pv = d["plan"]
    if pv.empty:
        parts.append(h.para(t("set_plan_vs_none", lang)))
    else:
        df = pv.copy()
        df["discharge_deviation_pct"] = [_pct(x) for x in df.pop("discharge_deviation_frac")]
        titles = {c: t(f"set_col_{c}", lang) for c in df.columns}
        dec = {"quarters": 0, "planned_discharged_kwh": 0, "measured_discharged_kwh": 0, "planned_charged_kwh": 0,
               "measured_charged_kwh": 0, "discharge_deviation_pct": 1}
        parts.append(h.table(df, titles=titles, decimals=dec, css_class="plan"))
        parts.append(h.para(t("set_plan_note", lang), "meta"))
    return "".join(parts)


def demand_response(d: dict, lang: str) -> str:
    """One plain line: demand-response events are not stored in the database, so none is settled here."""
    return h.heading(t("set_dr", lang)) + h.para(t("set_dr_none", lang))


def method(d: dict, lang: str) -> str:
    return h.heading(t("set_method", lang)) + h.para(t("set_method_text", lang))


SECTIONS = (title, summary, storages, bands, daily, plan, demand_response, method)
"""The report's sections in order (the template shows each in its own cell)."""
