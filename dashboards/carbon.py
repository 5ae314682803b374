"""碳核算与碳资产 / Carbon & assets: a month's emissions by scope with every line's activity, factor and source, and
the allowance position of the year.

Enterprise users see only their own enterprise (no choice offered); park-wide roles pick the park or any
enterprise. Composes :mod:`anning_lib.portal.energy`, which checks the scope again.
"""

import html

import hvplot.pandas  # noqa: F401  (registers .hvplot on pandas objects)
import pandas as pd
import panel as pn
import param
from bokeh.models import NumeralTickFormatter
from bokeh.models.widgets.tables import NumberFormatter

from anning_lib.errors import AccessError, CarbonError
from anning_lib.i18n import t
from anning_lib.i18n import word as i18n_word
from anning_lib.portal import context, energy
from anning_lib.portal.layout import enterprise_label, fmt, shell, tile, tiles

actor, lang = context.actor(), context.lang()
engine, park = context.engine(), context.park()
PARK = ""                      # the park's value in the scope selector (enterprise ids are never empty)
TABLE = dict(disabled=True, show_index=False, sizing_mode="stretch_width", header_align="left", margin=(4, 8))
NOTE = {"color": "#4a6272", "font-size": "13px"}


def word(prefix: str, value) -> str:
    return i18n_word(prefix, value, lang)


def ent_name(eid: str | None) -> str:
    if not eid:
        return t("carbon_park", lang)
    return enterprise_label(park, eid, lang)


def num(digits: int = 0) -> NumberFormatter:
    return NumberFormatter(format="0,0" + ("." + "0" * digits if digits else ""), text_align="right")


def heading(text: str, level: int = 3) -> pn.pane.Markdown:
    return pn.pane.Markdown(f"{'#' * level} {text}", margin=(12, 10, 0, 10), sizing_mode="stretch_width")


def note(text: str) -> pn.pane.Markdown:
    return pn.pane.Markdown(text, margin=(0, 10), sizing_mode="stretch_width", styles=NOTE)


def alert(text: str, kind: str = "info") -> pn.pane.Alert:
    return pn.pane.Alert(text, alert_type=kind, margin=(4, 10), sizing_mode="stretch_width")


# ---------------------------------------------------------------------------------------------- month results
def scope_chart(totals: dict) -> pn.pane.HoloViews:
    df = pd.DataFrame({"scope": [t(f"carbon_{s}", lang) for s in energy.SCOPES],
                       "co2_t": [totals[s] for s in energy.SCOPES]})
    # horizontal bars: the scope names stay readable on a phone
    plot = df.iloc[::-1].hvplot.barh(x="scope", y="co2_t", color="#11698e", responsive=True, min_height=240,
                                     xlabel="", ylabel=t("carbon_axis_t", lang), xformatter=NumeralTickFormatter(format="0a"),
                                     title=t("carbon_chart_scopes", lang), fontscale=1.15)
    return pn.pane.HoloViews(plot, sizing_mode="stretch_width", min_height=240, margin=(4, 8))


def lines_table(lines: pd.DataFrame, with_enterprise: bool) -> pn.widgets.Tabulator:
    df = lines.copy()
    df["scope"] = df["scope"].map(lambda s: word("carbon", s))
    if not with_enterprise:
        df = df.drop(columns="enterprise_id")
    cols = [c for c in ("enterprise_id", "scope", "category", "item", "activity_amount", "activity_unit",
                        "factor_value", "factor_unit", "co2_t", "factor_source", "factor_version",
                        "activity_source", "formula") if c in df]
    df = df[cols]
    wrap = {"type": "textarea"}
    return pn.widgets.Tabulator(
        df, titles={c: t(f"carbon_col_{c}", lang) for c in cols}, layout="fit_data_table",
        formatters={"activity_amount": num(2), "factor_value": NumberFormatter(format="0.[000000]"),
                    "co2_t": num(1), "factor_source": wrap, "activity_source": wrap, "formula": wrap},
        widths={"factor_source": 300, "activity_source": 220, "formula": 340},
        pagination="local", page_size=10 if with_enterprise else 20,
        frozen_columns=["enterprise_id"] if with_enterprise else [], **TABLE)


def enterprise_table(lines: pd.DataFrame) -> pn.widgets.Tabulator:
    by = energy.totals_by_enterprise(lines).reset_index()
    by.insert(0, "name", by["enterprise_id"].map(ent_name))
    by = by.drop(columns="enterprise_id")
    titles = {"name": t("carbon_enterprise", lang), "total": t("carbon_total", lang)} | {
        s: t(f"carbon_{s}", lang) for s in energy.SCOPES}
    return pn.widgets.Tabulator(by, titles=titles, formatters={c: num() for c in by.columns if c != "name"},
                                layout="fit_data_table", frozen_columns=["name"], **TABLE)


def results_view(eid: str | None, month: str, version: str | None) -> list:
    try:
        acc = energy.carbon_month(engine, actor, eid, month, version=version)
    except (AccessError, CarbonError) as err:
        return [alert(str(err), "danger")]
    tot = acc["totals"]
    out = [heading(t("carbon_results", lang, month=month, who=ent_name(eid)))]
    if eid is None and len(acc["enterprises"]) < len(park.enterprises):
        out.append(alert(t("carbon_partial_park", lang, n=len(acc["enterprises"]), total=len(park.enterprises)),
                         "warning"))
    unit = t("carbon_unit_t", lang)
    out += [tiles(*(tile(t(f"carbon_{s}", lang), fmt(tot[s]), unit) for s in (*energy.SCOPES, "total"))),
            scope_chart(tot)]
    if eid is None:
        out += [heading(t("carbon_by_enterprise", lang), 4), enterprise_table(acc["lines"])]
    out += [heading(t("carbon_lines", lang), 4), note(t("carbon_lines_note", lang)),
            lines_table(acc["lines"], with_enterprise=eid is None)]
    return out


# ---------------------------------------------------------------------------------------------- position
def ledger_table(ledger: pd.DataFrame) -> pn.widgets.Tabulator:
    df = pd.DataFrame({"ts": ledger["ts"].dt.strftime("%Y-%m-%d"), "instrument": ledger["instrument"],
                       "kind": ledger["kind"].map(lambda k: word("carbon_kind", k)),
                       "quantity_t": ledger["quantity_t"], "price_cny_per_t": ledger["price_cny_per_t"],
                       "market": ledger["market"], "note": ledger["note"]})
    return pn.widgets.Tabulator(df, titles={c: t(f"carbon_col_{c}", lang) for c in df.columns},
                                formatters={"quantity_t": num(), "price_cny_per_t": num(2)},
                                layout="fit_data_table", **TABLE)


def position_tiles(p: dict) -> list:
    pos, unit, cny = p["position"], t("carbon_unit_t", lang), t("carbon_unit_cny", lang)
    proj = p["projection"]["linear"]["year_end_co2_t"] if p["projection"] else None
    proj_pos = (p["projected_position"] or {}).get("linear")
    surplus = pos["surplus_t"]
    return [tiles(tile(t("carbon_tile_cea", lang), fmt(pos["cea_balance_t"]), unit),
                  tile(t("carbon_tile_ccer", lang), fmt(pos["ccer_usable_t"]), unit),
                  tile(t("carbon_tile_emissions", lang), fmt(p["verified_co2_t"]), unit),
                  tile(t("carbon_tile_surplus" if surplus >= 0 else "carbon_tile_deficit", lang), fmt(abs(surplus)),
                       unit),
                  tile(t("carbon_tile_value", lang), fmt(pos["value_cny"]) if price.value else "–", cny),
                  tile(t("carbon_tile_projected", lang), fmt(proj), unit),
                  tile(t("carbon_tile_projected_surplus", lang), fmt(proj_pos["surplus_t"]) if proj_pos else "–",
                       unit)),
            pn.pane.HTML(f"<details><summary>{html.escape(t('carbon_formula', lang))}</summary>"
                         f"<code>{html.escape(pos['formula'])}</code><br><code>"
                         f"{html.escape(p['projection']['linear']['formula'] if p['projection'] else '')}</code>"
                         "</details>", margin=(0, 12), sizing_mode="stretch_width", styles=NOTE)]


def position_view(eid: str | None, year: int) -> list:
    value = float(price.value) if price.value is not None else 0.0
    out = []
    if eid is None:
        df = energy.park_positions(engine, actor, year, value)
        if df.empty:
            return out + [alert(t("carbon_no_ledger", lang, year=year))]
        covered = df["covered_frac"].max()
        out.append(note(t("carbon_position_note", lang, year=year, covered=f"{covered:.0%}" if covered == covered
                          else "–")))
        total = df.select_dtypes("number").sum().to_frame().T.assign(enterprise_id=t("carbon_sum", lang))
        total["covered_frac"] = float("nan")
        df = pd.concat([df.assign(enterprise_id=df["enterprise_id"].map(ent_name)), total], ignore_index=True)
        df = df.drop(columns="status").fillna({"error": ""})
        if not price.value:
            df["value_cny"] = float("nan")
        fm = {c: num() for c in df.columns if c.endswith("_t") or c == "value_cny"} | {
            "covered_frac": NumberFormatter(format="0%")}
        titles = {c: t(f"carbon_col_{c}", lang) for c in df.columns if c != "enterprise_id"} | {
            "enterprise_id": t("carbon_enterprise", lang)}
        return out + [pn.widgets.Tabulator(df, titles=titles, formatters=fm, layout="fit_data_table",
                                           frozen_columns=["enterprise_id"], **TABLE)]
    try:
        p = energy.allowance_position(engine, actor, eid, year, value)
    except CarbonError as err:
        return out + [alert(t("carbon_no_position", lang, reason=str(err)), "warning")]
    covered = p["verified_source"].get("covered_frac")
    out.append(note(t("carbon_position_note", lang, year=year, covered=f"{covered:.0%}" if covered else "–")))
    if p["ledger"].empty:
        out.append(alert(t("carbon_no_ledger", lang, year=year), "warning"))
    out += position_tiles(p)
    if not p["ledger"].empty:
        out += [heading(t("carbon_ledger", lang), 4), ledger_table(p["ledger"])]
    return out


# ---------------------------------------------------------------------------------------------- page
choices = energy.carbon_choices(actor, park)
scope = pn.widgets.Select(name=t("carbon_scope_select", lang), width=320, margin=(8, 10),
                          options={ent_name(c): c or PARK for c in choices}, visible=len(choices) > 1)
month = pn.widgets.Select(name=t("carbon_month", lang), width=150, margin=(8, 10))
version = pn.widgets.Select(name=t("carbon_version", lang), width=150, margin=(8, 10))
price = pn.widgets.FloatInput(name=t("carbon_price", lang), start=0.0, step=1.0, width=180, margin=(8, 10))
price_note = note("")
fixed = pn.pane.Markdown(f"### {t('carbon_enterprise', lang)}: {ent_name(choices[0])}" if len(choices) == 1 else "",
                         margin=(8, 10, 0, 10), visible=len(choices) == 1)
results_box = pn.Column(sizing_mode="stretch_width", margin=0)
position_head = heading("")
position_box = pn.Column(sizing_mode="stretch_width", margin=0)
months: dict = {"df": pd.DataFrame()}


def chosen() -> str | None:
    return scope.value or None


def on_scope(_event=None):
    """Months with accounts of the chosen enterprise (or park); the newest one; the default price."""
    eid = chosen()
    df = energy.carbon_months(engine, actor, eid)
    months["df"] = df
    last = energy.trade_price(engine, actor, eid)
    if last:
        price_note.object = t("carbon_price_from_ledger", lang, enterprise=last["enterprise_id"],
                              kind=word("carbon_kind", last["kind"]), date=f"{last['ts']:%Y-%m-%d}",
                              market=last["market"] or "–")
    else:
        price_note.object = t("carbon_price_missing", lang)
    with param.discard_events(price):      # one redraw below, not one per widget
        price.value = last["price_cny_per_t"] if last else None
    opts = list(df["month"])
    with param.discard_events(month):
        month.param.update(options=opts, value=opts[0] if opts else None, visible=bool(opts))
    on_month()


def on_month(_event=None):
    df = months["df"]
    row = df[df["month"] == month.value]
    versions = list(row["versions"].iloc[0]) if len(row) else []
    with param.discard_events(version):
        version.param.update(options=versions, value=versions[0] if versions else None,
                             visible=len(versions) > 1)
    show()


def show(_event=None):
    position_section.visible = bool(month.value)
    if not month.value:
        results_box.objects = [alert(t("carbon_none", lang), "warning")]
        return
    results_box.objects = results_view(chosen(), month.value, version.value)
    show_position()


def show_position(_event=None):
    if month.value:
        year = int(month.value[:4])
        position_head.object = f"### {t('carbon_position', lang, year=year)}"
        position_box.objects = position_view(chosen(), year)


position_section = pn.Column(position_head, price, price_note, position_box, sizing_mode="stretch_width",
                             margin=0)
if choices:
    scope.value = choices[0] or PARK       # before the watchers: one first drawing
    on_scope()
    scope.param.watch(on_scope, "value")
    month.param.watch(on_month, "value")
    version.param.watch(show, "value")
    price.param.watch(show_position, "value")
    body = [fixed, pn.FlexBox(scope, month, version, flex_wrap="wrap", sizing_mode="stretch_width"), results_box,
            position_section]
else:
    body = [alert(t("carbon_none_visible", lang), "warning")]
shell("carbon", actor, lang, *body).servable(title=t("page_carbon", lang))
