"""调度与虚拟电厂 / Dispatch & VPP: the newest plan of each storage site, plan against measured, approval of
advisory plans, recent setpoint commands and the park's flexible resources (operators and admins).

Composes :mod:`anning_lib.portal.energy`; the page writes no setpoint (execution stays with the control loop).
"""

import datetime as dt

import holoviews as hv
import hvplot.pandas  # noqa: F401  (registers .hvplot on pandas objects)
import pandas as pd
import panel as pn
from bokeh.models.widgets.tables import NumberFormatter

from anning_lib.auth.access import allowed, require_role
from anning_lib.errors import AccessError, DispatchError
from anning_lib.i18n import t
from anning_lib.i18n import word as i18n_word
from anning_lib.portal import context, energy
from anning_lib.portal.layout import enterprise_label, fmt, shell, tile, tiles

actor, lang = context.actor(), context.lang()
engine, park = context.engine(), context.park()
require_role(actor, energy.READ_DISPATCH)   # the page is authorised by role; the data access checks again

TABLE = dict(disabled=True, show_index=False, sizing_mode="stretch_width", layout="fit_data_table",
             header_align="left", margin=(4, 8))


def word(prefix: str, value) -> str:
    return i18n_word(prefix, value, lang)


def site_name(site: str) -> str:
    if site == energy.PARK:
        return t("dispatch_site_park", lang)
    return enterprise_label(park, site, lang)


def when(ts) -> str:
    return "–" if ts is None or pd.isna(ts) else f"{ts:%m-%d %H:%M}"


def heading(key: str) -> pn.pane.Markdown:
    return pn.pane.Markdown(f"### {t(key, lang)}", margin=(12, 10, 0, 10), sizing_mode="stretch_width")


def kw_fmt(digits: int = 0) -> NumberFormatter:
    return NumberFormatter(format="0,0" + ("." + "0" * digits if digits else ""), text_align="right")


# ---------------------------------------------------------------------------------------------- schedules
def schedules_table(latest: pd.DataFrame) -> pn.viewable.Viewable:
    if latest.empty:
        return pn.pane.Alert(t("dispatch_none", lang), alert_type="warning", margin=(4, 10))
    df = pd.DataFrame({
        "site": latest["site"].map(site_name), "status": latest["status"].map(lambda s: word("dispatch_status", s)),
        "id": latest["id"],
        "strategy": latest["strategy"].map(lambda s: word("dispatch_strategy", s)),
        "objective": latest["objective_cny"], "savings": latest["savings_cny"],
        "horizon": [f"{when(a)} – {when(b)}" for a, b in zip(latest["horizon_start"], latest["horizon_end"])],
        "created": latest["created_at"].map(when), "approved_by": latest["approved_by"].fillna("–"),
        "approved_at": latest["approved_at"].map(when)})
    titles = {c: t(f"dispatch_col_{c}", lang) for c in df.columns if c != "site"} | {"site": t("dispatch_site", lang)}
    return pn.widgets.Tabulator(df, titles=titles, formatters={"objective": kw_fmt(), "savings": kw_fmt()},
                                **TABLE)


def label(dev: str, storages: list[str], key: str) -> str:
    """Legend entry: ``plan``, or ``E05-BESS plan`` when a site has several storages (short legends fit a phone)."""
    return t(key, lang) if len(storages) == 1 else f"{dev} {t(key, lang)}"


def power_chart(plan: pd.DataFrame, actual: pd.DataFrame, cmds: pd.DataFrame, storages: list[str], now: pd.Timestamp):
    """Plan (steps), measured (line, downsampled) and commanded setpoints (points) of each storage [kW]."""
    parts = []
    for dev in storages:   # one value dimension per chart ("p_kw"), so the two charts do not share a y axis
        if f"{dev}.p_kw" in actual and actual[f"{dev}.p_kw"].notna().any():
            s = actual[f"{dev}.p_kw"].dropna().rename("p_kw")
            parts.append(s.hvplot.line(downsample=True, line_width=1.5, responsive=True,
                                       label=label(dev, storages, "dispatch_measured")))
        s = plan[f"{dev}.p_kw"].rename("p_kw")
        parts.append(s.hvplot.step(where="post", line_dash="dashed", line_width=2, responsive=True,
                                   label=label(dev, storages, "dispatch_plan")))
        c = cmds[cmds["device_id"] == dev]
        if not c.empty:
            pts = pd.Series(c["setpoint_p_kw"].to_numpy(), index=c["due_at"].dt.tz_localize(None),
                            name="p_kw").rename_axis("ts").sort_index()
            parts.append(pts.hvplot.scatter(size=60, marker="triangle", color="#d62728", responsive=True,
                                            label=label(dev, storages, "dispatch_commanded")))
    return overlay(parts, now, t("dispatch_axis_kw", lang))


def soc_chart(plan: pd.DataFrame, actual: pd.DataFrame, storages: list[str], now: pd.Timestamp):
    parts = []
    for dev in storages:
        if f"{dev}.soc_frac" in actual and actual[f"{dev}.soc_frac"].notna().any():
            s = (actual[f"{dev}.soc_frac"].dropna() * 100).rename("soc_pct")
            parts.append(s.hvplot.line(downsample=True, line_width=1.5, responsive=True,
                                       label=label(dev, storages, "dispatch_measured")))
        s = (plan[f"{dev}.soc_frac"] * 100).rename("soc_pct")
        parts.append(s.hvplot.step(where="post", line_dash="dashed", line_width=2, responsive=True,
                                   label=label(dev, storages, "dispatch_plan")))
    return overlay(parts, now, t("dispatch_axis_soc", lang), ylim=(0, 100))


def overlay(parts, now: pd.Timestamp, ylabel: str, ylim=None):
    plot = hv.Overlay([*parts, hv.VLine(now.tz_localize(None)).opts(color="#888", line_dash="dotted")]).collate()
    opts = dict(responsive=True, min_height=340, legend_position="top", xlabel=t("dispatch_axis_time", lang),
                ylabel=ylabel, show_grid=True, toolbar="above", active_tools=[])
    if ylim:
        opts["ylim"] = ylim
    return pn.pane.HoloViews(plot.opts(**opts), sizing_mode="stretch_width", min_height=340, margin=(4, 8))


def local_naive(df: pd.DataFrame) -> pd.DataFrame:
    """Bokeh shows naive times as they are: plot in local (Asia/Shanghai) time."""
    out = df.copy()
    out.index = out.index.tz_localize(None)
    return out


def site_view(site: str, latest: pd.DataFrame) -> pn.Column:
    """Tiles, approval and the plan/measured charts of one site's newest plan."""
    row = latest[latest["site"] == site].iloc[0]
    sched = energy.load_schedule(engine, actor, int(row["id"]))
    plan = energy.plan_frame(sched["plan"])
    storages = energy.plan_storages(sched["plan"])
    now = pd.Timestamp.now(tz=energy.TZ)
    start = plan.index[0] - pd.Timedelta(hours=24)
    actual = energy.storage_actuals(engine, actor, storages, start, min(now, plan.index[-1]) + pd.Timedelta("1s"))
    cmds = energy.recent_commands(engine, actor, devices=storages, limit=200)
    cmds = cmds[cmds["due_at"] >= start]
    summary = tiles(
        tile(t("dispatch_tile_status", lang), word("dispatch_status", row["status"]), f"#{int(row['id'])}"),
        tile(t("dispatch_tile_objective", lang), fmt(row["objective_cny"]), t("dispatch_unit_cny", lang)),
        tile(t("dispatch_tile_savings", lang), fmt(row["savings_cny"]), t("dispatch_unit_cny", lang)),
        tile(t("dispatch_tile_peak", lang), fmt(plan["grid_import_kw"].max()), "kW"))
    parts = [summary, approval(int(row["id"]), row["status"])]
    if actual.empty:
        parts.append(pn.pane.Alert(t("dispatch_no_measured", lang), alert_type="info", margin=(4, 10)))
    plan_l, actual_l = local_naive(plan), local_naive(actual) if not actual.empty else actual
    parts += [heading("dispatch_chart_p"), power_chart(plan_l, actual_l, cmds, storages, now),
              heading("dispatch_chart_soc"), soc_chart(plan_l, actual_l, storages, now)]
    return pn.Column(*parts, sizing_mode="stretch_width", margin=0)


def approval(schedule_id: int, status: str) -> pn.viewable.Viewable:
    """The approve button of an approvable plan (only for roles that may approve), and its outcome."""
    if status not in energy.APPROVABLE or not allowed(actor, "dispatch.approve"):
        return pn.Spacer(height=0)
    button = pn.widgets.Button(name=t("dispatch_approve", lang, id=schedule_id), button_type="primary",
                               width=220, margin=(6, 10))

    def _approve(_event):
        button.disabled = True
        try:
            done = energy.approve_schedule(engine, actor, schedule_id)
        except (AccessError, DispatchError) as err:
            notice.param.update(object=t("dispatch_refused", lang, reason=str(err)), alert_type="danger",
                                visible=True)
        else:
            notice.param.update(object=t("dispatch_approved_ok", lang, id=done["id"], user=actor.username),
                                alert_type="success", visible=True)
        refresh()

    button.on_click(_approve)
    hint = pn.pane.Markdown(t("dispatch_approve_hint", lang), margin=(0, 10), sizing_mode="stretch_width",
                            styles={"color": "#4a6272", "font-size": "13px"})
    return pn.Column(pn.Row(button, sizing_mode="stretch_width"), hint, sizing_mode="stretch_width", margin=0)


# ---------------------------------------------------------------------------------------------- commands, DR
def commands_table() -> pn.viewable.Viewable:
    cmds = energy.recent_commands(engine, actor, limit=50)
    if cmds.empty:
        return pn.pane.Alert(t("dispatch_no_commands", lang), alert_type="info", margin=(4, 10))
    df = pd.DataFrame({
        "device": cmds["device_id"], "due": cmds["due_at"].map(when), "setpoint": cmds["setpoint_p_kw"],
        "mode": cmds["mode"].map(lambda s: word("dispatch_mode", s)),
        "status": cmds["status"].map(lambda s: word("dispatch_cmd", s)), "result": cmds["result"],
        "issued_at": cmds["issued_at"].map(when),
        "issued_by": cmds["issued_by"].fillna(t("dispatch_issued_by_system", lang))})
    titles = {c: t(f"dispatch_col_{c}", lang) for c in df.columns if c != "status"} | {
        "status": t("dispatch_col_status", lang)}
    return pn.widgets.Tabulator(df, titles=titles, formatters={"setpoint": kw_fmt(1)}, pagination="local",
                                page_size=12, frozen_columns=["device"], **TABLE)


def flex_section() -> list:
    storages = [d.id for _e, d in park.iter_devices() if d.type == "bess"]
    flex = energy.flex_resources(park, energy.latest_soc(engine, actor, storages))

    def soc(r) -> str:
        if r["kind"] != "storage":
            return "–"
        text = f"{r['soc_frac']:.0%}"
        return text if r["soc_measured"] else t("dispatch_soc_default", lang, soc=text)

    df = pd.DataFrame({
        "resource": flex["id"],
        "enterprise": flex["enterprise_id"].map(lambda e: t("dispatch_park", lang) if e == "park" else e),
        "kind": flex["kind"].map(lambda k: word("dispatch_kind", k)),
        "up": flex["up_kw"], "down": flex["down_kw"], "up_held": flex["up_kw_held"],
        "down_held": flex["down_kw_held"], "max_h": flex["max_duration_h"], "cost": flex["cost_cny_per_kwh"],
        "notice": flex["notice_min"], "rebound": flex["rebound_frac"], "soc": flex.apply(soc, axis=1)})
    titles = {c: t(f"dispatch_col_{c}", lang) for c in df.columns}
    formatters = {c: kw_fmt() for c in ("up", "down", "up_held", "down_held", "notice")} | {
        "max_h": kw_fmt(2), "cost": kw_fmt(2), "rebound": kw_fmt(1)}
    totals = tiles(tile(t("dispatch_dr_total_up", lang), fmt(flex["up_kw_held"].sum()), "kW"),
                   tile(t("dispatch_dr_total_down", lang), fmt(flex["down_kw_held"].sum()), "kW"))
    note = pn.pane.Markdown(t("dispatch_dr_note", lang), margin=(0, 10), sizing_mode="stretch_width",
                            styles={"color": "#4a6272", "font-size": "13px"})
    return [heading("dispatch_dr"), note, totals,
            pn.widgets.Tabulator(df, titles=titles, formatters=formatters, frozen_columns=["resource"], **TABLE)]


# ---------------------------------------------------------------------------------------------- page
intro = pn.pane.Alert(t("dispatch_intro", lang), alert_type="info", margin=(10, 10, 4, 10),
                      sizing_mode="stretch_width")
latest_box = pn.Column(sizing_mode="stretch_width", margin=0)
site_select = pn.widgets.Select(name=t("dispatch_site", lang), width=320, margin=(8, 10))
notice = pn.pane.Alert(visible=False, sizing_mode="stretch_width", margin=(4, 10))   # outcome of an approval
site_box = pn.Column(sizing_mode="stretch_width", margin=0)
commands_box = pn.Column(sizing_mode="stretch_width", margin=0)
state: dict = {"latest": pd.DataFrame()}


def show_site(event=None):
    if event is not None:       # another site chosen: the last approval's outcome no longer applies
        notice.visible = False
    latest = state["latest"]
    site = site_select.value
    site_box.objects = [site_view(site, latest)] if site and not latest.empty else []


def refresh():
    """Re-read the schedules and commands (after an approval, or on a timer)."""
    latest = energy.latest_schedules(engine, actor, now=dt.datetime.now(dt.UTC))
    state["latest"] = latest
    latest_box.objects = [schedules_table(latest)]
    options = {site_name(s): s for s in latest["site"]}
    before = site_select.value
    keep = before if before in options.values() else next(iter(options.values()), None)
    site_select.param.update(options=options, value=keep, visible=bool(options))
    if keep == before:          # otherwise the value watcher has shown it
        show_site()
    commands_box.objects = [commands_table()]


site_select.param.watch(show_site, "value")
refresh()
shell("dispatch", actor, lang, intro, heading("dispatch_latest"), latest_box, site_select, notice, site_box,
      heading("dispatch_commands"), commands_box, *flex_section()).servable(title=t("page_dispatch", lang))
